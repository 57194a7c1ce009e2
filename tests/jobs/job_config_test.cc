#include "jobs/job_config.h"

#include <gtest/gtest.h>

#include "jobs/train_config.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

json DigitsConfig() {
  return {{"kind", "train"},
          {"seed", 42},
          {"dataset",
           {{"format", "csv"}, {"path", testing::kDigitsCsv}, {"standardize", true},
            {"split", {{"validation_fraction", 0.2}, {"seed", 42}}}}},
          {"model", {{"type", "mlp"}, {"hidden", 256}, {"batchnorm", true}, {"dropout", 0.2}}},
          {"train", {{"epochs", 30}, {"batch_size", 32}, {"lr", 1e-3}, {"optimizer", "adamw"}}}};
}

// Expects InvalidArgument whose message contains every string in `parts`.
void ExpectInvalid(const json& config, const std::vector<std::string>& parts) {
  Status s = ValidateJobConfig(config);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  for (const auto& p : parts) {
    EXPECT_NE(s.message().find(p), std::string::npos) << "\"" << s.message() << "\" lacks \"" << p << "\"";
  }
}

TEST(JobConfigTest, AcceptsDigitsConfig) { EXPECT_OK(ValidateJobConfig(DigitsConfig())); }

TEST(JobConfigTest, ParsesDefaults) {
  json c = {{"kind", "train"}, {"dataset", {{"features", "f.npy"}, {"labels", "l.npy"}}}};
  ASSERT_OK_AND_ASSIGN(JobConfig p, ParseJobConfig(c));
  EXPECT_EQ(p.seed, 0u);
  EXPECT_EQ(p.dataset.format, DatasetFormat::kNpy);
  EXPECT_DOUBLE_EQ(p.dataset.validation_fraction, 0.2);
  EXPECT_EQ(p.dataset.split_seed, 42u);
  EXPECT_EQ(p.model.type, ModelType::kMlp);
  EXPECT_EQ(p.model.hidden, std::vector<int64_t>({256}));
  EXPECT_EQ(p.train.epochs, 10);
  EXPECT_EQ(p.train.batch_size, 32);
  EXPECT_DOUBLE_EQ(p.train.lr, 1e-3);
  EXPECT_EQ(p.train.optimizer, OptimizerType::kAdamW);
  EXPECT_FALSE(p.train.threads.has_value());
  EXPECT_FALSE(p.train.early_stopping.has_value());
}

TEST(JobConfigTest, ParsesEveryField) {
  json c = DigitsConfig();
  c["model"]["hidden"] = {128, 64};
  c["model"]["activation"] = "gelu";
  c["train"]["early_stopping"] = {{"patience", 5}, {"metric", "val_accuracy"}, {"min_delta", 0.01}};
  c["train"]["class_weights"] = "inverse_frequency";
  c["train"]["threads"] = 2;
  c["train"]["epochs"] = 3.0;  // an integral float is an integer
  ASSERT_OK_AND_ASSIGN(JobConfig p, ParseJobConfig(c));
  EXPECT_EQ(p.model.hidden, std::vector<int64_t>({128, 64}));
  EXPECT_EQ(p.model.activation, Activation::kGelu);
  ASSERT_TRUE(p.train.early_stopping.has_value());
  EXPECT_EQ(p.train.early_stopping->patience, 5);
  EXPECT_EQ(p.train.early_stopping->metric, EarlyStoppingMetric::kValAccuracy);
  EXPECT_TRUE(p.train.class_weights.inverse_frequency);
  EXPECT_EQ(p.train.threads, 2);
  EXPECT_EQ(p.train.epochs, 3);
}

TEST(JobConfigTest, RejectsUnknownKeysNamingThePath) {
  json c = DigitsConfig();
  c["train"]["mixupp"] = 0.3;
  ExpectInvalid(c, {"train.mixupp", "unknown key"});
  c = DigitsConfig();
  c["bogus"] = 1;
  ExpectInvalid(c, {"bogus", "unknown key"});
  c = DigitsConfig();
  c["dataset"]["split"]["fraction"] = 0.1;
  ExpectInvalid(c, {"dataset.split.fraction"});
  c = DigitsConfig();
  c["dataset"]["features"] = "x.npy";  // not a key of the csv format
  ExpectInvalid(c, {"dataset.features", "unknown key"});
}

TEST(JobConfigTest, RejectsWrongTypes) {
  json c = DigitsConfig();
  c["train"]["epochs"] = "ten";
  ExpectInvalid(c, {"train.epochs", "expected an integer"});
  c = DigitsConfig();
  c["train"]["lr"] = "fast";
  ExpectInvalid(c, {"train.lr", "expected a number"});
  c = DigitsConfig();
  c["model"]["batchnorm"] = 1;
  ExpectInvalid(c, {"model.batchnorm", "expected a boolean"});
  c = DigitsConfig();
  c["model"]["hidden"] = {64, "x"};
  ExpectInvalid(c, {"model.hidden[1]"});
  c = DigitsConfig();
  c["train"] = 5;
  ExpectInvalid(c, {"train", "expected an object"});
}

