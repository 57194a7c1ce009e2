// `lattice top` (see top_command.h).
#include "cli/top_command.h"

#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli/format.h"
#include "cli/internal/api.h"
#include "http/client.h"

namespace lattice::cli {

using nlohmann::json;

namespace {

std::string Str(const json& j, const char* key) {
  const json& v = Field(j, key);
  return v.is_string() && !v.get<std::string>().empty() ? v.get<std::string>() : "-";
}

double Num(const json& j, const char* key) {
  const json& v = Field(j, key);
  return v.is_number() ? v.get<double>() : 0;
}

std::string MetricOr(const std::map<std::string, double>& metrics, const char* name,
                     const std::string& fallback) {
  const auto it = metrics.find(name);
  return it == metrics.end() ? fallback : FormatNumber(it->second);
}

std::string Header(const TopSample& s) {
  int idle = 0, busy = 0, lost = 0, starting = 0;
  const json& workers = Field(s.workers, "workers");
  if (workers.is_array()) {
    for (const json& w : workers) {
      const std::string state = Str(w, "state");
      idle += state == "idle";
      busy += state == "busy";
      lost += state == "lost";
      starting += state == "starting";
    }
  }
  char clock[16] = "";
  const std::time_t t = static_cast<std::time_t>(s.now_ms / 1000);
  std::tm tm{};
  if (s.now_ms > 0 && localtime_r(&t, &tm) != nullptr) std::strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
  std::ostringstream out;
  out << "lattice top  " << s.endpoint << "  " << clock << "\n";
  out << "workers " << (workers.is_array() ? workers.size() : 0) << " (" << idle << " idle, "
      << busy << " busy, " << lost << " lost" << (starting ? ", " + std::to_string(starting) + " starting" : "")
      << ")   queue " << MetricOr(s.metrics, "lattice_queue_depth", "-") << "   running "
      << MetricOr(s.metrics, "lattice_trials_running", std::to_string(s.trials.size()))
      << "   throughput "
      << (s.throughput ? FormatNumber(*s.throughput) + " trials/s" : std::string("-"))
      << "   coordinator RSS ";
  const auto rss = s.metrics.find("lattice_process_resident_memory_bytes");
  out << (rss == s.metrics.end() ? "-" : FormatBytes(rss->second)) << "\n";
  if (!s.error.empty()) out << "error: " << s.error << "\n";
  return out.str();
}

std::string WorkersTable(const TopSample& s) {
  TextTable table({"RANK", "HOST", "STATE", "TRIAL", "RSS", "VRAM", "RESTARTS", "DONE", "LAST-SEEN"});
  const json& workers = Field(s.workers, "workers");
  if (!workers.is_array()) return table.Render();
  for (const json& w : workers) {
    const double seen = Num(w, "last_seen_ms");
    table.AddRow({FormatCell(Field(w, "rank")), Str(w, "host"), Str(w, "state"), Str(w, "trial"),
                  FormatBytes(Num(w, "rss_bytes")), FormatBytes(Num(w, "vram_bytes")),
                  FormatCell(Field(w, "task_restarts")), FormatCell(Field(w, "trials_done")),
                  seen > 0 ? FormatDuration(s.now_ms - static_cast<int64_t>(seen)) + " ago" : "-"});
  }
  return table.Render();
}

// "3/10" (epochs done of the configured train.epochs), "3", or "-".
std::string EpochCell(const TopTrial& t) {
  int64_t done = static_cast<int64_t>(Num(t.trial, "epochs_done"));
  done = std::max(done, static_cast<int64_t>(Num(t.last_epoch, "epoch")));
  const json& total = Field(Field(Field(t.trial, "config"), "train"), "epochs");
  if (total.is_number_integer()) return std::to_string(done) + "/" + std::to_string(total.get<int64_t>());
  return done > 0 ? std::to_string(done) : "-";
}

// "val_accuracy=0.9806": the sweep's metric in the last epoch, else its first value.
std::string LastMetricCell(const TopTrial& t) {
  const json& values = Field(t.last_epoch, "values");
  if (!values.is_object() || values.empty()) return "-";
  auto it = values.find(t.metric);
  if (t.metric.empty() || it == values.end()) it = values.begin();
  return it.key() + "=" + FormatCell(*it);
}

std::string TrialsTable(const TopSample& s) {
  TextTable table({"TRIAL", "SWEEP", "WORKER", "ATTEMPT", "EPOCH", "LAST-METRIC", "ELAPSED"});
  for (const TopTrial& t : s.trials) {
    const double started = Num(t.trial, "started_ms");
    table.AddRow({Str(t.trial, "id"), Str(t.trial, "sweep"), t.worker,
                  FormatCell(Field(t.trial, "attempts")), EpochCell(t), LastMetricCell(t),
                  started > 0 ? FormatDuration(s.now_ms - static_cast<int64_t>(started)) : "-"});
  }
  return table.Render();
}

// Set by SIGINT/SIGTERM while a live view runs.
volatile std::sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }

// While a live view runs: Ctrl-C (and SIGTERM) end it instead of killing the process, and a
// terminal's stdin is read key by key without echo (q quits). Restored on destruction.
class QuitWatcher {
 public:
  explicit QuitWatcher(bool keyboard) {
    g_interrupted = 0;
    struct sigaction sa {};
    sa.sa_handler = OnInterrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the signal wakes poll()
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    keyboard_ = keyboard && ::isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_) == 0;
    if (keyboard_) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // ISIG stays: Ctrl-C is SIGINT
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
  }
  ~QuitWatcher() {
    if (keyboard_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  QuitWatcher(const QuitWatcher&) = delete;
  QuitWatcher& operator=(const QuitWatcher&) = delete;

  // Waits `seconds`; true as soon as q is pressed or a signal came.
  bool WaitForQuit(double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!g_interrupted) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd fd{STDIN_FILENO, POLLIN, 0};
      const int n = ::poll(keyboard_ ? &fd : nullptr, keyboard_ ? 1 : 0,
                           static_cast<int>(left.count()));
      if (n > 0 && keyboard_) {
        char c = 0;
        const ssize_t got = ::read(STDIN_FILENO, &c, 1);
        if (got == 1 && (c == 'q' || c == 'Q')) return true;
        if (got == 0) keyboard_ = false;  // stdin closed: only signals end it now
      }
    }
    return true;
  }

