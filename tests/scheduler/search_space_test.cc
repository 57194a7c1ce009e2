#include "scheduler/search_space.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "tests/testutil/testutil.h"

namespace lattice::scheduler {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

class SearchSpaceTest : public ::testing::Test {
 protected:
  static SearchSpace Space(const std::string& parameters_json, const std::string& method) {
    StatusOr<SearchSpace> s = ParseSearchSpace(ordered_json::parse(parameters_json), method);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : SearchSpace{};
  }
  static std::vector<json> Random(const SearchSpace& space, uint64_t seed, int64_t n) {
    StatusOr<std::vector<json>> points = RandomSearcher(space, seed, n).Expand();
    EXPECT_TRUE(points.ok()) << points.status().ToString();
    return points.ok() ? *points : std::vector<json>{};
  }
};

TEST_F(SearchSpaceTest, ParseKeepsSpecOrderAndResolvesPaths) {
  SearchSpace s = Space(R"({"wd_path.x": [1], "lr": [0.1, 0.2], "model": ["mlp"]})", "grid");
  ASSERT_EQ(s.parameters.size(), 3u);
  EXPECT_EQ(s.parameters[0].name, "wd_path.x");
  EXPECT_EQ(s.parameters[0].path, "wd_path.x");
  EXPECT_EQ(s.parameters[1].name, "lr");
  EXPECT_EQ(s.parameters[1].path, "train.lr");
  EXPECT_EQ(s.parameters[1].values, (std::vector<json>{0.1, 0.2}));
  EXPECT_EQ(s.parameters[2].path, "model.type");
  EXPECT_EQ(GridSize(s), 2u);
}

TEST_F(SearchSpaceTest, ParseRange) {
  SearchSpace s = Space(R"({"lr": {"min": 1e-4, "max": 0.1, "log": true},
                            "epochs": {"min": 1, "max": 9, "type": "int"}})",
                        "random");
  ASSERT_EQ(s.parameters.size(), 2u);
  const ParameterDomain& lr = s.parameters[0];
  EXPECT_EQ(lr.kind, ParameterDomain::Kind::kRange);
  EXPECT_DOUBLE_EQ(lr.min, 1e-4);
  EXPECT_DOUBLE_EQ(lr.max, 0.1);
  EXPECT_TRUE(lr.log);
  EXPECT_FALSE(lr.is_int);
  EXPECT_TRUE(s.parameters[1].is_int);
  EXPECT_FALSE(s.parameters[1].log);
}

TEST_F(SearchSpaceTest, ParseErrorsNameTheKey) {
  struct Case {
    const char* params;
    const char* method;
    const char* needle;
  };
  const Case cases[] = {
      {R"({"lr": []})", "grid", "search.parameters.lr: grid values must be a non-empty list"},
      {R"({"lr": {"min": 0, "max": 1}})", "grid", "search.parameters.lr: grid values"},
      {R"({"lr": {"min": 2, "max": 1}})", "random", "search.parameters.lr: min must be < max"},
      {R"({"lr": {"min": 0, "max": 1, "log": true}})", "random", "log: true needs min > 0"},
      {R"({"nope": [1]})", "grid", "search.parameters.nope: unknown parameter"},
      {R"({"lr": [1], "train.lr": [2]})", "grid", "overlaps parameter lr"},
      {R"({})", "grid", "search.parameters: must not be empty"},
      {R"([1])", "grid", "search.parameters: must be a mapping"},
      {R"({"lr": [1]})", "asha", "search.method: must be grid or random"},
      {R"({"epochs": {"min": 1, "max": 9007199254740993, "type": "int"}})", "random",
       "search.parameters.epochs: type int needs |min|, |max| < 2^53"},
  };
  for (const Case& c : cases) {
    StatusOr<SearchSpace> s = ParseSearchSpace(ordered_json::parse(c.params), c.method);
    ASSERT_FALSE(s.ok()) << c.params;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.needle), std::string::npos)
        << s.status().message() << " vs " << c.needle;
  }
}

