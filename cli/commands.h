// The client-side subcommands of the `lattice` binary: submit, status, trials, cancel,
// workers. Each talks to the coordinator's HTTP API:
//
//   submit <spec> [--wait]   POST /v1/sweeps (the spec, its relative paths made absolute
//                            against the spec file's directory; then GET /v1/sweeps/{id})
//   status [sweep]           GET /v1/sweeps, GET /v1/sweeps/{id}   (--format table|csv|json)
//   trials <sweep> ...       GET /v1/sweeps/{id} + GET /v1/sweeps/{id}/trials (every page)
//   cancel <sweep>           POST /v1/sweeps/{id}/cancel
//   watch <sweep>            polls GET /v1/sweeps/{id} until the sweep ends (exit code: its outcome)
//   curves <trial>           GET /v1/trials/{id}/metrics (cli/curves_command.h)
//   workers                  GET /v1/workers                       (--format table|csv|json)
//
// Exit codes: 0 success; 1 any error (printed as "error: <message>" on stderr), a sweep
// waited for that ended failed/cancelled; 2 a spec the coordinator rejected (HTTP 400 on
// submit).
//
// Usage from main.cc:
//
//   CLI::App app{"lattice: cluster job scheduler"};
//   int exit_code = 0;
//   lattice::cli::RegisterClientCommands(app, &exit_code);
//   ... add `cluster` and other subcommands ...
//   app.require_subcommand(1);
//   CLI11_PARSE(app, argc, argv);
//   return exit_code;
//
// Every option and environment variable of these commands is defined in commands.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

#include "common/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

// Options common to every client command.
struct ClientOptions {
  // Coordinator API host (--host). Default: "127.0.0.1".
  std::string host = "127.0.0.1";
  // Coordinator API port (--port). Default: 7070, or $LATTICE_PORT when set.
  uint16_t port = 7070;
  // Coordinator data directory (--data-dir); mutating calls read the API token from
  // <data_dir>/token. Default: "./lattice-data".
  std::string data_dir = "./lattice-data";
  // Per-request timeout, in milliseconds. Default: 30000.
  int timeout_ms = 30000;
};

// Where a command writes. `err_is_tty` makes `submit --wait` rewrite one progress line.
struct CommandIo {
  std::ostream& out;
  std::ostream& err;
  bool err_is_tty = false;
};

// Makes the relative file paths of a spec absolute against a directory: spec text and the
// spec file's absolute directory in, the spec as JSON text out (scheduler::ResolveSpecPaths,
// handed in by cli/main.cc so that lattice_cli does not link the scheduler).
using SpecPathResolver =
    std::function<StatusOr<std::string>(const std::string& text, const std::string& dir)>;

struct SubmitArgs {
  // Path of the YAML (.yaml/.yml) or JSON (.json) sweep spec.
  std::string spec_path;
  // Applied to the spec before it is sent (its relative paths then name files beside the
  // spec file, wherever the cluster runs). Empty, or when the spec does not parse: the
  // text is sent as written (the coordinator names any error). Default: empty.
  SpecPathResolver resolve_paths;
  // Poll until the sweep ends, then print its top trials. Default: false.
  bool wait = false;
  // Poll interval of --wait, in seconds. Default: 0.5.
  double poll_interval_s = 0.5;
  // With --wait: give up after this many consecutive failed polls. Default: 60 (30 s).
  int max_poll_failures = 60;
};

struct TrialsArgs {
  std::string sweep;
  // Show only the best N trials; 0 shows all (--top). Default: 0.
  int top = 0;
  // table | csv | json (--format). Default: "table".
  std::string format = "table";
  // A column for every reported metric (--all-metrics). Default: false.
  bool all_metrics = false;
};

// The API token from <data_dir>/token (surrounding whitespace trimmed), or an error that
// says how to get one.
struct TokenResult {
  bool ok = false;
  std::string token;  // when ok
  std::string error;  // when !ok
};
TokenResult ReadToken(const std::string& data_dir);

int RunSubmit(const ClientOptions& options, const SubmitArgs& args, CommandIo& io);
// format: "table" | "csv" | "json" (json: the API's sweep list / sweep object as is).
int RunStatus(const ClientOptions& options, const std::string& sweep, CommandIo& io,
              const std::string& format = "table");
int RunTrials(const ClientOptions& options, const TrialsArgs& args, CommandIo& io);
int RunCancel(const ClientOptions& options, const std::string& sweep, CommandIo& io);

// `lattice resume <trial> [--from-step N] [--epochs N]` (POST /v1/trials/{id}/resume).
struct ResumeArgs {
  std::string trial;
  int64_t from_step = 0;  // 0: the latest step checkpoint
  int64_t epochs = 0;     // 0: as the spec said
};
int RunResume(const ClientOptions& options, const ResumeArgs& args, CommandIo& io);
// `lattice watch <sweep>`: follows a sweep (id or name) as `submit --wait` does — live
// progress on stderr, its top 5 trials at the end — and exits 0 when it completed, 1 when
// it failed or was cancelled (at once, when it already had).
int RunWatch(const ClientOptions& options, const std::string& sweep, CommandIo& io);
int RunWorkers(const ClientOptions& options, CommandIo& io, const std::string& format = "table");

// Adds the submit, status, trials, cancel and workers subcommands (each with --host,
// --port, --data-dir) to `app`. When one of them runs (from app.parse), it writes to
// std::cout / std::cerr and stores its exit code in *exit_code, which must outlive the
// parse. The option storage lives as long as `app`.
// `resolve_paths` is what `submit` applies to a spec (SubmitArgs::resolve_paths).
void RegisterClientCommands(CLI::App& app, int* exit_code, SpecPathResolver resolve_paths = {});

// Checks argv's leading words against the subcommands registered on `app` before CLI11
// parses (CLI11 says only "A subcommand is required"): a word that names no subcommand
// where one is required gives "unknown command 'index foo' (index commands: list, search,
// ...)"; "" when the words are fine (options and positional arguments are left to CLI11).
std::string UnknownSubcommandError(CLI::App& app, int argc, const char* const* argv);

}  // namespace lattice::cli
