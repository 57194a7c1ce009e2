// `lattice curves <trial> [--format table|csv|json]`: a trial's per-epoch metrics
// (GET /v1/trials/{id}/metrics), one row per epoch of every attempt.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"

namespace lattice::cli {

// The metrics response ({"trial", "epochs": [{"attempt", "epoch", "values": {...}}]}) as a
// table / csv with columns EPOCH ATTEMPT <metric names, sorted> (a missing or null value
// is "-" in the table, empty in csv), or json: the epochs array as sent.
std::string FormatCurves(const nlohmann::json& response, TrialsFormat format);

int RunCurves(const ClientOptions& options, const std::string& trial, const std::string& format,
              CommandIo& io);

}  // namespace lattice::cli
