#include "cli/report_command.h"

#include <gtest/gtest.h>

#include <string>

namespace lattice::cli {
namespace {

using nlohmann::json;

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A 3 x 3 grid (lr x dropout), metric = lr * 10 + dropout: the best is lr 0.3, dropout 0.2.
struct Fixture {
  json sweep = {{"id", "s1"},
                {"name", "probe"},
                {"metric", "selected_val_f1"},
                {"maximize", true},
                {"spec",
                 {{"dataset", {{"split", {{"train_per_class", 150}}}}},
                  {"search", {{"parameters", {{"lr", {0.1, 0.2, 0.3}}, {"dropout", {0.0, 0.1, 0.2}}}}}}}}};
  json trials = json::array();
  std::map<std::string, json> epochs;

  Fixture() {
    int i = 0;
    for (double lr : {0.1, 0.2, 0.3}) {
      for (double dropout : {0.0, 0.1, 0.2}) {
        const std::string id = "s1-t" + std::to_string(i++);
        json m = {{"selected_val_f1", lr * 10 + dropout}, {"val_accuracy", 0.5}};
        for (int c = 0; c < 3; ++c) {
          const std::string cs = std::to_string(c);
          for (const char* n : {"precision", "recall", "f1"}) m["test_" + std::string(n) + "_" + cs] = 0.5;
          m["test_support_" + cs] = 10 + c;
          m["selected_val_support_" + cs] = 20 + c;
          for (int p = 0; p < 3; ++p) m["test_confusion_" + cs + "_" + std::to_string(p)] = c * 3 + p;
        }
        m["test_f1"] = 0.5;
        m["test_accuracy"] = 0.6;
        trials.push_back({{"id", id}, {"state", "completed"}, {"epochs_done", 2},
                          {"params", {{"lr", lr}, {"dropout", dropout}}}, {"metrics", m}});
        epochs[id] = json::array({{{"epoch", 1}, {"values", {{"selected_val_f1", 0.1}}}},
                                  {{"epoch", 2}, {"values", {{"val_accuracy", 0.2}}}}});
      }
    }
  }
};

TEST(ReportCommandTest, WritesEveryFigureAndTable) {
  Fixture f;
  const auto files = BuildReportFiles(f.sweep, f.trials, f.epochs);
  ASSERT_EQ(files.size(), 9u);
  // Curves: the sweep metric is not per-epoch in every trial... it is in epoch 1: 9 curves.
  EXPECT_EQ(Count(files.at("curves.svg"), "class=\"curve\""), 9);
  EXPECT_EQ(Count(files.at("parallel.svg"), "class=\"line\""), 9);
  EXPECT_EQ(Count(files.at("heatmap.svg"), "class=\"cell\""), 9);
  EXPECT_EQ(Count(files.at("confusion.svg"), "class=\"cm-cell\""), 9);
  EXPECT_NE(files.at("confusion.svg").find("s1-t8, test part"), std::string::npos);
  // CSV: a header and 9 rows, per-class metrics left out.
  const std::string& csv = files.at("trials.csv");
  EXPECT_EQ(Count(csv, "\n"), 10);
  EXPECT_EQ(csv.find("test_f1_0"), std::string::npos);
  EXPECT_NE(csv.find("id,state,epochs,"), std::string::npos);
  // Points: 9 distinct points of one trial each (std 0).
  EXPECT_EQ(Count(files.at("points.csv"), "\n"), 10);
  EXPECT_NE(files.at("points.csv").find("dropout,lr,trials,selected_val_f1_mean"), std::string::npos)
      << files.at("points.csv");
  // Top configurations: the best first (lr 0.3, dropout 0.2: 3.2), at most 10 rows.
  const std::string& top = files.at("top_configs.tex");
  EXPECT_NE(top.find("\\toprule"), std::string::npos);
  const size_t first = top.find("\\midrule\n1 & ");
  ASSERT_NE(first, std::string::npos) << top;
  EXPECT_NE(top.find("3.2", first), std::string::npos);
  EXPECT_LT(top.find("3.2", first), top.find("\\\\", first)) << top;
  EXPECT_EQ(Count(top, " \\\\\n"), 10);  // the header and 9 trials
  EXPECT_NE(files.at("per_class.tex").find("2 & 0.5 & 0.5 & 0.5 & 12 \\\\"), std::string::npos)
      << files.at("per_class.tex");
  EXPECT_NE(files.at("dataset.tex").find("1 & 150 & 21 & 11 \\\\"), std::string::npos)
      << files.at("dataset.tex");
}

TEST(ReportCommandTest, RepeatsAreAveragedPerPoint) {
  Fixture f;
  json trials = json::array();
  for (int seed : {42, 43}) {
    json t = f.trials[0];
    t["id"] = "s1-t" + std::to_string(seed);
    t["params"]["seed"] = seed;
    t["metrics"]["selected_val_f1"] = seed == 42 ? 0.5 : 0.7;
    trials.push_back(t);
  }
  const std::string points = BuildReportFiles(f.sweep, trials, {}).at("points.csv");
  // One point (dropout 0, lr 0.1): 2 trials, mean 0.6, std sqrt(0.02).
  EXPECT_EQ(Count(points, "\n"), 2) << points;
  EXPECT_NE(points.find("0.0,0.1,2,0.6"), std::string::npos) << points;
  EXPECT_NE(points.find(",0.1414213562373"), std::string::npos) << points;
}

TEST(ReportCommandTest, AnEmptySweepStillGivesFiles) {
  const auto files = BuildReportFiles({{"name", "x"}, {"metric", "val_accuracy"}}, json::array(), {});
  EXPECT_EQ(files.size(), 9u);
  EXPECT_NE(files.at("confusion.svg").find("no confusion matrix"), std::string::npos);
}

}  // namespace
}  // namespace lattice::cli
