// `lattice curves` formatting (cli/curves_command.h).
#include "cli/curves_command.h"

#include <gtest/gtest.h>

namespace lattice::cli {
namespace {

using nlohmann::json;

TEST(CurvesCommandTest, OneRowPerEpochAndAColumnPerMetric) {
  const json response = json::parse(R"({"trial": "s1-t0", "epochs": [
      {"attempt": 1, "epoch": 1, "values": {"train_loss": 0.9, "val_accuracy": 0.5}},
      {"attempt": 1, "epoch": 2, "values": {"train_loss": 0.5, "lr": 0.001}},
      {"attempt": 2, "epoch": 3, "values": {"val_accuracy": null}}]})");
  const std::string table = FormatCurves(response, TrialsFormat::kTable);
  EXPECT_EQ(table.substr(0, table.find('\n')), "EPOCH  ATTEMPT  lr     train_loss  val_accuracy");
  EXPECT_NE(table.find("2      1        0.001  0.5         -"), std::string::npos) << table;
  const std::string csv = FormatCurves(response, TrialsFormat::kCsv);
  EXPECT_EQ(csv, "EPOCH,ATTEMPT,lr,train_loss,val_accuracy\n1,1,,0.9,0.5\n2,1,0.001,0.5,\n3,2,,,\n");
  const json parsed = json::parse(FormatCurves(response, TrialsFormat::kJson));
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed[1]["values"]["lr"], 0.001);
  EXPECT_EQ(FormatCurves(json::object(), TrialsFormat::kJson), "[]\n");
}

}  // namespace
}  // namespace lattice::cli
