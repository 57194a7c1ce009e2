#include "cli/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <set>
#include <sstream>

namespace lattice::cli {

using nlohmann::json;

const json& Field(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

namespace {

std::string Str(const json& j, const char* key, const std::string& fallback = "-") {
  const json& v = Field(j, key);
  return v.is_string() ? v.get<std::string>() : fallback;
}

std::optional<double> Num(const json& j, const char* key) {
  const json& v = Field(j, key);
  if (!v.is_number()) return std::nullopt;
  return v.get<double>();
}

int64_t Int(const json& j, const char* key) {
  const json& v = Field(j, key);
  return v.is_number() ? v.get<int64_t>() : 0;
}

// `j` itself when it is an array, else j[key] when that is an array, else [].
const json& ArrayOf(const json& j, const char* key) {
  static const json kEmpty = json::array();
  if (j.is_array()) return j;
  const json& v = Field(j, key);
  return v.is_array() ? v : kEmpty;
}

std::string CountsProgress(const json& sweep) {
  const json& counts = Field(sweep, "counts");
  const int64_t finished =
      Int(counts, "completed") + Int(counts, "failed") + Int(counts, "cancelled");
  return std::to_string(finished) + "/" + std::to_string(Int(sweep, "num_trials"));
}

std::string BestCell(const json& sweep) {
  const std::optional<double> objective = Num(Field(sweep, "best"), "objective");
  if (!objective) return "-";
  return Str(sweep, "metric", "objective") + "=" + FormatNumber(*objective);
}

// The value shown in the metric column: the objective, else the raw metric.
json MetricValue(const json& trial, const std::string& metric) {
  const json& objective = Field(trial, "objective");
  if (objective.is_number()) return objective;
  return Field(Field(trial, "metrics"), metric.c_str());
}

std::string OneLine(std::string text, size_t max_chars) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  if (max_chars > 3 && text.size() > max_chars) text = text.substr(0, max_chars - 3) + "...";
  return text;
}

std::string CsvCell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return CsvEscape(v.get<std::string>());
  return CsvEscape(v.dump());
}

struct TrialColumns {
  std::string metric;
  std::vector<std::string> params;
  std::vector<std::string> other_metrics;
};

TrialColumns CollectColumns(const json& sweep, const std::vector<json>& trials,
                            bool all_metrics) {
  TrialColumns cols;
  cols.metric = Str(sweep, "metric", "objective");
  std::set<std::string> params, metrics;
  for (const json& t : trials) {
    const json& p = Field(t, "params");
    if (p.is_object()) {
      for (auto it = p.begin(); it != p.end(); ++it) params.insert(it.key());
    }
    const json& m = Field(t, "metrics");
    if (all_metrics && m.is_object()) {
      for (auto it = m.begin(); it != m.end(); ++it) {
        if (it.key() != cols.metric) metrics.insert(it.key());
      }
    }
  }
  cols.params.assign(params.begin(), params.end());
  cols.other_metrics.assign(metrics.begin(), metrics.end());
  return cols;
}

std::vector<std::string> TrialsHeader(const TrialColumns& cols) {
  std::vector<std::string> header = {"TRIAL", "STATE", "ATTEMPTS"};
  header.insert(header.end(), cols.params.begin(), cols.params.end());
  header.push_back(cols.metric);
  header.insert(header.end(), cols.other_metrics.begin(), cols.other_metrics.end());
  for (const char* name : {"EPOCHS", "WORKER", "ERROR"}) header.push_back(name);
  return header;
}

// The cells of one trial as JSON values (formatted by the caller per output format).
std::vector<json> TrialCells(const json& t, const TrialColumns& cols) {
  std::vector<json> cells = {Field(t, "id"), Field(t, "state"), Field(t, "attempts")};
  const json& params = Field(t, "params");
  for (const std::string& p : cols.params) cells.push_back(Field(params, p.c_str()));
  cells.push_back(MetricValue(t, cols.metric));
  const json& metrics = Field(t, "metrics");
  for (const std::string& m : cols.other_metrics) cells.push_back(Field(metrics, m.c_str()));
  cells.push_back(Field(t, "epochs_done"));
  cells.push_back(Field(t, "worker"));
  cells.push_back(Field(t, "error"));
  return cells;
}

std::string TrialsCsv(const TrialColumns& cols, const std::vector<json>& trials) {
  std::string out;
  const std::vector<std::string> header = TrialsHeader(cols);
  for (size_t i = 0; i < header.size(); ++i) out += (i ? "," : "") + CsvEscape(header[i]);
  out += "\n";
  for (const json& t : trials) {
    const std::vector<json> cells = TrialCells(t, cols);
    for (size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + CsvCell(cells[i]);
    out += "\n";
  }
  return out;
}

std::string TrialsTable(const TrialColumns& cols, const std::vector<json>& trials,
                        size_t max_error_chars) {
  TextTable table(TrialsHeader(cols));
  for (const json& t : trials) {
    const std::vector<json> cells = TrialCells(t, cols);
    std::vector<std::string> row;
    for (size_t i = 0; i + 1 < cells.size(); ++i) row.push_back(FormatCell(cells[i]));
    const json& error = cells.back();
    row.push_back(error.is_string() && !error.get<std::string>().empty()
                      ? OneLine(error.get<std::string>(), max_error_chars)
                      : "-");
    table.AddRow(std::move(row));
  }
  return table.Render();
}

}  // namespace

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[64];
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    std::snprintf(buf, sizeof(buf), "%.0f", value);
  } else {
    std::snprintf(buf, sizeof(buf), "%.4g", value);
  }
  return buf;
}