TEST_F(SearchSpaceTest, GridIsCartesianProductLastParameterFastest) {
  SearchSpace s = Space(R"({"lr": [1e-3, 7e-4, 3e-4], "weight_decay": [1e-4, 1e-3, 1e-2],
                            "dropout": [0.1, 0.2, 0.3]})",
                        "grid");
  ASSERT_OK_AND_ASSIGN(std::vector<json> points, GridSearcher(s).Expand());
  ASSERT_EQ(points.size(), 27u);
  EXPECT_EQ(points[0], (json{{"lr", 1e-3}, {"weight_decay", 1e-4}, {"dropout", 0.1}}));
  EXPECT_EQ(points[1], (json{{"lr", 1e-3}, {"weight_decay", 1e-4}, {"dropout", 0.2}}));
  EXPECT_EQ(points[2], (json{{"lr", 1e-3}, {"weight_decay", 1e-4}, {"dropout", 0.3}}));
  EXPECT_EQ(points[3], (json{{"lr", 1e-3}, {"weight_decay", 1e-3}, {"dropout", 0.1}}));
  EXPECT_EQ(points[26], (json{{"lr", 3e-4}, {"weight_decay", 1e-2}, {"dropout", 0.3}}));
  std::set<std::string> distinct;
  for (const json& p : points) distinct.insert(p.dump());
  EXPECT_EQ(distinct.size(), 27u);
}

TEST_F(SearchSpaceTest, GridOfOneParameterAndStructuredValues) {
  SearchSpace s = Space(R"({"hidden": [[128], [256, 128]]})", "grid");
  ASSERT_OK_AND_ASSIGN(std::vector<json> points, GridSearcher(s).Expand());
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[1], (json{{"hidden", {256, 128}}}));
}

TEST_F(SearchSpaceTest, GridRejectsTooManyPointsAndRanges) {
  SearchSpace s;
  for (int i = 0; i < 5; ++i) {
    ParameterDomain d;
    d.name = d.path = "train.p" + std::to_string(i);
    d.values.assign(11, json(1));
    s.parameters.push_back(d);
  }
  EXPECT_EQ(GridSize(s), 161051u);
  StatusOr<std::vector<json>> big = GridSearcher(s).Expand();
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("grid has 161051 points"), std::string::npos);

  s.parameters.resize(1);
  s.parameters[0].kind = ParameterDomain::Kind::kRange;
  EXPECT_FALSE(GridSearcher(s).Expand().ok());
}

TEST_F(SearchSpaceTest, RandomIsDeterministicPerSeed) {
  SearchSpace s = Space(R"({"lr": {"min": 1e-5, "max": 0.1, "log": true},
                            "dropout": {"min": 0.0, "max": 0.5},
                            "optimizer": ["adamw", "adam", "sgd"]})",
                        "random");
  const std::vector<json> a = Random(s, 7, 50);
  const std::vector<json> b = Random(s, 7, 50);
  const std::vector<json> c = Random(s, 8, 50);
  ASSERT_EQ(a.size(), 50u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // A longer expansion starts with the same points.
  const std::vector<json> longer = Random(s, 7, 60);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), longer.begin()));
}

TEST_F(SearchSpaceTest, RandomLogUniformStaysInRangeAndSpreadsOverDecades) {
  SearchSpace s = Space(R"({"lr": {"min": 1e-5, "max": 0.1, "log": true}})", "random");
  const std::vector<json> points = Random(s, 123, 4000);
  int below_1e3 = 0;
  for (const json& p : points) {
    ASSERT_TRUE(p["lr"].is_number_float());
    const double v = p["lr"].get<double>();
    EXPECT_GE(v, 1e-5);
    EXPECT_LE(v, 0.1);
    below_1e3 += v < 1e-3 ? 1 : 0;
  }
  // Half of the log range lies below 1e-3; a linear draw would put ~1 % there.
  EXPECT_NEAR(below_1e3 / 4000.0, 0.5, 0.05);
}

