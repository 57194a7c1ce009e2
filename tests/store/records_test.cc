#include "store/records.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using nlohmann::json;

SweepRecord SampleSweep() {
  SweepRecord s;
  s.id = SweepId{7};
  s.name = "bolt-probe-grid";
  s.kind = JobKind::kTrain;
  s.spec = json{{"search", {{"method", "grid"}, {"parameters", {{"lr", {0.001, 0.0003}}}}}}};
  s.state = SweepState::kCancelled;
  s.metric = "val_accuracy";
  s.maximize = false;
  s.num_trials = 27;
  s.max_concurrent = 8;
  s.max_attempts = 3;
  s.created_ms = 1700000000123;
  s.finished_ms = 1700000999456;
  s.message = "cancelled by user";
  return s;
}

TrialRecord SampleTrial() {
  TrialRecord t;
  t.id = TrialId{SweepId{7}, 12};
  t.params = json{{"lr", 0.001}, {"dropout", 0.2}};
  t.config = json{{"train", {{"epochs", 500}}}, {"lr", 0.001}};
  t.state = TrialState::kFailed;
  t.attempts = 2;
  t.preemptions = 1;
  t.worker = WorkerRank{3};
  t.metrics = json{{"best_val_accuracy", 0.837}};
  t.objective = 0.837;
  t.epochs_done = 41;
  t.error = "worker w3 lost";
  t.started_ms = 1700000000500;
  t.finished_ms = 1700000100500;
  return t;
}

TEST(RecordsTest, StateNamesAreTheApiTextForms) {
  EXPECT_STREQ(SweepStateName(SweepState::kRunning), "running");
  EXPECT_STREQ(SweepStateName(SweepState::kCompleted), "completed");
  EXPECT_STREQ(SweepStateName(SweepState::kCancelled), "cancelled");
  EXPECT_STREQ(SweepStateName(SweepState::kFailed), "failed");
  EXPECT_STREQ(TrialStateName(TrialState::kQueued), "queued");
  EXPECT_STREQ(TrialStateName(TrialState::kRunning), "running");
  EXPECT_STREQ(TrialStateName(TrialState::kCompleted), "completed");
  EXPECT_STREQ(TrialStateName(TrialState::kFailed), "failed");
  EXPECT_STREQ(TrialStateName(TrialState::kCancelled), "cancelled");
}

TEST(RecordsTest, ParseStatesRoundTripAndRejectUnknown) {
  for (auto s : {SweepState::kRunning, SweepState::kCompleted, SweepState::kCancelled,
                 SweepState::kFailed}) {
    EXPECT_EQ(ParseSweepState(SweepStateName(s)), s);
  }
  for (auto s : {TrialState::kQueued, TrialState::kRunning, TrialState::kCompleted,
                 TrialState::kFailed, TrialState::kCancelled}) {
    EXPECT_EQ(ParseTrialState(TrialStateName(s)), s);
  }
  EXPECT_FALSE(ParseSweepState("queued"));  // not a sweep state
  EXPECT_FALSE(ParseSweepState("Running"));
  EXPECT_FALSE(ParseSweepState(""));
  EXPECT_FALSE(ParseTrialState("done"));
  EXPECT_TRUE(IsTerminal(TrialState::kCancelled));
  EXPECT_FALSE(IsTerminal(TrialState::kRunning));
}