 private:
  bool keyboard_ = false;
  termios saved_{};
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace

std::map<std::string, double> ParsePrometheusText(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos || name_end == 0) continue;
    size_t value_start = name_end;
    if (line[name_end] == '{') {
      value_start = line.find('}', name_end);
      if (value_start == std::string::npos) continue;
      ++value_start;
    }
    const char* begin = line.c_str() + value_start;
    char* end = nullptr;
    const double value = std::strtod(begin, &end);
    if (end == begin) continue;
    out[line.substr(0, name_end)] += value;
  }
  return out;
}

std::string FormatBytes(double bytes) {
  if (!(bytes > 0)) return "-";
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), bytes < 10 && unit > 0 ? "%.1f %s" : "%.0f %s", bytes, kUnits[unit]);
  return buf;
}

std::string FormatTopFrame(const TopSample& sample) {
  std::string out = Header(sample);
  out += "\nWORKERS\n" + WorkersTable(sample);
  out += "\nRUNNING TRIALS\n";
  out += sample.trials.empty() ? "(none)\n" : TrialsTable(sample);
  return out;
}

TopSample ReadTopSample(HttpClient& client, std::map<std::string, std::string>* sweep_metrics) {
  TopSample s;
  s.endpoint = client.address();
  s.now_ms = internal::NowMs();
  auto note = [&s](const std::string& what, const Status& status) {
    if (s.error.empty()) s.error = what + ": " + status.message();
  };
  StatusOr<json> workers = internal::CallJson(client, "GET", "/v1/workers", "", "");
  if (!workers.ok()) {
    note("GET /v1/workers", workers.status());
    return s;
  }
  s.workers = std::move(*workers);
  StatusOr<ClientResponse> metrics = client.Request("GET", "/metrics");
  if (!metrics.ok()) {
    note("GET /metrics", metrics.status());
  } else if (metrics->status != 200) {
    note("GET /metrics", Status::Internal("HTTP " + std::to_string(metrics->status)));
  } else {
    s.metrics = ParsePrometheusText(metrics->body);
  }
  const json& list = Field(s.workers, "workers");
  if (!list.is_array()) return s;
  for (const json& w : list) {
    const json& running = Field(w, "trial");
    if (!running.is_string()) continue;
    const std::string id = running.get<std::string>();
    const std::string target = "/v1/trials/" + internal::EncodePathSegment(id);
    TopTrial t;
    t.worker = "w" + FormatCell(Field(w, "rank"));
    StatusOr<json> trial = internal::CallJson(client, "GET", target, "", "");
    if (!trial.ok()) {  // e.g. it ended in between: shown as far as known
      note("GET " + target, trial.status());
      t.trial = {{"id", id}};
    } else {
      t.trial = std::move(*trial);
    }
    StatusOr<json> epochs = internal::CallJson(client, "GET", target + "/metrics", "", "");
    if (epochs.ok() && Field(*epochs, "epochs").is_array() && !(*epochs)["epochs"].empty()) {
      t.last_epoch = (*epochs)["epochs"].back();
    }
    const std::string sweep = internal::StringField(t.trial, "sweep");
    if (!sweep.empty() && sweep_metrics->count(sweep) == 0) {
      StatusOr<json> record = internal::CallJson(client, "GET", internal::SweepTarget(sweep, ""), "", "");
      if (record.ok()) (*sweep_metrics)[sweep] = internal::StringField(*record, "metric");
    }
    if (auto it = sweep_metrics->find(sweep); it != sweep_metrics->end()) t.metric = it->second;
    s.trials.push_back(std::move(t));
  }
  return s;
}