std::string FormatCell(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number()) return FormatNumber(value.get<double>());
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string FormatDuration(int64_t ms) {
  if (ms < 0) ms = 0;
  const int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < 86400) {
    const int64_t m = (s % 3600) / 60;
    return std::to_string(s / 3600) + "h" + (m ? std::to_string(m) + "m" : "");
  }
  const int64_t h = (s % 86400) / 3600;
  return std::to_string(s / 86400) + "d" + (h ? std::to_string(h) + "h" : "");
}

std::string CsvEscape(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

TextTable::TextTable(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void TextTable::AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

std::string TextTable::Render() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string TextTable::RenderCsv() const {
  std::string out;
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) out += (i ? "," : "") + CsvEscape(row[i]);
    out += "\n";
  }
  return out;
}

std::string FormatSweepsTable(const json& sweeps, int64_t now_ms, bool csv) {
  TextTable table({"ID", "NAME", "KIND", "STATE", "TRIALS", "RUNNING", "FAILED", "BEST", "AGE"});
  for (const json& s : ArrayOf(sweeps, "sweeps")) {
    const json& counts = Field(s, "counts");
    const std::optional<double> created = Num(s, "created_ms");
    table.AddRow({Str(s, "id"), Str(s, "name"), Str(s, "kind"), Str(s, "state"),
                  CountsProgress(s), std::to_string(Int(counts, "running")),
                  std::to_string(Int(counts, "failed")), BestCell(s),
                  created ? FormatDuration(now_ms - static_cast<int64_t>(*created)) : "-"});
  }
  return csv ? table.RenderCsv() : table.Render();
}

std::string FormatSweepDetails(const json& sweep, int64_t now_ms) {
  const json& counts = Field(sweep, "counts");
  std::ostringstream counts_text;
  counts_text << Int(sweep, "num_trials") << " total: " << Int(counts, "completed")
              << " completed, " << Int(counts, "running") << " running, "
              << Int(counts, "queued") << " queued, " << Int(counts, "failed") << " failed, "
              << Int(counts, "cancelled") << " cancelled";
  const json& goal = Field(sweep, "maximize");
  std::string metric = Str(sweep, "metric");
  if (goal.is_boolean()) metric += goal.get<bool>() ? " (maximize)" : " (minimize)";
  const json& best = Field(sweep, "best");
  std::string best_text = "-";
  if (Num(best, "objective")) best_text = Str(best, "trial") + " " + BestCell(sweep);

  std::vector<std::pair<std::string, std::string>> lines = {
      {"id", Str(sweep, "id")},       {"name", Str(sweep, "name")},
      {"kind", Str(sweep, "kind")},   {"state", Str(sweep, "state")},
      {"metric", metric},             {"trials", counts_text.str()},
      {"best", best_text}};
  const int64_t created = Int(sweep, "created_ms");
  if (created > 0) lines.emplace_back("age", FormatDuration(now_ms - created));
  const int64_t finished = Int(sweep, "finished_ms");
  if (finished > 0 && created > 0) {
    lines.emplace_back("duration", FormatDuration(finished - created));
  }
  const std::string message = Str(sweep, "message", "");
  if (!message.empty()) lines.emplace_back("message", message);
  // An embed sweep over embedding variants: the index of each (its value: `trials`).
  const json& variants = Field(Field(sweep, "spec"), "variants");
  if (variants.is_array() && !variants.empty()) {
    std::string names;
    for (const json& v : variants) names += (names.empty() ? "" : ", ") + Str(v, "index");
    lines.emplace_back("indexes", names);
  }

  std::string out;
  for (const auto& [key, value] : lines) {
    out += key + ":" + std::string(10 - key.size(), ' ') + value + "\n";
  }
  return out;
}

