// `lattice export <trial|sweep> -o model.pt`: a trial's final weights as a TorchScript module
// that runs in Python without Lattice (torch.jit.load("model.pt")(x); jobs/torchscript_export.h
// says what forward does). A sweep (id or name) means its best trial by the sweep metric.
//
// The client downloads the checkpoint (GET /v1/trials/{id}/checkpoint, with the API token;
// for a sweep first GET /v1/sweeps/{id} for its best trial) and converts it locally with the
// `convert` function the `lattice` binary passes in (jobs::ExportTorchScript), so that this
// library stays free of LibTorch. The file is written atomically.
//
// Exit codes: 0 success; 1 any error, printed as "error: <message>" on stderr.
#pragma once

#include <functional>
#include <string>

#include "cli/commands.h"
#include "common/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

// Checkpoint bytes (jobs/checkpoint.h) -> TorchScript module file bytes.
using ExportConverter = std::function<StatusOr<std::string>(const std::string& checkpoint)>;

struct ExportArgs {
  // A trial id ("s3-t4"), or a sweep id or name (its best trial).
  std::string target;
  // The module file (-o). Default: "" (= "<trial>.pt" in the current directory).
  std::string output;
};

int RunExport(const ClientOptions& options, const ExportArgs& args, const ExportConverter& convert,
              CommandIo& io);

// Adds `export` to `app` (*exit_code receives the exit code).
void RegisterExportCommand(CLI::App& app, int* exit_code, ExportConverter convert);

}  // namespace lattice::cli