TEST(RecordsTest, SweepJsonShapeAndRoundTrip) {
  SweepRecord s = SampleSweep();
  json j = s.ToJson();
  EXPECT_EQ(j["id"], "s7");
  EXPECT_EQ(j["name"], "bolt-probe-grid");
  EXPECT_EQ(j["state"], "cancelled");
  EXPECT_EQ(j["num_trials"], 27);
  EXPECT_EQ(j["maximize"], false);
  // Through text, as it is stored.
  ASSERT_OK_AND_ASSIGN(SweepRecord back, SweepRecord::FromJson(json::parse(j.dump())));
  EXPECT_EQ(back.id, s.id);
  EXPECT_EQ(back.name, s.name);
  EXPECT_EQ(back.kind, s.kind);
  EXPECT_EQ(back.spec, s.spec);
  EXPECT_EQ(back.state, s.state);
  EXPECT_EQ(back.metric, s.metric);
  EXPECT_EQ(back.maximize, s.maximize);
  EXPECT_EQ(back.num_trials, s.num_trials);
  EXPECT_EQ(back.max_concurrent, s.max_concurrent);
  EXPECT_EQ(back.max_attempts, s.max_attempts);
  EXPECT_EQ(back.created_ms, s.created_ms);
  EXPECT_EQ(back.finished_ms, s.finished_ms);
  EXPECT_EQ(back.message, s.message);
  EXPECT_EQ(back.ToJson(), j);
}

TEST(RecordsTest, TrialJsonShapeAndRoundTrip) {
  TrialRecord t = SampleTrial();
  json j = t.ToJson();
  EXPECT_EQ(j["id"], "s7-t12");
  EXPECT_EQ(j["sweep"], "s7");
  EXPECT_EQ(j["index"], 12);
  EXPECT_EQ(j["state"], "failed");
  EXPECT_DOUBLE_EQ(j["objective"].get<double>(), 0.837);
  ASSERT_OK_AND_ASSIGN(TrialRecord back, TrialRecord::FromJson(json::parse(j.dump())));
  EXPECT_EQ(back.id, t.id);
  EXPECT_EQ(back.params, t.params);
  EXPECT_EQ(back.config, t.config);
  EXPECT_EQ(back.state, t.state);
  EXPECT_EQ(back.attempts, t.attempts);
  EXPECT_EQ(back.preemptions, t.preemptions);
  EXPECT_EQ(back.worker.value, t.worker.value);
  EXPECT_EQ(back.metrics, t.metrics);
  ASSERT_TRUE(back.objective.has_value());
  EXPECT_DOUBLE_EQ(*back.objective, *t.objective);
  EXPECT_EQ(back.epochs_done, t.epochs_done);
  EXPECT_EQ(back.error, t.error);
  EXPECT_EQ(back.started_ms, t.started_ms);
  EXPECT_EQ(back.finished_ms, t.finished_ms);
  EXPECT_EQ(back.ToJson(), j);
  // The stored text is the same record.
  EXPECT_EQ(json::parse(t.Dump()), j);
  t.objective.reset();
  t.params = json::object();
  EXPECT_EQ(json::parse(t.Dump()), t.ToJson());
}

TEST(RecordsTest, TrialWithoutObjectiveIsNull) {
  TrialRecord t;
  t.id = TrialId{SweepId{1}, 0};
  json j = t.ToJson();
  EXPECT_TRUE(j["objective"].is_null());
  EXPECT_EQ(j["state"], "queued");
  EXPECT_EQ(j["worker"], -1);
  ASSERT_OK_AND_ASSIGN(TrialRecord back, TrialRecord::FromJson(j));
  EXPECT_FALSE(back.objective.has_value());
  EXPECT_EQ(back.worker.value, -1);
}

TEST(RecordsTest, TrialStoredBeforePreemptionsWereCountedReadsZero) {
  TrialRecord t = SampleTrial();
  json j = t.ToJson();
  EXPECT_EQ(j["preemptions"], 1);
  j.erase("preemptions");
  ASSERT_OK_AND_ASSIGN(TrialRecord back, TrialRecord::FromJson(j));
  EXPECT_EQ(back.preemptions, 0);
  EXPECT_EQ(back.attempts, 2);
}