TEST(JobConfigTest, RejectsBadRanges) {
  struct Case {
    const char* section;
    const char* key;
    json value;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"train", "lr", -1, "train.lr: must be > 0, got -1"},
      {"train", "epochs", 0, "train.epochs: must be >= 1, got 0"},
      {"train", "batch_size", 0, "train.batch_size"},
      {"train", "weight_decay", -0.1, "train.weight_decay"},
      {"train", "momentum", 1.0, "train.momentum"},
      {"train", "label_smoothing", 1.0, "train.label_smoothing"},
      {"train", "optimizer", "lion", "train.optimizer: must be one of adamw|adam|sgd"},
      {"train", "class_weights", "balanced", "train.class_weights"},
      {"train", "threads", 0, "train.threads"},
      {"model", "dropout", 1.5, "model.dropout: must be in [0, 1), got 1.5"},
      {"model", "type", "cnn", "model.type"},
      {"model", "activation", "swish", "model.activation"},
      {"model", "hidden", 0, "model.hidden"},
  };
  for (const auto& c : cases) {
    json config = DigitsConfig();
    config[c.section][c.key] = c.value;
    ExpectInvalid(config, {c.expect});
  }
  json c = DigitsConfig();
  c["dataset"]["split"]["validation_fraction"] = 1.0;
  ExpectInvalid(c, {"dataset.split.validation_fraction"});
  c = DigitsConfig();
  c["train"]["early_stopping"] = {{"metric", "val_loss"}};
  ExpectInvalid(c, {"train.early_stopping.patience", "required"});
  c = DigitsConfig();
  c["dataset"]["limit"] = 0;
  ExpectInvalid(c, {"dataset.limit"});
}

TEST(JobConfigTest, ParsesSchedulesAndClipping) {
  json c = DigitsConfig();
  ASSERT_OK_AND_ASSIGN(JobConfig none, ParseJobConfig(c));
  EXPECT_FALSE(none.train.schedule.has_value());
  EXPECT_FALSE(none.train.clip_grad_norm.has_value());

  c["train"]["clip_grad_norm"] = 2.5;
  c["train"]["schedule"] = {{"type", "step"}, {"step_size", 3}, {"warmup_steps", 100}};
  ASSERT_OK_AND_ASSIGN(JobConfig step, ParseJobConfig(c));
  EXPECT_EQ(step.train.clip_grad_norm, 2.5);
  ASSERT_TRUE(step.train.schedule.has_value());
  EXPECT_EQ(step.train.schedule->type, LrScheduleType::kStep);
  EXPECT_EQ(step.train.schedule->step_size, 3);
  EXPECT_DOUBLE_EQ(step.train.schedule->gamma, 0.1);  // default
  EXPECT_EQ(step.train.schedule->warmup_steps, 100);

  c["train"]["schedule"] = {{"type", "cosine"}, {"min_lr", 1e-5}};
  ASSERT_OK_AND_ASSIGN(JobConfig cosine, ParseJobConfig(c));
  EXPECT_EQ(cosine.train.schedule->type, LrScheduleType::kCosine);
  EXPECT_DOUBLE_EQ(cosine.train.schedule->min_lr, 1e-5);
  EXPECT_EQ(cosine.train.schedule->warmup_steps, 0);

  c["train"]["schedule"] = {{"type", "plateau"}, {"patience", 0}, {"factor", 0.3}};
  ASSERT_OK_AND_ASSIGN(JobConfig plateau, ParseJobConfig(c));
  EXPECT_EQ(plateau.train.schedule->type, LrScheduleType::kPlateau);
  EXPECT_EQ(plateau.train.schedule->patience, 0);
  EXPECT_DOUBLE_EQ(plateau.train.schedule->factor, 0.3);
  EXPECT_DOUBLE_EQ(plateau.train.schedule->min_lr, 0.0);
  EXPECT_OK(ValidateJobConfig(c));
}

