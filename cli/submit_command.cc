// `lattice submit <spec> [--wait]` and `lattice watch <sweep>`.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/internal/api.h"

namespace lattice::cli {

using nlohmann::json;

namespace {

std::string ContentTypeFor(const std::string& path) {
  const size_t dot = path.rfind('.');
  const std::string ext = dot == std::string::npos ? "" : path.substr(dot);
  return ext == ".json" ? "application/json" : "application/yaml";
}

bool IsTerminal(const std::string& state) {
  return state == "completed" || state == "failed" || state == "cancelled";
}

std::string StateOf(const json& sweep) { return internal::StringField(sweep, "state"); }

// Prints progress to io.err: on a TTY one line rewritten in place, otherwise a new line
// whenever the counts or the best trial change (not every poll).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(CommandIo& io) : io_(io) {}
  ~ProgressPrinter() { Finish(); }

  void Update(const json& sweep, double elapsed_s) {
    const std::string line = FormatProgressLine(sweep, elapsed_s);
    if (io_.err_is_tty) {
      io_.err << "\r" << line << "\033[K" << std::flush;
      open_line_ = true;
      return;
    }
    const size_t body = line.find("] ");
    const std::string key = body == std::string::npos ? line : line.substr(body + 2);
    if (key != last_key_) io_.err << line << "\n" << std::flush;
    last_key_ = key;
  }

  void Finish() {
    if (open_line_) io_.err << "\n" << std::flush;
    open_line_ = false;
  }

 private:
  CommandIo& io_;
  std::string last_key_;
  bool open_line_ = false;
};

// Polls the sweep until it ends; prints the top 5 trials. Returns the exit code.
int WaitForSweep(HttpClient& client, const std::string& id, const SubmitArgs& args,
                 CommandIo& io) {
  const auto start = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(args.poll_interval_s);
  ProgressPrinter progress(io);
  json sweep;
  for (int failures = 0;;) {
    StatusOr<json> polled = internal::CallJson(client, "GET", internal::SweepTarget(id, ""), "", "");
    if (!polled.ok()) {
      const bool transient = polled.status().code() == StatusCode::kUnavailable;
      if (!transient || ++failures >= args.max_poll_failures) {
        progress.Finish();
        return internal::PrintError(io, polled.status().message(), 1);
      }
    } else {
      failures = 0;
      sweep = std::move(*polled);
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
      progress.Update(sweep, elapsed.count());
      if (IsTerminal(StateOf(sweep))) break;
    }
    std::this_thread::sleep_for(interval);
  }
  progress.Finish();
  const std::string state = StateOf(sweep);
  const std::string message = internal::StringField(sweep, "message");
  io.err << "sweep " << id << " " << state << (message.empty() ? "" : ": " + message) << "\n";
  StatusOr<json> trials = internal::FetchAllTrials(client, id);
  if (!trials.ok()) return internal::PrintError(io, trials.status().message(), 1);
  TrialsView view;
  view.top = 5;
  io.out << FormatTrials(sweep, *trials, view);
  return state == "completed" ? 0 : 1;
}

}  // namespace

int RunWatch(const ClientOptions& options, const std::string& sweep, CommandIo& io) {
  auto client = internal::MakeClient(options, "");
  StatusOr<json> found =
      internal::CallJson(*client, "GET", internal::SweepTarget(sweep, ""), "", "");
  if (!found.ok()) return internal::PrintError(io, found.status().message(), 1);
  const std::string id = internal::StringField(*found, "id", sweep);
  return WaitForSweep(*client, id, SubmitArgs{}, io);
}

int RunSubmit(const ClientOptions& options, const SubmitArgs& args, CommandIo& io) {
  std::ifstream in(args.spec_path, std::ios::binary);
  if (!in) return internal::PrintError(io, "cannot read the spec file " + args.spec_path, 1);
  std::stringstream text;
  text << in.rdbuf();
  const TokenResult token = ReadToken(options.data_dir);
  if (!token.ok) return internal::PrintError(io, token.error, 1);

  std::string body = text.str();
  std::string content_type = ContentTypeFor(args.spec_path);
  if (args.resolve_paths) {
    std::error_code ec;
    const std::filesystem::path spec = std::filesystem::absolute(args.spec_path, ec);
    StatusOr<std::string> resolved =
        ec ? StatusOr<std::string>(Status::InvalidArgument(ec.message()))
           : args.resolve_paths(body, spec.parent_path().lexically_normal().string());
    if (resolved.ok()) {  // else sent as written: the coordinator names the error
      body = std::move(*resolved);
      content_type = "application/json";
    }
  }
  auto client = internal::MakeClient(options, token.token);
  StatusOr<json> sweep =
      internal::CallJson(*client, "POST", "/v1/sweeps", body, content_type);
  if (!sweep.ok()) {
    const bool rejected = sweep.status().code() == StatusCode::kInvalidArgument;
    return internal::PrintError(io, sweep.status().message(), rejected ? 2 : 1);
  }
  const std::string id = internal::StringField(*sweep, "id");
  if (id.empty()) return internal::PrintError(io, "the coordinator's answer has no sweep id", 1);
  io.out << "submitted sweep " << id << " (" << internal::StringField(*sweep, "name") << "): "
         << internal::IntField(*sweep, "num_trials") << " trials\n"
         << std::flush;
  if (!args.wait) return 0;
  return WaitForSweep(*client, id, args, io);
}

}  // namespace lattice::cli
