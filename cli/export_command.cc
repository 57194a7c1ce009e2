#include "cli/export_command.h"

#include <memory>
#include <utility>

#include <CLI/CLI.hpp>

#include "cli/checkpoint_commands.h"
#include "cli/internal/api.h"
#include "common/ids.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

// The trial `target` names: itself when it is a trial id, else the best trial of the sweep.
StatusOr<std::string> ResolveTrial(HttpClient& client, const std::string& target) {
  if (TrialId::Parse(target)) return target;
  StatusOr<json> sweep = internal::CallJson(client, "GET", internal::SweepTarget(target, ""), "", "");
  if (!sweep.ok()) {
    return sweep.status().WithContext("'" + target + "' is neither a trial id nor a known sweep");
  }
  const std::string best =
      sweep->contains("best") ? internal::StringField((*sweep)["best"], "trial") : "";
  if (best.empty()) {
    return Status::FailedPrecondition("sweep " + target +
                                      " has no best trial yet (no trial has completed with its "
                                      "metric)");
  }
  return best;
}

}  // namespace

int RunExport(const ClientOptions& options, const ExportArgs& args, const ExportConverter& convert,
              CommandIo& io) {
  using internal::PrintError;
  const TokenResult token = ReadToken(options.data_dir);
  if (!token.ok) return PrintError(io, token.error, 1);
  auto client = internal::MakeClient(options, token.token);
  StatusOr<std::string> trial = ResolveTrial(*client, args.target);
  if (!trial.ok()) return PrintError(io, trial.status().message(), 1);
  StatusOr<ClientResponse> response =
      client->Request("GET", "/v1/trials/" + internal::EncodePathSegment(*trial) + "/checkpoint");
  if (!response.ok()) return PrintError(io, response.status().message(), 1);
  if (response->status < 200 || response->status >= 300) {
    const Status error = internal::ParseResponse(response).status();
    return PrintError(io, "cannot download the checkpoint of " + *trial + ": " + error.message(),
                      1);
  }
  StatusOr<std::string> module = convert(response->body);
  if (!module.ok()) {
    return PrintError(io, "cannot export trial " + *trial + ": " + module.status().message(), 1);
  }
  const std::string path = CheckpointOutputPath(*trial, args.output);
  if (Status s = WriteFileAtomically(path, *module); !s.ok()) return PrintError(io, s.message(), 1);
  io.out << "wrote " << path << " (" << module->size() << " bytes, TorchScript): trial " << *trial
         << "; in Python: torch.jit.load(\"" << path << "\")(x) gives the logits\n";
  return 0;
}

void RegisterExportCommand(CLI::App& app, int* exit_code, ExportConverter convert) {
  struct State {
    ClientOptions options;
    ExportArgs args;
  };
  auto st = std::make_shared<State>();
  CLI::App* sub = app.add_subcommand(
      "export",
      "Export a trial's final weights as a TorchScript module that runs in Python:\n"
      "  m = torch.jit.load(\"model.pt\"); logits = m(x)\n"
      "x: raw input rows [B, in_dim] (or images [B, 28, 28], any dtype); the module applies the\n"
      "trial's dataset.scale and standardisation itself and runs in eval mode. A sweep (id or\n"
      "name) means its best trial by the sweep metric.");
  sub->add_option("target", st->args.target, "trial id (s3-t4), or a sweep id or name")
      ->required();
  sub->add_option("-o,--output", st->args.output,
                  "module file (default: <trial>.pt; a directory: <dir>/<trial>.pt)");
  internal::AddCommonOptions(sub, &st->options);
  internal::SetRunner(sub, exit_code, [st, convert = std::move(convert)](CommandIo& io) {
    return RunExport(st->options, st->args, convert, io);
  });
}

}  // namespace lattice::cli