std::string FormatProgressLine(const json& sweep, double elapsed_s) {
  const json& counts = Field(sweep, "counts");
  char head[64];
  std::snprintf(head, sizeof(head), "[%.1fs] ", elapsed_s);
  std::string line = head + Str(sweep, "id") + " " + Str(sweep, "name") + ": " +
                     CountsProgress(sweep) + " done, " +
                     std::to_string(Int(counts, "running")) + " running, " +
                     std::to_string(Int(counts, "failed")) + " failed";
  const json& best = Field(sweep, "best");
  if (const std::optional<double> objective = Num(best, "objective")) {
    line += ", best " + Str(sweep, "metric", "objective") + " " + FormatNumber(*objective) +
            " (" + Str(best, "trial") + ")";
  }
  return line;
}

std::vector<json> SortTrials(const json& trials, bool maximize) {
  std::vector<json> out;
  for (const json& t : ArrayOf(trials, "trials")) out.push_back(t);
  std::stable_sort(out.begin(), out.end(), [maximize](const json& a, const json& b) {
    const std::optional<double> oa = Num(a, "objective");
    const std::optional<double> ob = Num(b, "objective");
    const bool va = oa && !std::isnan(*oa);
    const bool vb = ob && !std::isnan(*ob);
    if (va != vb) return va;
    if (va && *oa != *ob) return maximize ? *oa > *ob : *oa < *ob;
    return Int(a, "index") < Int(b, "index");
  });
  return out;
}

StatusOr<TrialsFormat> ParseTrialsFormat(const std::string& text) {
  if (text == "table") return TrialsFormat::kTable;
  if (text == "csv") return TrialsFormat::kCsv;
  if (text == "json") return TrialsFormat::kJson;
  return Status::InvalidArgument("--format must be table, csv or json, got \"" + text + "\"");
}

std::string FormatTrials(const json& sweep, const json& trials, const TrialsView& view) {
  const json& maximize = Field(sweep, "maximize");
  std::vector<json> sorted = SortTrials(trials, !maximize.is_boolean() || maximize.get<bool>());
  if (view.top > 0 && sorted.size() > static_cast<size_t>(view.top)) sorted.resize(view.top);
  if (view.format == TrialsFormat::kJson) {
    return json(sorted).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  }
  const TrialColumns cols = CollectColumns(sweep, sorted, view.all_metrics);
  if (view.format == TrialsFormat::kCsv) return TrialsCsv(cols, sorted);
  return TrialsTable(cols, sorted, view.max_error_chars);
}

std::string FormatWorkersTable(const json& workers, int64_t now_ms, bool csv) {
  TextTable table({"RANK", "HOST", "STATE", "TRIAL", "GANG", "LAST-SEEN", "RESTARTS", "NOTE"});
  for (const json& w : ArrayOf(workers, "workers")) {
    // A multi-worker trial's ranks, member 0 (the one that reports) first.
    std::string gang;
    const json& members = Field(w, "gang");
    if (members.is_array()) {
      for (const json& r : members) gang += (gang.empty() ? "" : ",") + FormatCell(r);
    }
    const std::optional<double> seen = Num(w, "last_seen_ms");
    // Why a worker is lost, else why its task process last restarted.
    const std::string note = Str(w, "state") == "lost" && Str(w, "lost_reason") != "-"
                                 ? Str(w, "lost_reason")
                                 : Str(w, "fault");
    table.AddRow({FormatCell(Field(w, "rank")), Str(w, "host"), Str(w, "state"),
                  Str(w, "trial"), gang.empty() ? "-" : gang,
                  seen ? FormatDuration(now_ms - static_cast<int64_t>(*seen)) + " ago" : "-",
                  FormatCell(Field(w, "task_restarts")), note});
  }
  return csv ? table.RenderCsv() : table.Render();
}

}  // namespace lattice::cli
