#include "cli/commands.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/curves_command.h"
#include "cli/format.h"
#include "http/client.h"
#include "cli/internal/api.h"

namespace lattice::cli {

using nlohmann::json;

namespace internal {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int PrintError(CommandIo& io, const std::string& message, int exit_code) {
  io.err << "error: " << message << "\n";
  return exit_code;
}

std::string EncodePathSegment(const std::string& segment) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : segment) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string SweepTarget(const std::string& sweep, const std::string& suffix) {
  return "/v1/sweeps/" + EncodePathSegment(sweep) + suffix;
}

StatusOr<json> ParseResponse(const StatusOr<ClientResponse>& response) {
  if (!response.ok()) return response.status();
  const ClientResponse& r = *response;
  json body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (r.status >= 200 && r.status < 300) {
    if (body.is_discarded()) {
      return Status::Internal("the coordinator sent a response that is not JSON (HTTP " +
                              std::to_string(r.status) + ")");
    }
    return body;
  }
  std::string message;
  if (body.is_object() && body.contains("error") && body["error"].is_object() &&
      body["error"].contains("message") && body["error"]["message"].is_string()) {
    message = body["error"]["message"].get<std::string>();
  } else {
    message = "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200);
  }
  switch (r.status) {
    case 400: return Status::InvalidArgument(message);
    case 401: return Status::Unauthenticated(message);
    case 404: return Status::NotFound(message);
    case 409: return Status::FailedPrecondition(message);
    case 503: return Status::Unavailable(message);
    case 507: return Status::InsufficientStorage(message);
    default: return Status::Internal(message);
  }
}

StatusOr<json> CallJson(HttpClient& client, const std::string& method, const std::string& target,
                        const std::string& body, const std::string& content_type) {
  return ParseResponse(client.Request(method, target, body, content_type));
}

StatusOr<json> FetchAllTrials(HttpClient& client, const std::string& sweep) {
  json all;
  std::string after;  // "": the first page
  for (;;) {
    StatusOr<json> page = CallJson(
        client, "GET", SweepTarget(sweep, after.empty() ? "/trials" : "/trials?after=" + after), "",
        "");
    if (!page.ok()) return page.status();
    if (!page->is_object() || !(*page)["trials"].is_array()) {
      return Status::Internal("the coordinator's trials page has no \"trials\" array");
    }
    const json next = page->value("next_after", json());
    if (all.is_null()) {
      all = std::move(*page);
    } else {
      json& trials = all["trials"];
      for (json& t : (*page)["trials"]) trials.push_back(std::move(t));
    }
    if (!next.is_number_integer()) break;
    const std::string next_text = std::to_string(next.get<int64_t>());
    if (next_text == after) return Status::Internal("the coordinator repeated a trials page");
    after = next_text;
  }
  all.erase("next_after");
  return all;
}

std::string StringField(const json& j, const char* key, const std::string& fallback) {
  if (!j.is_object()) return fallback;
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

int64_t IntField(const json& j, const char* key, int64_t fallback) {
  if (!j.is_object()) return fallback;
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : fallback;
}

std::unique_ptr<HttpClient> MakeClient(const ClientOptions& options, const std::string& token) {
  return std::make_unique<HttpClient>(options.host, options.port, token,
                                      std::chrono::milliseconds(options.timeout_ms));
}

// Without --port / LATTICE_PORT, a running coordinator's <data-dir>/coordinator.json
// (written at start, e.g. when it listens on a free port) names the port.
void DiscoverPort(ClientOptions* options) {
  std::ifstream in(options->data_dir + "/coordinator.json");
  if (!in) return;
  try {
    auto info = nlohmann::json::parse(in);
    options->port = info.at("port").get<uint16_t>();
  } catch (const std::exception&) {
    // unreadable: keep the default port
  }
}

void AddCommonOptions(CLI::App* sub, ClientOptions* options) {
  sub->add_option("--host", options->host, "coordinator API host")->capture_default_str();
  CLI::Option* port =
      sub->add_option("--port", options->port,
                      "coordinator API port (env LATTICE_PORT; default: the port in "
                      "<data-dir>/coordinator.json, else 7070)")
          ->envname("LATTICE_PORT")
          ->capture_default_str();
  sub->parse_complete_callback([options, port] {
    if (port->count() == 0) DiscoverPort(options);
  });
  sub->add_option("--data-dir", options->data_dir,
                  "coordinator data directory (the API token is read from <data-dir>/token)")
      ->capture_default_str();
}

}  // namespace internal

using internal::AddCommonOptions;
using internal::CallJson;
using internal::MakeClient;
using internal::NowMs;
using internal::PrintError;
using internal::SweepTarget;

TokenResult ReadToken(const std::string& data_dir) {
  TokenResult result;
  const std::string path = data_dir + "/token";
  std::ifstream in(path);
  if (!in) {
    result.error = "cannot read the API token at " + path + " (" + std::strerror(errno) +
                   "): this command needs it; start the coordinator with `lattice cluster`, "
                   "or pass --data-dir with the coordinator's data directory";
    return result;
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  const size_t begin = token.find_first_not_of(" \t\r\n");
  const size_t end = token.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    result.error = "the API token file " + path + " is empty";
    return result;
  }
  result.ok = true;
  result.token = token.substr(begin, end - begin + 1);
  return result;
}

int RunStatus(const ClientOptions& options, const std::string& sweep, CommandIo& io,
              const std::string& format) {
  StatusOr<TrialsFormat> parsed_format = ParseTrialsFormat(format);
  if (!parsed_format.ok()) return PrintError(io, parsed_format.status().message(), 1);
  auto client = MakeClient(options, "");
  const std::string target = sweep.empty() ? "/v1/sweeps" : SweepTarget(sweep, "");
  StatusOr<json> body = CallJson(*client, "GET", target, "", "");
  if (!body.ok()) return PrintError(io, body.status().message(), 1);
  const json& list = body->is_object() && body->contains("sweeps") ? (*body)["sweeps"] : *body;
  if (*parsed_format == TrialsFormat::kJson) {
    io.out << (sweep.empty() ? list : *body).dump(2) << "\n";
    return 0;
  }
  if (*parsed_format == TrialsFormat::kCsv) {
    io.out << FormatSweepsTable(sweep.empty() ? *body : json::array({*body}), NowMs(), true);
    return 0;
  }
  if (!sweep.empty()) {
    io.out << FormatSweepDetails(*body, NowMs());
    return 0;
  }
  if (!list.is_array() || list.empty()) {
    io.out << "no sweeps yet: submit one with `lattice submit <spec.yaml>`\n";
    return 0;
  }
  io.out << FormatSweepsTable(*body, NowMs());
  return 0;
}

int RunTrials(const ClientOptions& options, const TrialsArgs& args, CommandIo& io) {
  StatusOr<TrialsFormat> format = ParseTrialsFormat(args.format);
  if (!format.ok()) return PrintError(io, format.status().message(), 1);
  if (args.top < 0) return PrintError(io, "--top must be >= 0", 1);
  auto client = MakeClient(options, "");
  StatusOr<json> sweep = CallJson(*client, "GET", SweepTarget(args.sweep, ""), "", "");
  if (!sweep.ok()) return PrintError(io, sweep.status().message(), 1);
  StatusOr<json> trials = internal::FetchAllTrials(*client, args.sweep);
  if (!trials.ok()) return PrintError(io, trials.status().message(), 1);
  TrialsView view;
  view.format = *format;
  view.top = args.top;
  view.all_metrics = args.all_metrics;
  io.out << FormatTrials(*sweep, *trials, view);
  return 0;
}

int RunCancel(const ClientOptions& options, const std::string& sweep, CommandIo& io) {
  const TokenResult token = ReadToken(options.data_dir);
  if (!token.ok) return PrintError(io, token.error, 1);
  auto client = MakeClient(options, token.token);
  StatusOr<json> body = CallJson(*client, "POST", SweepTarget(sweep, "/cancel"), "", "");
  if (!body.ok()) return PrintError(io, body.status().message(), 1);
  const std::string state = internal::StringField(*body, "state", "cancel requested");
  io.out << "sweep " << sweep << ": " << state << "\n";
  return 0;
}

int RunResume(const ClientOptions& options, const ResumeArgs& args, CommandIo& io) {
  const TokenResult token = ReadToken(options.data_dir);
  if (!token.ok) return PrintError(io, token.error, 1);
  auto client = MakeClient(options, token.token);
  json body = json::object();
  if (args.from_step > 0) body["from_step"] = args.from_step;
  if (args.epochs > 0) body["epochs"] = args.epochs;
  StatusOr<json> sweep =
      CallJson(*client, "POST", "/v1/trials/" + args.trial + "/resume", body.dump(), "");
  if (!sweep.ok()) return PrintError(io, sweep.status().message(), 1);
  io.out << "trial " << args.trial << " resumed "
         << (args.from_step > 0 ? "from step " + std::to_string(args.from_step)
                                : std::string("from its latest checkpoint"))
         << " as a new attempt; sweep " << internal::StringField(*sweep, "id", "?") << " is "
         << internal::StringField(*sweep, "state", "running") << "\n";
  return 0;
}

int RunWorkers(const ClientOptions& options, CommandIo& io, const std::string& format) {
  StatusOr<TrialsFormat> parsed_format = ParseTrialsFormat(format);
  if (!parsed_format.ok()) return PrintError(io, parsed_format.status().message(), 1);
  auto client = MakeClient(options, "");
  StatusOr<json> body = CallJson(*client, "GET", "/v1/workers", "", "");
  if (!body.ok()) return PrintError(io, body.status().message(), 1);
  if (*parsed_format == TrialsFormat::kJson) {
    const json& list =
        body->is_object() && body->contains("workers") ? (*body)["workers"] : *body;
    io.out << list.dump(2) << "\n";
    return 0;
  }
  io.out << FormatWorkersTable(*body, NowMs(), *parsed_format == TrialsFormat::kCsv);
  return 0;
}

// ---------------------------------------------------------------------------------------
// Registration with CLI11: the one place that defines the client flags and env variables.

namespace {

struct CommandState {
  ClientOptions options;
  SubmitArgs submit;
  std::string sweep;  // status / cancel
  std::string format = "table";  // status / workers
  TrialsArgs trials;
  ResumeArgs resume;
};

using internal::SetRunner;

}  // namespace

std::string UnknownSubcommandError(CLI::App& app, int argc, const char* const* argv) {
  CLI::App* current = &app;
  std::string path;
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return "";
    const std::vector<CLI::App*> subs = current->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return "";
    CLI::App* next = nullptr;
    for (CLI::App* sub : subs) {
      if (sub->check_name(word)) next = sub;
    }
    if (next == nullptr) {
      if (current->get_require_subcommand_min() == 0) return "";  // a positional argument
      std::string names;
      for (CLI::App* sub : subs) names += (names.empty() ? "" : ", ") + sub->get_name();
      return "unknown command '" + path + word + "' (" + path + "commands: " + names + ")";
    }
    path += word + " ";
    current = next;
  }
  return "";
}

