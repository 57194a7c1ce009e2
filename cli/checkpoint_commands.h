// `lattice checkpoint download` and `lattice checkpoints`: clients of the trial checkpoint
// routes (scheduler/sweep_routes.cc).
//
//   checkpoint download <trial> [-o FILE]   GET /v1/trials/{id}/checkpoint; writes the
//                                           LibTorch archive to FILE (default <trial>.pt)
//                                           and the header as pretty JSON to FILE.json
//   checkpoints <trial> [--format F]        GET /v1/trials/{id}; table KIND EPOCH BYTES
//                                           val_accuracy val_loss (0 or 1 rows: a trial
//                                           keeps at most its final checkpoint)
//
// The stored checkpoint is "<header JSON line>\n<LibTorch archive>" (jobs/checkpoint.h). The
// download splits it so that Python needs no Lattice-specific code: torch.jit.load(FILE)
// reads the archive as is.
//
// Exit codes: 0 success; 1 any error, printed as "error: <message>" on stderr.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

struct CheckpointDownloadArgs {
  // Trial id, e.g. "s3-t4".
  std::string trial;
  // Where the archive goes (-o); an existing directory means <dir>/<trial>.pt.
  // Default: "" (= "<trial>.pt" in the current directory).
  std::string output;
  // --step N: that step checkpoint instead of the final weights. Default: 0 (final).
  int64_t step = 0;
};

struct CheckpointsArgs {
  std::string trial;
  // table | csv | json (--format). Default: "table".
  std::string format = "table";
};

int RunCheckpointDownload(const ClientOptions& options, const CheckpointDownloadArgs& args,
                          CommandIo& io);
int RunCheckpoints(const ClientOptions& options, const CheckpointsArgs& args, CommandIo& io);

// Adds `checkpoint download` and `checkpoints` to `app` (same conventions as
// RegisterClientCommands: *exit_code receives the exit code).
void RegisterCheckpointCommands(CLI::App& app, int* exit_code);

// ---- pure helpers (unit-tested) ----

// A downloaded checkpoint split at its header line. `archive` points into the blob that
// SplitCheckpoint read, which must outlive it.
struct CheckpointParts {
  // The header as stored: format, config, in_dim, classes, epochs, metrics.
  nlohmann::json header;
  std::string_view archive;
};

// Splits and checks a checkpoint blob: a valid lattice-checkpoint/1 header line
// (jobs::ReadCheckpointHeader), then a non-empty zip archive (what LibTorch writes; an
// error page or a cut-off body is caught here rather than by Python later).
// Error: InvalidArgument saying what is wrong ("no header line", ...).
StatusOr<CheckpointParts> SplitCheckpoint(const std::string& blob);

// The path the archive is written to: `output`, or <trial>.pt when it is empty, or
// <output>/<trial>.pt when it names an existing directory.
std::string CheckpointOutputPath(const std::string& trial, const std::string& output);

// Writes `data` to `path` atomically: into "<path>.tmp.<pid>" in the same directory, fsync,
// then rename, so that a reader never sees a half-written file and a failed download
// leaves an earlier file in place. Error: IoError "cannot write <path>: <reason>".
Status WriteFileAtomically(const std::string& path, std::string_view data);

// The line `checkpoint download` prints, e.g. "wrote best.pt (204817 bytes, LibTorch
// archive) and best.pt.json (header): trial s3-t4, 3 epochs, val_accuracy 0.8512, val_loss
// 0.4123". Metrics shown: val_accuracy and val_loss when the header has them, else up to
// three metrics by name.
std::string FormatDownloadSummary(const std::string& trial, const std::string& path,
                                  size_t archive_bytes, const nlohmann::json& header);

// The rows of `checkpoints` for one trial: `checkpoints` is GET /v1/trials/{id}/checkpoints'
// array ({"kind": "step"|"final", "step", "epochs", "bytes", "metrics"}), `trial` the trial
// (GET /v1/trials/{id}; names it when there is none). Columns KIND STEP EPOCH BYTES
// val_accuracy val_loss; json is an array of objects with those keys in lower case. An
// empty table is a sentence saying why there is none.
std::string FormatCheckpointList(const nlohmann::json& trial, const nlohmann::json& checkpoints,
                                 TrialsFormat format);

}  // namespace lattice::cli
