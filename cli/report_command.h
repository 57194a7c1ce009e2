// `lattice report <sweep> -o DIR`: the figures, tables and data of a sweep for a paper.
//
// Reads GET /v1/sweeps/{id}, every trial (paged) and each trial's per-epoch metrics, and
// writes into DIR (created if missing; files replaced atomically):
//   trials.csv      one row per trial: id, state, epochs, the swept parameters, then every
//                   scalar result metric (per-class entries left out), sorted by name
//   points.csv      one row per point (the parameters but seed): trials, mean and sample std
//                   of the sweep metric and of test_accuracy (with repeats: N, over seeds)
//   curves.svg      every trial's learning curve of the sweep metric when it is a per-epoch
//                   one, else of val_accuracy (the best trial drawn black)
//   parallel.svg    parallel coordinates: the swept parameters -> the sweep metric
//   heatmap.svg     the first two swept parameters (other than seed), each cell the mean
//                   sweep metric of its trials
//   confusion.svg   the best trial's confusion matrix (test part if any, else validation)
//   top_configs.tex LaTeX (booktabs) table of the best 10 configurations
//   per_class.tex   the best trial's per-class precision / recall / F1 / support
//   dataset.tex     the dataset overview: rows of each class in training, validation, test
// The same numbers as the API and the report page (GET /sweeps/{id}).
//
// Exit codes: 0 success; 1 any error, printed as "error: <message>" on stderr.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

struct ReportArgs {
  std::string sweep;   // id or name
  std::string output;  // directory (-o); default "report-<sweep>"
};

int RunReport(const ClientOptions& options, const ReportArgs& args, CommandIo& io);

void RegisterReportCommand(CLI::App& app, int* exit_code);

// ---- pure (unit-tested) ----

// File name -> content, from the sweep (GET /v1/sweeps/{id}), its trials (the "trials"
// array) and each trial's per-epoch metrics by trial id (GET /v1/trials/{id}/metrics'
// "epochs" array).
std::map<std::string, std::string> BuildReportFiles(
    const nlohmann::json& sweep, const nlohmann::json& trials,
    const std::map<std::string, nlohmann::json>& epochs);

}  // namespace lattice::cli