TEST(RecordsTest, EpochMetricsRoundTripKeepsNonFiniteAsNan) {
  EpochMetrics m;
  m.trial = TrialId{SweepId{3}, 10};
  m.attempt = 1;
  m.epoch = 42;
  m.values = {{"train_loss", 0.25},
              {"val_accuracy", 0.9},
              {"val_loss", std::numeric_limits<double>::quiet_NaN()}};
  json j = m.ToJson();
  EXPECT_EQ(j["trial"], "s3-t10");
  EXPECT_TRUE(j["values"]["val_loss"].is_null());
  ASSERT_OK_AND_ASSIGN(EpochMetrics back, EpochMetrics::FromJson(json::parse(j.dump())));
  EXPECT_EQ(back.trial, m.trial);
  EXPECT_EQ(back.attempt, 1);
  EXPECT_EQ(back.epoch, 42);
  ASSERT_EQ(back.values.size(), 3u);
  EXPECT_DOUBLE_EQ(back.values["train_loss"], 0.25);
  EXPECT_DOUBLE_EQ(back.values["val_accuracy"], 0.9);
  EXPECT_TRUE(std::isnan(back.values["val_loss"]));
}

void ExpectInvalid(const StatusOr<TrialRecord>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "accepted input that should fail with: " << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

TEST(RecordsTest, MalformedTrialJsonIsInvalidArgumentNamingTheField) {
  json good = SampleTrial().ToJson();
  ExpectInvalid(TrialRecord::FromJson(json::array()), "object");
  ExpectInvalid(TrialRecord::FromJson(json("s7-t12")), "object");
  json j = good;
  j.erase("id");
  ExpectInvalid(TrialRecord::FromJson(j), "id");
  j = good;
  j["id"] = "t12";
  ExpectInvalid(TrialRecord::FromJson(j), "id");
  j = good;
  j["id"] = 12;
  ExpectInvalid(TrialRecord::FromJson(j), "id");
  j = good;
  j["state"] = "exploded";
  ExpectInvalid(TrialRecord::FromJson(j), "state");
  j = good;
  j["attempts"] = "two";
  ExpectInvalid(TrialRecord::FromJson(j), "attempts");
  j = good;
  j["attempts"] = 1.5;
  ExpectInvalid(TrialRecord::FromJson(j), "attempts");
  j = good;
  j["worker"] = int64_t{1} << 40;  // does not fit an int
  ExpectInvalid(TrialRecord::FromJson(j), "worker");
  j = good;
  j["started_ms"] = std::numeric_limits<uint64_t>::max();
  ExpectInvalid(TrialRecord::FromJson(j), "started_ms");
  j = good;
  j["objective"] = "high";
  ExpectInvalid(TrialRecord::FromJson(j), "objective");
  j = good;
  j["index"] = 13;  // disagrees with id s7-t12
  ExpectInvalid(TrialRecord::FromJson(j), "disagree");
  j = good;
  j["error"] = json::object();
  ExpectInvalid(TrialRecord::FromJson(j), "error");
}

TEST(RecordsTest, MalformedSweepAndMetricsJsonIsInvalidArgument) {
  json sweep = SampleSweep().ToJson();
  sweep["num_trials"] = -1;  // uint32
  auto s1 = SweepRecord::FromJson(sweep);
  ASSERT_FALSE(s1.ok());
  EXPECT_EQ(s1.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s1.status().message().find("num_trials"), std::string::npos);
  sweep = SampleSweep().ToJson();
  sweep["state"] = "queued";
  EXPECT_EQ(SweepRecord::FromJson(sweep).status().code(), StatusCode::kInvalidArgument);
  sweep = SampleSweep().ToJson();
  sweep["maximize"] = "yes";
  EXPECT_EQ(SweepRecord::FromJson(sweep).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SweepRecord::FromJson(json(nullptr)).status().code(), StatusCode::kInvalidArgument);

  json m = json{{"trial", "s1-t1"}, {"attempt", 0}, {"epoch", 1}, {"values", {{"loss", "x"}}}};
  auto m1 = EpochMetrics::FromJson(m);
  ASSERT_FALSE(m1.ok());
  EXPECT_NE(m1.status().message().find("values.loss"), std::string::npos);
  m["values"] = json::array({1.0});
  EXPECT_EQ(EpochMetrics::FromJson(m).status().code(), StatusCode::kInvalidArgument);
  m = json{{"attempt", 0}, {"epoch", 1}};
  EXPECT_EQ(EpochMetrics::FromJson(m).status().code(), StatusCode::kInvalidArgument);
}

TEST(RecordsTest, NowMillisIsUnixEpochMilliseconds) {
  int64_t a = NowMillis();
  EXPECT_GT(a, int64_t{1577836800000});  // after 2020-01-01
  EXPECT_LT(a, int64_t{4102444800000});  // before 2100-01-01
  EXPECT_GE(NowMillis(), a);
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TrialRecord Done(uint32_t index, std::optional<double> objective,
                 TrialState state = TrialState::kCompleted) {
  TrialRecord t;
  t.id = TrialId{SweepId{4}, index};
  t.state = state;
  t.objective = objective;
  t.params = json{{"i", index}};
  return t;
}

TEST(SweepCountsTest, MovesCountAndTheBestFollowsTheGoalWithTiesToTheLowerIndex) {
  SweepCounts c;
  c.sweep = SweepId{4};
  for (int i = 0; i < 4; ++i) c.Move(std::nullopt, TrialState::kQueued);
  c.Move(TrialState::kQueued, TrialState::kRunning);
  c.Move(TrialState::kRunning, TrialState::kCompleted);
  EXPECT_EQ(c.count(TrialState::kQueued), 3u);
  EXPECT_EQ(c.count(TrialState::kCompleted), 1u);
  EXPECT_EQ(c.unfinished(), 3u);

  EXPECT_TRUE(c.Consider(Done(5, 0.5), /*maximize=*/true));
  EXPECT_FALSE(c.Consider(Done(6, 0.4), true));
  EXPECT_FALSE(c.Consider(Done(7, 0.5), true)) << "a tie keeps the lower index";
  EXPECT_TRUE(c.Consider(Done(2, 0.5), true));
  EXPECT_FALSE(c.Consider(Done(1, 0.9, TrialState::kRunning), true)) << "not completed";
  EXPECT_FALSE(c.Consider(Done(1, std::numeric_limits<double>::infinity()), true));
  EXPECT_FALSE(c.Consider(Done(1, std::nullopt), true));
  EXPECT_EQ(c.best, (TrialId{SweepId{4}, 2}));
  EXPECT_EQ(c.best_params, json({{"i", 2}}));
  EXPECT_TRUE(c.Consider(Done(9, 0.1), /*maximize=*/false));

  // FromTrials agrees with BestTrial's rule whatever the order.
  std::vector<TrialRecord> trials = {Done(3, 0.7), Done(1, 0.7), Done(0, 0.2, TrialState::kFailed),
                                     Done(2, 0.6)};
  SweepCounts from = SweepCounts::FromTrials(SweepId{4}, trials, true);
  EXPECT_EQ(from.best, (TrialId{SweepId{4}, 1}));
  EXPECT_EQ(from.count(TrialState::kCompleted), 3u);
  EXPECT_EQ(from.count(TrialState::kFailed), 1u);
}

TEST(SweepCountsTest, JsonRoundTripAndBadInput) {
  SweepCounts c = SweepCounts::FromTrials(SweepId{4}, {Done(3, 0.25), Done(1, std::nullopt)}, true);
  ASSERT_OK_AND_ASSIGN(SweepCounts back, SweepCounts::FromJson(c.ToJson()));
  EXPECT_EQ(back, c);
  EXPECT_EQ(c.ToJson()["completed"], 2);
  EXPECT_EQ(c.ToJson()["best"]["trial"], "s4-t3");
  SweepCounts none = SweepCounts::FromTrials(SweepId{4}, {}, true);
  ASSERT_OK_AND_ASSIGN(back, SweepCounts::FromJson(none.ToJson()));
  EXPECT_FALSE(back.best);
  EXPECT_EQ(SweepCounts::FromJson(json{{"sweep", "s4"}, {"queued", -1}}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SweepCounts::FromJson(json{{"queued", 1}}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SweepCounts::FromJson(json{{"sweep", "s4"}, {"best", {{"trial", "s4-t1"}}}})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lattice
