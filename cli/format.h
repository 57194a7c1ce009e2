// Pure formatting for the `lattice` client commands: API JSON in, text out. No I/O, so
// every function here is unit-testable.
//
// The JSON shapes are the coordinator's (see cli/commands.h). Missing or mistyped fields
// are shown as "-" rather than throwing.
//
// Numbers in tables use FormatNumber (4 significant digits); csv and json keep full
// precision.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice::cli {

// Integers (within 2^53) print as integers, other numbers with 4 significant digits
// ("%.4g": 0.98061 → "0.9806", 7e-4 → "0.0007", 3e-05 → "3e-05").
std::string FormatNumber(double value);
// A JSON value for a table cell: numbers via FormatNumber, strings verbatim, null → "-",
// booleans "true"/"false", arrays/objects as compact JSON.
std::string FormatCell(const nlohmann::json& value);
// A duration in ms as "45s", "12m", "3h5m", "2d4h".
std::string FormatDuration(int64_t ms);
// RFC 4180: quoted (with doubled quotes) when it has a comma, quote, CR or LF.
std::string CsvEscape(const std::string& field);
// `j[key]` when `j` is an object that has it, else a null value (never throws).
const nlohmann::json& Field(const nlohmann::json& j, const char* key);

// Left-aligned columns separated by two spaces; no trailing spaces; one '\n' per line.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  std::string Render() const;
  // The same rows as CSV (RFC 4180, header first).
  std::string RenderCsv() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
};

// GET /v1/sweeps ({"sweeps": [S...]} or the bare array) → table with columns
// ID NAME KIND STATE TRIALS RUNNING FAILED BEST AGE. TRIALS is "<finished>/<total>",
// finished = completed + failed + cancelled; BEST is "<metric>=<value>". `csv`: the same
// cells as CSV.
std::string FormatSweepsTable(const nlohmann::json& sweeps, int64_t now_ms, bool csv = false);
// GET /v1/sweeps/{id} → "key: value" lines.
std::string FormatSweepDetails(const nlohmann::json& sweep, int64_t now_ms);
// One progress line for `submit --wait`:
// "[12.3s] s3 digits-probe-grid: 14/27 done, 2 running, 0 failed, best val_accuracy 0.9806 (s3-t4)".
std::string FormatProgressLine(const nlohmann::json& sweep, double elapsed_s);

// Trials ({"trials": [T...]} or the bare array) sorted best first by "objective"
// (descending when `maximize`), trials without a numeric objective last; ties and the
// objective-less tail keep trial index order.
std::vector<nlohmann::json> SortTrials(const nlohmann::json& trials, bool maximize);

enum class TrialsFormat { kTable, kCsv, kJson };
// "table" | "csv" | "json", else InvalidArgument.
StatusOr<TrialsFormat> ParseTrialsFormat(const std::string& text);

struct TrialsView {
  // Output format. Default: table.
  TrialsFormat format = TrialsFormat::kTable;
  // Show only the best `top` trials; 0 shows all. Default: 0.
  int top = 0;
  // Add a column for every metric the trials report, not just the sweep's. Default: false.
  bool all_metrics = false;
  // ERROR cells longer than this many characters are cut with "...". Table only.
  // Default: 40.
  size_t max_error_chars = 40;
};

// Trials of `sweep` (S, for its metric and goal) as a table / csv (header line first) /
// json array (pretty-printed), sorted by SortTrials and cut to `view.top`. Columns:
// TRIAL STATE ATTEMPTS <param columns, sorted> <metric> [<other metrics>] EPOCHS WORKER ERROR.
std::string FormatTrials(const nlohmann::json& sweep, const nlohmann::json& trials,
                         const TrialsView& view);

// GET /v1/workers → table RANK HOST STATE TRIAL LAST-SEEN ("3s ago").
std::string FormatWorkersTable(const nlohmann::json& workers, int64_t now_ms, bool csv = false);

}  // namespace lattice::cli
