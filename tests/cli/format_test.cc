#include "cli/format.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace lattice::cli {
namespace {

using nlohmann::json;

json Sweep(bool maximize) {
  return {{"id", "s3"},
          {"name", "digits-probe-grid"},
          {"kind", "train"},
          {"state", "running"},
          {"metric", maximize ? "val_accuracy" : "val_loss"},
          {"maximize", maximize},
          {"num_trials", 27},
          {"created_ms", 1000},
          {"finished_ms", nullptr},
          {"message", ""},
          {"counts",
           {{"queued", 11}, {"running", 2}, {"completed", 13}, {"failed", 1}, {"cancelled", 0}}},
          {"best", {{"trial", "s3-t4"}, {"objective", 0.98061}}}};
}

json Trial(int index, json objective, const std::string& state = "completed",
           const std::string& error = "") {
  return {{"id", "s3-t" + std::to_string(index)},
          {"index", index},
          {"params", {{"lr", 0.001 * (index + 1)}, {"dropout", 0.1}}},
          {"state", state},
          {"attempts", 1},
          {"worker", index % 2 == 0 ? json(2) : json(nullptr)},
          {"metrics", {{"val_accuracy", objective}, {"val_loss", 0.5}}},
          {"objective", objective},
          {"epochs_done", 30},
          {"error", error}};
}

json Trials() {
  return {{"trials",
           {Trial(0, 0.91), Trial(1, nullptr, "running"), Trial(2, 0.98), Trial(3, 0.95),
            Trial(4, nullptr, "failed", "CUDA out of memory, \"oops\"\nsecond line")}}};
}

std::vector<std::string> Ids(const std::vector<json>& trials) {
  std::vector<std::string> ids;
  for (const json& t : trials) ids.push_back(t["id"]);
  return ids;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

TEST(FormatTest, Numbers) {
  EXPECT_EQ(FormatNumber(0.98061), "0.9806");
  EXPECT_EQ(FormatNumber(7e-4), "0.0007");
  EXPECT_EQ(FormatNumber(3e-5), "3e-05");
  EXPECT_EQ(FormatNumber(30), "30");
  EXPECT_EQ(FormatNumber(-2), "-2");
  EXPECT_EQ(FormatNumber(123.456), "123.5");
  EXPECT_EQ(FormatCell(json(nullptr)), "-");
  EXPECT_EQ(FormatCell(json("adamw")), "adamw");
  EXPECT_EQ(FormatCell(json(true)), "true");
}

TEST(FormatTest, DurationsAndCsvEscaping) {
  EXPECT_EQ(FormatDuration(12'300), "12s");
  EXPECT_EQ(FormatDuration(5 * 60'000 + 1), "5m");
  EXPECT_EQ(FormatDuration(3'600'000 + 5 * 60'000), "1h5m");
  EXPECT_EQ(FormatDuration(2 * 86'400'000LL), "2d");
  EXPECT_EQ(CsvEscape("plain"), "plain");
  EXPECT_EQ(CsvEscape("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvEscape("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvEscape("two\nlines"), "\"two\nlines\"");
}

TEST(FormatTest, TextTableAlignsColumns) {
  TextTable table({"ID", "NAME"});
  table.AddRow({"s10", "x"});
  table.AddRow({"s3", "longer-name"});
  EXPECT_EQ(table.Render(), "ID   NAME\ns10  x\ns3   longer-name\n");
}

TEST(FormatTest, SortsTrialsBestFirstForMaximizeAndMinimize) {
  EXPECT_EQ(Ids(SortTrials(Trials(), true)),
            (std::vector<std::string>{"s3-t2", "s3-t3", "s3-t0", "s3-t1", "s3-t4"}));
  EXPECT_EQ(Ids(SortTrials(Trials(), false)),
            (std::vector<std::string>{"s3-t0", "s3-t3", "s3-t2", "s3-t1", "s3-t4"}));
  EXPECT_EQ(Ids(SortTrials(Trials()["trials"], true)).size(), 5u);  // bare array too
}

TEST(FormatTest, TrialsTableTopN) {
  TrialsView view;
  view.top = 2;
  const std::vector<std::string> lines = Lines(FormatTrials(Sweep(true), Trials(), view));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "TRIAL  STATE      ATTEMPTS  dropout  lr     val_accuracy  EPOCHS  WORKER  ERROR");
  EXPECT_EQ(lines[1], "s3-t2  completed  1         0.1      0.003  0.98          30      2       -");
  EXPECT_EQ(lines[2], "s3-t3  completed  1         0.1      0.004  0.95          30      -       -");
}

TEST(FormatTest, TrialsTableTruncatesErrorsAndAddsMetrics) {
  TrialsView view;
  view.all_metrics = true;
  view.max_error_chars = 12;
  const std::vector<std::string> lines = Lines(FormatTrials(Sweep(true), Trials(), view));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_NE(lines[0].find("val_accuracy  val_loss  EPOCHS"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[5].substr(0, 5), "s3-t4");
  EXPECT_NE(lines[5].find("CUDA out ..."), std::string::npos) << lines[5];
}

TEST(FormatTest, TrialsCsvHasHeaderAndEscapes) {
  TrialsView view;
  view.format = TrialsFormat::kCsv;
  const std::vector<std::string> lines = Lines(FormatTrials(Sweep(false), Trials(), view));
  EXPECT_EQ(lines[0], "TRIAL,STATE,ATTEMPTS,dropout,lr,val_loss,EPOCHS,WORKER,ERROR");
  EXPECT_EQ(lines[1], "s3-t0,completed,1,0.1,0.001,0.91,30,2,");
  // The failed trial's error has a comma, quotes and a newline: one quoted field.
  const std::string csv = FormatTrials(Sweep(false), Trials(), view);
  EXPECT_NE(csv.find("s3-t4,failed,1,0.1,0.005,0.5,30,2,\"CUDA out of memory, \"\"oops\"\"\nsecond "
                     "line\"\n"),
            std::string::npos)
      << csv;
}

TEST(FormatTest, TrialsJsonIsTheSortedArray) {
  TrialsView view;
  view.format = TrialsFormat::kJson;
  view.top = 3;
  const json out = json::parse(FormatTrials(Sweep(true), Trials(), view));
  ASSERT_TRUE(out.is_array());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0]["id"], "s3-t2");
  EXPECT_EQ(ParseTrialsFormat("xml").status().code(), StatusCode::kInvalidArgument);
}

TEST(FormatTest, SweepsTableAndDetails) {
  const json sweeps = {{"sweeps", {Sweep(true)}}};
  const std::vector<std::string> lines = Lines(FormatSweepsTable(sweeps, 1000 + 125'000));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "ID  NAME               KIND   STATE    TRIALS  RUNNING  FAILED  BEST" +
                std::string(17, ' ') + "AGE");
  EXPECT_EQ(lines[1],
            "s3  digits-probe-grid  train  running  14/27   2        1       "
            "val_accuracy=0.9806  2m");
  const std::string details = FormatSweepDetails(Sweep(true), 1000 + 5000);
  EXPECT_NE(details.find("metric:    val_accuracy (maximize)"), std::string::npos) << details;
  EXPECT_NE(details.find("best:      s3-t4 val_accuracy=0.9806"), std::string::npos) << details;
  EXPECT_EQ(details.find("indexes:"), std::string::npos) << details;
  // An embed sweep over variants lists the index of each.
  json variants = Sweep(true);
  variants["spec"] = {
      {"variants", {{{"index", "fm-normalize-false"}}, {{"index", "fm-normalize-true"}}}}};
  EXPECT_NE(
      FormatSweepDetails(variants, 6000).find("indexes:   fm-normalize-false, fm-normalize-true\n"),
      std::string::npos)
      << FormatSweepDetails(variants, 6000);
}

TEST(FormatTest, ProgressLine) {
  EXPECT_EQ(FormatProgressLine(Sweep(true), 12.34),
            "[12.3s] s3 digits-probe-grid: 14/27 done, 2 running, 1 failed, best val_accuracy "
            "0.9806 (s3-t4)");
  json no_best = Sweep(true);
  no_best["best"] = nullptr;
  EXPECT_EQ(FormatProgressLine(no_best, 0.0),
            "[0.0s] s3 digits-probe-grid: 14/27 done, 2 running, 1 failed");
}

TEST(FormatTest, WorkersTable) {
  const json workers = {
      {"workers",
       {{{"rank", 1}, {"host", "gpu01"}, {"state", "busy"}, {"trial", "s3-t4"},
         {"gang", {1, 2}}, {"last_seen_ms", 9000}, {"task_restarts", 1},
         {"fault", "task process killed by signal 11 (Segmentation fault) while running s3-t2"}},
        {{"rank", 2}, {"host", "gpu02"}, {"state", "busy"}, {"trial", "s3-t4"}, {"gang", {1, 2}},
         {"last_seen_ms", 10000}, {"task_restarts", 0}, {"fault", nullptr}},
        {{"rank", 3}, {"host", "gpu03"}, {"state", "lost"}, {"trial", nullptr},
         {"last_seen_ms", 1000}, {"task_restarts", 0}, {"lost_reason", "no message for 61 s"}}}}};
  EXPECT_EQ(FormatWorkersTable(workers, 12000),
            "RANK  HOST   STATE  TRIAL  GANG  LAST-SEEN  RESTARTS  NOTE\n"
            "1     gpu01  busy   s3-t4  1,2   3s ago     1         task process killed by signal 11 "
            "(Segmentation fault) while running s3-t2\n"
            "2     gpu02  busy   s3-t4  1,2   2s ago     0         -\n"
            "3     gpu03  lost   -      -     11s ago    0         no message for 61 s\n");
}

}  // namespace
}  // namespace lattice::cli