TEST(JobConfigTest, RejectsBadSchedulesNamingTheKey) {
  struct Case {
    json schedule;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {{{"type", "cosine"}, {"decay", 1}}, "train.schedule.decay: unknown key"},
      {{{"type", "cosine"}, {"gamma", 0.5}},
       "train.schedule.gamma: not a key of schedule type cosine"},
      {{{"type", "step"}, {"step_size", 1}, {"min_lr", 0.0}},
       "train.schedule.min_lr: not a key of schedule type step"},
      {{{"type", "plateau"}, {"step_size", 2}}, "train.schedule.step_size: not a key"},
      {{{"warmup_steps", 10}}, "train.schedule.type: required"},
      {{{"type", "linear"}}, "train.schedule.type: must be one of step|cosine|plateau"},
      {{{"type", "step"}}, "train.schedule.step_size: required"},
      {{{"type", "step"}, {"step_size", 0}}, "train.schedule.step_size: must be >= 1, got 0"},
      {{{"type", "step"}, {"step_size", 1}, {"gamma", -1}},
       "train.schedule.gamma: must be in (0, 1], got -1"},
      {{{"type", "step"}, {"step_size", 1}, {"gamma", 1.5}}, "train.schedule.gamma"},
      {{{"type", "step"}, {"step_size", 1.5}}, "train.schedule.step_size: expected an integer"},
      {{{"type", "cosine"}, {"warmup_steps", -1}},
       "train.schedule.warmup_steps: must be >= 0, got -1"},
      {{{"type", "cosine"}, {"min_lr", -0.1}}, "train.schedule.min_lr: must be >= 0"},
      {{{"type", "cosine"}, {"min_lr", 0.01}},
       "train.schedule.min_lr: must be <= train.lr (0.001), got 0.01"},
      {{{"type", "plateau"}, {"factor", 1.0}}, "train.schedule.factor: must be in (0, 1)"},
      {{{"type", "plateau"}, {"patience", -1}}, "train.schedule.patience: must be >= 0"},
      {"cosine", "train.schedule: expected an object"},
  };
  for (const Case& c : cases) {
    json config = DigitsConfig();
    config["train"]["schedule"] = c.schedule;
    ExpectInvalid(config, {c.expect});
  }
  json c = DigitsConfig();
  c["train"]["clip_grad_norm"] = 0;
  ExpectInvalid(c, {"train.clip_grad_norm: must be > 0, got 0"});
  c["train"]["clip_grad_norm"] = "big";
  ExpectInvalid(c, {"train.clip_grad_norm: expected a number"});
}

TEST(JobConfigTest, RejectsMissingFiles) {
  json c = {{"kind", "train"},
            {"dataset", {{"features", "/nonexistent/x.npy"}, {"labels", "/nonexistent/y.npy"}}}};
  ExpectInvalid(c, {"dataset.features: file not found: /nonexistent/x.npy"});
  c = DigitsConfig();
  c["dataset"].erase("split");
  c["dataset"]["validation"] = {{"path", "/nonexistent/val.csv"}};
  ExpectInvalid(c, {"dataset.validation.path: file not found: /nonexistent/val.csv"});
  c = {{"kind", "train"}, {"dataset", {{"format", "idx"}, {"images", "/nonexistent/i"}}}};
  ExpectInvalid(c, {"dataset.labels", "required"});
  ExpectInvalid({{"kind", "train"}}, {"dataset", "required"});
}

TEST(JobConfigTest, RejectsSplitTogetherWithValidation) {
  json c = DigitsConfig();
  c["dataset"]["validation"] = {{"path", testing::kDigitsCsv}};
  ExpectInvalid(c, {"dataset.validation", "either split or validation"});
}

TEST(JobConfigTest, NoopKind) {
  EXPECT_OK(ValidateJobConfig({{"kind", "noop"}}));
  EXPECT_OK(ValidateJobConfig({{"kind", "noop"}, {"seed", 3}, {"sleep_ms", 10}}));
  ExpectInvalid({{"kind", "noop"}, {"sleep_ms", -1}}, {"sleep_ms"});
  ExpectInvalid({{"kind", "noop"}, {"dataset", json::object()}}, {"dataset", "unknown key"});
  ExpectInvalid({{"kind", "embed"}}, {"encoder", "required"});
  ExpectInvalid({{"kind", "pretrain"}}, {"kind", "unknown job kind"});
  ExpectInvalid({{"seed", 1}}, {"kind", "required"});
  ExpectInvalid(json::array(), {"expected an object"});
  EXPECT_EQ(ParseJobKind("train"), JobKind::kTrain);
  EXPECT_EQ(ParseJobKind("noop"), JobKind::kNoop);
  EXPECT_EQ(ParseJobKind("embed"), JobKind::kEmbed);
  EXPECT_EQ(ParseJobKind("distill"), JobKind::kDistill);
  EXPECT_EQ(ParseJobKind("pretrain"), std::nullopt);
  for (JobKind k : {JobKind::kTrain, JobKind::kEmbed, JobKind::kNoop, JobKind::kDistill}) {
    EXPECT_EQ(ParseJobKind(JobKindName(k)), k);
  }
}

TEST(JobConfigTest, ResolveParameterPath) {
  EXPECT_EQ(ResolveParameterPath("lr"), "train.lr");
  EXPECT_EQ(ResolveParameterPath("weight_decay"), "train.weight_decay");
  EXPECT_EQ(ResolveParameterPath("optimizer"), "train.optimizer");
  EXPECT_EQ(ResolveParameterPath("dropout"), "model.dropout");
  EXPECT_EQ(ResolveParameterPath("hidden"), "model.hidden");
  EXPECT_EQ(ResolveParameterPath("batchnorm"), "model.batchnorm");
  EXPECT_EQ(ResolveParameterPath("model"), "model.type");
  EXPECT_EQ(ResolveParameterPath("dataset.split.seed"), "dataset.split.seed");
  EXPECT_EQ(ResolveParameterPath("train.schedule.type"), "train.schedule.type");
  EXPECT_EQ(ResolveParameterPath("train.clip_grad_norm"), "train.clip_grad_norm");
  EXPECT_EQ(ResolveParameterPath("nonsense"), std::nullopt);
}

}  // namespace
}  // namespace lattice::jobs