void RegisterClientCommands(CLI::App& app, int* exit_code, SpecPathResolver resolve_paths) {
  auto state = std::make_shared<CommandState>();
  state->submit.resolve_paths = std::move(resolve_paths);

  CLI::App* submit = app.add_subcommand(
      "submit",
      "submit a sweep spec (YAML or JSON). Relative file paths in it (dataset, model, teacher, "
      "encoder and corpus files, an embed spec's metric.qrels, also in search.parameters) are "
      "made absolute against the "
      "directory of the spec file before it is sent, so a spec names files beside itself "
      "wherever the command and the cluster run");
  submit->add_option("spec", state->submit.spec_path, "sweep spec file")->required();
  submit->add_flag("--wait", state->submit.wait,
                   "follow progress until the sweep ends, then print the top 5 trials");
  AddCommonOptions(submit, &state->options);
  SetRunner(submit, exit_code,
            [state](CommandIo& io) { return RunSubmit(state->options, state->submit, io); });

  CLI::App* status = app.add_subcommand("status", "list sweeps, or show one sweep");
  status->add_option("sweep", state->sweep, "sweep id (e.g. s3)");
  status->add_option("--format", state->format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  AddCommonOptions(status, &state->options);
  SetRunner(status, exit_code, [state](CommandIo& io) {
    return RunStatus(state->options, state->sweep, io, state->format);
  });

  CLI::App* trials = app.add_subcommand("trials", "list a sweep's trials, best first");
  trials->add_option("sweep", state->trials.sweep, "sweep id (e.g. s3)")->required();
  trials->add_option("--top", state->trials.top, "show only the best N trials (0: all)")
      ->check(CLI::NonNegativeNumber);
  trials->add_option("--format", state->trials.format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  trials->add_flag("--all-metrics", state->trials.all_metrics, "a column for every metric");
  AddCommonOptions(trials, &state->options);
  SetRunner(trials, exit_code,
            [state](CommandIo& io) { return RunTrials(state->options, state->trials, io); });

  CLI::App* cancel = app.add_subcommand("cancel", "cancel a sweep");
  cancel->add_option("sweep", state->sweep, "sweep id (e.g. s3)")->required();
  AddCommonOptions(cancel, &state->options);
  SetRunner(cancel, exit_code,
            [state](CommandIo& io) { return RunCancel(state->options, state->sweep, io); });

  CLI::App* resume = app.add_subcommand(
      "resume", "run a finished (completed, failed or cancelled) trial again as a new attempt, "
                "continuing exactly from one of its step checkpoints");
  resume->add_option("trial", state->resume.trial, "trial id (e.g. s3-t4)")->required();
  resume->add_option("--from-step", state->resume.from_step,
                     "the step checkpoint to continue from (default: the latest; "
                     "`lattice checkpoints <trial>` lists them)")
      ->check(CLI::PositiveNumber);
  resume->add_option("--epochs", state->resume.epochs,
                     "train this many epochs in all (e.g. more than the spec said)")
      ->check(CLI::PositiveNumber);
  AddCommonOptions(resume, &state->options);
  SetRunner(resume, exit_code,
            [state](CommandIo& io) { return RunResume(state->options, state->resume, io); });

  CLI::App* watch = app.add_subcommand(
      "watch", "follow a running sweep (live progress, then its top trials); exits 0 if it "
               "completed, 1 if it failed or was cancelled");
  watch->add_option("sweep", state->sweep, "sweep id or name (e.g. s3)")->required();
  AddCommonOptions(watch, &state->options);
  SetRunner(watch, exit_code,
            [state](CommandIo& io) { return RunWatch(state->options, state->sweep, io); });

  CLI::App* curves = app.add_subcommand("curves", "a trial's metrics per epoch");
  curves->add_option("trial", state->sweep, "trial id (e.g. s3-t4)")->required();
  curves->add_option("--format", state->format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  AddCommonOptions(curves, &state->options);
  SetRunner(curves, exit_code, [state](CommandIo& io) {
    return RunCurves(state->options, state->sweep, state->format, io);
  });

  CLI::App* workers = app.add_subcommand("workers", "list the cluster's workers");
  workers->add_option("--format", state->format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  AddCommonOptions(workers, &state->options);
  SetRunner(workers, exit_code,
            [state](CommandIo& io) { return RunWorkers(state->options, io, state->format); });
}

}  // namespace lattice::cli
