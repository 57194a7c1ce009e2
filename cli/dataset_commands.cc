#include "cli/dataset_commands.h"

#include <memory>

#include <CLI/CLI.hpp>

#include "cli/format.h"
#include "cli/internal/api.h"
#include "http/client.h"

namespace lattice::cli {

using nlohmann::json;

namespace {

// "trial s1-t3 layer -2", "torchscript enc.pt", "flatten".
std::string DescribeEncoder(const json& record) {
  const json& encoder = record.value("source", json::object()).value("encoder", json::object());
  const std::string type = encoder.value("type", "");
  if (type == "trial") {
    return "trial " + encoder.value("trial", "") + " layer " +
           std::to_string(encoder.value("layer", -2));
  }
  if (type == "torchscript") return "torchscript " + encoder.value("path", "");
  return type;
}

}  // namespace

std::string FormatDatasetsTable(const json& body, bool csv) {
  const json list = body.value("datasets", json::array());
  if (list.empty() && !csv) {
    return "no activation datasets yet: an embed sweep with output: {dataset: <name>} "
           "writes one\n";
  }
  TextTable table({"NAME", "STATE", "ROWS", "DIM", "LABELS", "SWEEP", "ENCODER"});
  for (const json& d : list) {
    auto cell = [&d](const char* key) { return FormatCell(Field(d, key)); };
    table.AddRow({cell("name"), cell("state"), cell("rows"), cell("dim"),
                  d.value("labels", false) ? "yes" : "no", cell("sweep"), DescribeEncoder(d)});
  }
  return csv ? table.RenderCsv() : table.Render();
}

int RunDatasets(const ClientOptions& options, const std::string& format, CommandIo& io) {
  auto parsed = ParseTrialsFormat(format);
  if (!parsed.ok()) return internal::PrintError(io, parsed.status().message(), 1);
  auto client = internal::MakeClient(options, "");
  StatusOr<json> body = internal::CallJson(*client, "GET", "/v1/datasets", "", "");
  if (!body.ok()) return internal::PrintError(io, body.status().message(), 1);
  if (*parsed == TrialsFormat::kJson) {
    io.out << body->value("datasets", json::array()).dump(2) << "\n";
    return 0;
  }
  io.out << FormatDatasetsTable(*body, *parsed == TrialsFormat::kCsv);
  return 0;
}

void RegisterDatasetCommands(CLI::App& app, int* exit_code) {
  struct State {
    ClientOptions options;
    std::string format = "table";
  };
  auto st = std::make_shared<State>();
  CLI::App* sub = app.add_subcommand(
      "datasets", "list activation datasets (embed sweeps with output: {dataset: <name>})");
  internal::AddCommonOptions(sub, &st->options);
  sub->add_option("--format", st->format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  internal::SetRunner(sub, exit_code,
                      [st](CommandIo& io) { return RunDatasets(st->options, st->format, io); });
}

}  // namespace lattice::cli
