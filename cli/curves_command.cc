#include "cli/curves_command.h"

#include <set>

#include "cli/internal/api.h"

namespace lattice::cli {

using nlohmann::json;

std::string FormatCurves(const json& response, TrialsFormat format) {
  const json& epochs = Field(response, "epochs");
  if (format == TrialsFormat::kJson) {
    return (epochs.is_array() ? epochs : json::array()).dump(2) + "\n";
  }
  std::set<std::string> names;
  if (epochs.is_array()) {
    for (const json& e : epochs) {
      const json& values = Field(e, "values");
      if (values.is_object()) {
        for (const auto& [name, v] : values.items()) names.insert(name);
      }
    }
  }
  std::vector<std::string> header = {"EPOCH", "ATTEMPT"};
  header.insert(header.end(), names.begin(), names.end());
  TextTable table(header);
  if (epochs.is_array()) {
    for (const json& e : epochs) {
      std::vector<std::string> row = {FormatCell(Field(e, "epoch")), FormatCell(Field(e, "attempt"))};
      for (const std::string& name : names) {
        const json& v = Field(Field(e, "values"), name.c_str());
        if (format == TrialsFormat::kCsv) {
          row.push_back(v.is_number() ? v.dump() : "");
        } else {
          row.push_back(FormatCell(v));
        }
      }
      table.AddRow(std::move(row));
    }
  }
  return format == TrialsFormat::kCsv ? table.RenderCsv() : table.Render();
}

int RunCurves(const ClientOptions& options, const std::string& trial, const std::string& format,
              CommandIo& io) {
  StatusOr<TrialsFormat> parsed = ParseTrialsFormat(format);
  if (!parsed.ok()) return internal::PrintError(io, parsed.status().message(), 1);
  auto client = internal::MakeClient(options, "");
  StatusOr<json> body = internal::CallJson(
      *client, "GET", "/v1/trials/" + internal::EncodePathSegment(trial) + "/metrics", "", "");
  if (!body.ok()) return internal::PrintError(io, body.status().message(), 1);
  const json& epochs = Field(*body, "epochs");
  if (*parsed == TrialsFormat::kTable && (!epochs.is_array() || epochs.empty())) {
    io.out << "trial " << trial << " has no per-epoch metrics yet\n";
    return 0;
  }
  io.out << FormatCurves(*body, *parsed);
  return 0;
}

}  // namespace lattice::cli
