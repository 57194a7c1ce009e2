// `lattice datasets`: the activation datasets of embed sweeps with `output: {dataset}`
// (jobs/activation_dataset.h), from GET /v1/datasets.
//
//   datasets [--format table|csv|json]
//       table NAME STATE ROWS DIM LABELS SWEEP ENCODER; json: the records as the server
//       sends them (an array)
//
// Exit codes: 0 success; 1 any error, printed as "error: <message>" on stderr.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

int RunDatasets(const ClientOptions& options, const std::string& format, CommandIo& io);

// The table (or CSV) of the records of GET /v1/datasets ({"datasets": [...]}).
std::string FormatDatasetsTable(const nlohmann::json& body, bool csv);

// Adds `datasets` to `app` (conventions of RegisterClientCommands).
void RegisterDatasetCommands(CLI::App& app, int* exit_code);

}  // namespace lattice::cli
