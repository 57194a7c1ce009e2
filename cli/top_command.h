// `lattice top`: a live terminal view of the cluster's workers and running trials.
//
//   lattice top [--interval S] [--once]
//
// Every frame reads the coordinator's HTTP API, like the other client commands:
//   GET /v1/workers                    the workers table, and which trials run where;
//   GET /metrics                       queue depth, running trials, the finished-trial
//                                      counter (throughput) and the coordinator's RSS;
//   GET /v1/trials/{id}[/metrics]      each running trial: attempt, epochs, started, and its
//                                      last epoch's metrics;
//   GET /v1/sweeps/{id}                once per sweep: the metric to show.
// A frame is
//   a header: workers (idle/busy/lost), queue depth, running trials, throughput (trials
//     finished per second since the previous frame; "-" on the first), coordinator RSS;
//   WORKERS: RANK HOST STATE TRIAL RSS VRAM RESTARTS DONE LAST-SEEN;
//   RUNNING TRIALS: TRIAL SWEEP WORKER ATTEMPT EPOCH LAST-METRIC ELAPSED.
// On a terminal each frame clears the screen first, and q or Ctrl-C ends the command;
// elsewhere frames follow each other, separated by a blank line, until Ctrl-C. --once
// prints one frame and exits (scripts, tests).
//
// Exit codes: 0 after q, Ctrl-C or --once; 1 when --once cannot read the API (a live view
// shows the error in the frame and keeps trying).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

struct TopArgs {
  // Seconds between frames (--interval). Default: 2.
  double interval_s = 2;
  // Print one frame and exit (--once). Default: false.
  bool once = false;
  // Clear the screen before each frame and read q from the keyboard: set by the command
  // when stdout is a terminal. Default: false.
  bool terminal = false;
};

// One running trial as a frame shows it.
struct TopTrial {
  nlohmann::json trial;       // GET /v1/trials/{id}
  std::string worker;         // "w2"
  std::string metric;         // its sweep's metric; "" when not known
  nlohmann::json last_epoch;  // the last of GET /v1/trials/{id}/metrics' "epochs"; null: none
};

// What one frame shows.
struct TopSample {
  std::string endpoint;                  // "127.0.0.1:7070"
  int64_t now_ms = 0;                    // wall clock, ms since the Unix epoch
  nlohmann::json workers;                // GET /v1/workers
  std::map<std::string, double> metrics; // ParsePrometheusText(GET /metrics)
  std::vector<TopTrial> trials;          // the workers' current trials, by worker rank
  std::optional<double> throughput;      // trials finished per second, when known
  std::string error;                     // why this frame is incomplete; "" when it is not
};

// Prometheus text format → value per metric name, the series of one name (its labels)
// summed: {"lattice_queue_depth": 25, "lattice_trials_finished_total": 180, ...}. Comments
// and lines that do not parse are skipped.
std::map<std::string, double> ParsePrometheusText(const std::string& text);

// "-" for 0 or less, else "812 KiB", "181 MiB", "1.2 GiB".
std::string FormatBytes(double bytes);

// One frame (see the top of this file); ends with a newline. Pure: no I/O, no clock.
std::string FormatTopFrame(const TopSample& sample);

class HttpClient;

// Reads one sample through `client` (throughput stays unset: it needs two samples).
// `sweep_metrics` caches each sweep's metric across frames. A failed request is named in
// `error`; what could be read is kept.
TopSample ReadTopSample(HttpClient& client, std::map<std::string, std::string>* sweep_metrics);

int RunTop(const ClientOptions& options, const TopArgs& args, CommandIo& io);

// Adds the `top` subcommand (with --host, --port, --data-dir) to `app`; see
// RegisterClientCommands for `exit_code`.
void RegisterTopCommand(CLI::App& app, int* exit_code);

}  // namespace lattice::cli