TEST_F(SearchSpaceTest, RandomUniformFloatRange) {
  SearchSpace s = Space(R"({"dropout": {"min": 0.1, "max": 0.3}})", "random");
  double sum = 0;
  for (const json& p : Random(s, 1, 2000)) {
    const double v = p["dropout"].get<double>();
    EXPECT_GE(v, 0.1);
    EXPECT_LE(v, 0.3);
    sum += v;
  }
  EXPECT_NEAR(sum / 2000, 0.2, 0.01);
}

TEST_F(SearchSpaceTest, RandomIntRangesCoverEveryValue) {
  SearchSpace s = Space(R"({"epochs": {"min": 2, "max": 6, "type": "int"},
                            "batch_size": {"min": 8, "max": 512, "type": "int", "log": true}})",
                        "random");
  std::set<int64_t> epochs;
  int small_batches = 0;
  for (const json& p : Random(s, 99, 2000)) {
    ASSERT_TRUE(p["epochs"].is_number_integer());
    ASSERT_TRUE(p["batch_size"].is_number_integer());
    epochs.insert(p["epochs"].get<int64_t>());
    const int64_t b = p["batch_size"].get<int64_t>();
    EXPECT_GE(b, 8);
    EXPECT_LE(b, 512);
    small_batches += b < 64 ? 1 : 0;
  }
  EXPECT_EQ(epochs, (std::set<int64_t>{2, 3, 4, 5, 6}));
  EXPECT_NEAR(small_batches / 2000.0, 0.5, 0.06);  // log scale: 8..64 is half of 8..512
}

TEST_F(SearchSpaceTest, RandomListsChooseUniformlyAndKeepTypes) {
  SearchSpace s = Space(R"({"hidden": [[64], [128, 64], 32]})", "random");
  std::map<std::string, int> counts;
  for (const json& p : Random(s, 5, 3000)) counts[p["hidden"].dump()]++;
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [value, n] : counts) EXPECT_NEAR(n / 3000.0, 1.0 / 3, 0.04) << value;
  EXPECT_EQ(counts.count("[128,64]"), 1u);
}

TEST_F(SearchSpaceTest, RandomHugeFloatRangeStaysFinite) {
  SearchSpace s = Space(R"({"train.x": {"min": -1e308, "max": 1e308}})", "random");
  for (const json& p : Random(s, 2, 200)) {
    ASSERT_TRUE(std::isfinite(p["train.x"].get<double>())) << p.dump();
  }
}

TEST_F(SearchSpaceTest, RandomRejectsBadTrialCounts) {
  SearchSpace s = Space(R"({"lr": [0.1]})", "random");
  EXPECT_FALSE(RandomSearcher(s, 0, 0).Expand().ok());
  EXPECT_FALSE(RandomSearcher(s, 0, 100001).Expand().ok());
  EXPECT_TRUE(RandomSearcher(s, 0, 100000).Expand().ok());
}

TEST_F(SearchSpaceTest, MakeSearcherPicksByMethod) {
  SearchSpace s = Space(R"({"lr": [0.1, 0.2]})", "grid");
  ASSERT_OK_AND_ASSIGN(auto grid, MakeSearcher("grid", s, 0, 0));
  ASSERT_OK_AND_ASSIGN(std::vector<json> g, grid->Expand());
  EXPECT_EQ(g.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto random, MakeSearcher("random", s, 3, 5));
  ASSERT_OK_AND_ASSIGN(std::vector<json> r, random->Expand());
  EXPECT_EQ(r.size(), 5u);
  StatusOr<std::unique_ptr<Searcher>> bad = MakeSearcher("asha", s, 0, 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("search.method"), std::string::npos);
}

}  // namespace
}  // namespace lattice::scheduler