int RunTop(const ClientOptions& options, const TopArgs& args, CommandIo& io) {
  if (!(args.interval_s > 0)) return internal::PrintError(io, "--interval must be > 0", 1);
  auto client = internal::MakeClient(options, "");
  std::map<std::string, std::string> sweep_metrics;
  if (args.once) {
    TopSample sample = ReadTopSample(*client, &sweep_metrics);
    if (sample.workers.is_null()) return internal::PrintError(io, sample.error, 1);
    io.out << FormatTopFrame(sample);
    return sample.error.empty() ? 0 : 1;
  }
  QuitWatcher watcher(args.terminal);
  std::optional<double> last_finished;
  auto last_time = std::chrono::steady_clock::now();
  for (bool first = true;; first = false) {
    TopSample sample = ReadTopSample(*client, &sweep_metrics);
    const auto now = std::chrono::steady_clock::now();
    const auto finished = sample.metrics.find("lattice_trials_finished_total");
    if (finished != sample.metrics.end()) {
      const double seconds = std::chrono::duration<double>(now - last_time).count();
      if (last_finished && seconds > 0) {
        sample.throughput = std::max(0.0, (finished->second - *last_finished) / seconds);
      }
      last_finished = finished->second;
      last_time = now;
    }
    if (args.terminal) {
      io.out << "\033[H\033[2J";  // cursor home, clear screen
    } else if (!first) {
      io.out << "\n";
    }
    io.out << FormatTopFrame(sample) << std::flush;
    if (watcher.WaitForQuit(args.interval_s)) break;
  }
  return 0;
}

void RegisterTopCommand(CLI::App& app, int* exit_code) {
  struct State {
    ClientOptions options;
    TopArgs args;
  };
  auto state = std::make_shared<State>();
  CLI::App* top = app.add_subcommand(
      "top", "live view of the cluster: workers, queue, running trials and their last metrics; "
             "q or Ctrl-C quits");
  top->add_option("--interval", state->args.interval_s, "seconds between refreshes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  top->add_flag("--once", state->args.once, "print one frame and exit (for scripts)");
  internal::AddCommonOptions(top, &state->options);
  internal::SetRunner(top, exit_code, [state](CommandIo& io) {
    state->args.terminal = ::isatty(STDOUT_FILENO) != 0;
    return RunTop(state->options, state->args, io);
  });
}

}  // namespace lattice::cli
