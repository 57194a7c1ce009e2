#include "scheduler/sweep_spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "scheduler/internal/spec_document.h"
#include "scheduler/search_space.h"
#include "tests/testutil/testutil.h"

namespace lattice::scheduler {
namespace {

using nlohmann::json;

const char kDigits[] = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// A valid train spec with `search` (indented YAML block) appended.
std::string TrainSpec(const std::string& search, const std::string& extra = "") {
  return std::string(
             "name: digits-probe-grid\n"
             "kind: train\n"
             "seed: 42\n"
             "dataset: {format: csv, path: ") +
         kDigits +
         "}\n"
         "model: {type: mlp, hidden: 32}\n"
         "train: {epochs: 2, batch_size: 64}\n" +
         extra + search;
}

const char kGrid27[] =
    "search:\n"
    "  method: grid\n"
    "  metric: {name: val_accuracy, goal: maximize}\n"
    "  parameters:\n"
    "    lr: [1.0e-3, 7.0e-4, 3.0e-4]\n"
    "    weight_decay: [1.0e-4, 1.0e-3, 1.0e-2]\n"
    "    dropout: [0.1, 0.2, 0.3]\n";

class SweepSpecTest : public ::testing::Test {
 protected:
  // Parses `text`, expects InvalidArgument, and that the message contains `needle`.
  static void ExpectInvalid(const std::string& text, const std::string& needle) {
    StatusOr<SweepSpec> spec = ParseSweepSpec(text);
    ASSERT_FALSE(spec.ok()) << "accepted:\n" << text;
    EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument) << spec.status().ToString();
    EXPECT_NE(spec.status().message().find(needle), std::string::npos)
        << "message: " << spec.status().message() << "\nexpected to contain: " << needle;
  }
  static std::string Grid(const std::string& parameters, const std::string& more = "") {
    return TrainSpec("search:\n  method: grid\n" + more + "  parameters:\n" + parameters);
  }
  static std::string Random(const std::string& parameters, const std::string& more) {
    return TrainSpec("search:\n  method: random\n" + more + "  parameters:\n" + parameters);
  }
};

TEST_F(SweepSpecTest, GridExpandsInSpecOrderLastParameterFastest) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(TrainSpec(kGrid27)));
  EXPECT_EQ(spec.name, "digits-probe-grid");
  EXPECT_EQ(spec.kind, JobKind::kTrain);
  EXPECT_EQ(spec.method, "grid");
  EXPECT_EQ(spec.metric, "val_accuracy");
  EXPECT_TRUE(spec.maximize);
  EXPECT_EQ(spec.max_concurrent, 0);
  EXPECT_EQ(spec.max_attempts, 3);
  EXPECT_EQ(spec.parameter_names, (std::vector<std::string>{"lr", "weight_decay", "dropout"}));
  ASSERT_EQ(spec.points.size(), 27u);
  ASSERT_EQ(spec.trial_configs.size(), 27u);
  EXPECT_EQ(spec.points[0], (json{{"lr", 1e-3}, {"weight_decay", 1e-4}, {"dropout", 0.1}}));
  EXPECT_EQ(spec.points[1], (json{{"lr", 1e-3}, {"weight_decay", 1e-4}, {"dropout", 0.2}}));
  EXPECT_EQ(spec.points[3], (json{{"lr", 1e-3}, {"weight_decay", 1e-3}, {"dropout", 0.1}}));
  EXPECT_EQ(spec.points[9], (json{{"lr", 7e-4}, {"weight_decay", 1e-4}, {"dropout", 0.1}}));
  EXPECT_EQ(spec.points[26], (json{{"lr", 3e-4}, {"weight_decay", 1e-2}, {"dropout", 0.3}}));
}

TEST_F(SweepSpecTest, TrialConfigsAreSpecMinusSchedulerKeysWithParamsApplied) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec,
                       ParseSweepSpec(TrainSpec(kGrid27,
                                                "max_concurrent_trials: 8\nmax_attempts: 2\n"
                                                "resources: {workers_per_trial: 1}\n")));
  EXPECT_EQ(spec.max_concurrent, 8);
  EXPECT_EQ(spec.max_attempts, 2);
  const json& c = spec.trial_configs[5];
  for (const char* key : {"name", "search", "max_concurrent_trials", "max_attempts", "resources"}) {
    EXPECT_FALSE(c.contains(key)) << key;
  }
  EXPECT_EQ(c["kind"], "train");
  EXPECT_EQ(c["seed"], 42);
  EXPECT_EQ(c["dataset"]["path"], kDigits);
  EXPECT_EQ(c["train"]["lr"], spec.points[5]["lr"]);
  EXPECT_EQ(c["train"]["weight_decay"], spec.points[5]["weight_decay"]);
  EXPECT_EQ(c["train"]["epochs"], 2);
  EXPECT_EQ(c["model"]["dropout"], spec.points[5]["dropout"]);
  EXPECT_EQ(c["model"]["hidden"], 32);
}

// The probe recipe example says everything it claims, field by field.
TEST_F(SweepSpecTest, ProbeRecipeExampleIsTheWholeRecipe) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, LoadSweepSpecFile(testutil::SourceDir() +
                                                         "/examples/fashion-mnist-probe-recipe.yaml"));
  ASSERT_EQ(spec.points.size(), 27u);
  EXPECT_EQ(spec.metric, "selected_val_f1");
  const json& c = spec.trial_configs[0];
  EXPECT_EQ(c["dataset"]["classes"], json({0, 6, 2}));
  EXPECT_EQ(c["dataset"]["rows_per_class"], json({324, 200, 302}));
  EXPECT_EQ(c["dataset"]["split"]["train_per_class"], 150);
  EXPECT_EQ(c["train"]["mixup"], (json{{"alpha", 0.3}, {"until", 0.7}}));
  EXPECT_EQ(c["train"]["class_weights"]["boost"]["1"], 1.5);
  EXPECT_EQ(c["train"]["label_smoothing"], 0.1);
  EXPECT_EQ(c["train"]["schedule"]["patience"], 25);
  EXPECT_EQ(c["train"]["clip_grad_norm"], 1.0);
  EXPECT_EQ(c["train"]["early_stopping"]["patience"], 75);
  EXPECT_EQ(c["train"]["epochs"], 500);
  EXPECT_EQ(c["seed"], 42);
}

TEST_F(SweepSpecTest, NormalisedSpecHasDefaults) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Grid("    lr: [0.1]\n")));
  EXPECT_EQ(spec.spec["name"], "digits-probe-grid");
  EXPECT_EQ(spec.spec["max_attempts"], 3);
  EXPECT_EQ(spec.spec["search"]["metric"], (json{{"name", "val_accuracy"}, {"goal", "maximize"}}));
  EXPECT_EQ(spec.spec["search"]["parameters"]["lr"], json::array({0.1}));
  EXPECT_FALSE(spec.spec.contains("max_concurrent_trials"));
}

// index.params is checked at submit by the index backend's own validation, so a typo is
// found before a whole corpus is embedded.
TEST_F(SweepSpecTest, EmbedIndexParamsAreValidatedLikeTheBackendDoes) {
  const std::string head =
      "name: e\nkind: embed\nencoder: {type: flatten}\n"
      "corpus: {format: idx, images: /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz}\n";
  ExpectInvalid(head + "index: {params: {ef_serch: 64}}\n", "index.params.ef_serch: unknown key");
  ExpectInvalid(head + "index: {type: hnsw, params: {M: 1}}\n", "index.params.M");
  ExpectInvalid(head + "index: {type: hnsw, params: {M: 100000}}\n", "index.params.M");
  ExpectInvalid(head + "index: {params: {M: 16, bogus: 1}}\n", "index.params.bogus: unknown key");
  // Unknown nested keys list the allowed ones.
  ExpectInvalid(head + "index: {params: {M: 16, bogus: 1}}\n",
                "index.params.bogus: unknown key for type hnsw (allowed: M, backend, "
                "ef_construction, ef_search, max_elements, seed)");
  ExpectInvalid(head + "index: {typ: flat}\n",
                "index.typ: unknown key (allowed: eval, keep_versions, metric, name, params, "
                "require, type)");
  ExpectInvalid("name: e\nkind: embed\nencoder: {type: flatten}\ncorpus: {format: idx, images: "
                "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz, lables: y.gz}\n",
                "corpus.lables: unknown key (allowed: ");
  ExpectInvalid(head + "index: {type: ivf_flat, params: {nlist: 0}}\n", "index.params.nlist");
  ExpectInvalid(head + "index: {type: ivf_pq, params: {nbits: 99}}\n", "index.params.nbits");
  ExpectInvalid(head + "index: {type: flat, params: {nlist: 4}}\n", "index.params.nlist");
  ExpectInvalid(head + "index: {type: annoy}\n", "index.type");
  ASSERT_OK_AND_ASSIGN(SweepSpec ok, ParseSweepSpec(head + "index: {params: {ef_search: 64, M: 32}}\n"));
  EXPECT_EQ(ok.spec["index"]["params"]["M"], 32);
  // m must divide the dimension: only checked at build time, when the dimension is known.
  EXPECT_OK(ParseSweepSpec(head + "index: {type: ivf_pq, params: {m: 7}}\n"));
}

TEST_F(SweepSpecTest, JsonAndYamlGiveTheSameSweep) {
  const json j = {{"name", "digits-probe-grid"},
                  {"kind", "train"},
                  {"seed", 42},
                  {"dataset", {{"format", "csv"}, {"path", kDigits}}},
                  {"model", {{"type", "mlp"}, {"hidden", 32}}},
                  {"train", {{"epochs", 2}, {"batch_size", 64}}},
                  {"search",
                   {{"method", "grid"},
                    {"metric", {{"name", "val_accuracy"}, {"goal", "maximize"}}},
                    {"parameters",
                     {{"dropout", {0.1, 0.2, 0.3}},
                      {"lr", {1e-3, 7e-4, 3e-4}},
                      {"weight_decay", {1e-4, 1e-3, 1e-2}}}}}}};
  ASSERT_OK_AND_ASSIGN(SweepSpec from_json, ParseSweepSpec(j.dump(2)));
  ASSERT_OK_AND_ASSIGN(SweepSpec from_yaml, ParseSweepSpec(TrainSpec(kGrid27)));
  EXPECT_EQ(from_json.spec, from_yaml.spec);
  ASSERT_EQ(from_json.points.size(), 27u);
  // JSON text keeps its own key order: dropout, lr, weight_decay.
  EXPECT_EQ(from_json.parameter_names, (std::vector<std::string>{"dropout", "lr", "weight_decay"}));
  EXPECT_EQ(from_json.points[1], (json{{"dropout", 0.1}, {"lr", 1e-3}, {"weight_decay", 1e-3}}));
}

TEST_F(SweepSpecTest, ScalarTypesArePreserved) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Grid("    hidden: [[128], [256, 128]]\n"
                                                           "    batchnorm: [true, false]\n"
                                                           "    optimizer: [adamw, \"sgd\"]\n"
                                                           "    epochs: [3]\n")));
  ASSERT_EQ(spec.points.size(), 8u);
  const json& p = spec.points[0];
  EXPECT_TRUE(p["hidden"].is_array());
  EXPECT_TRUE(p["hidden"][0].is_number_integer());
  EXPECT_TRUE(p["batchnorm"].is_boolean());
  EXPECT_TRUE(p["optimizer"].is_string());
  EXPECT_TRUE(p["epochs"].is_number_integer());
  EXPECT_EQ(
      spec.points[7],
      (json{{"hidden", {256, 128}}, {"batchnorm", false}, {"optimizer", "sgd"}, {"epochs", 3}}));
  EXPECT_TRUE(spec.spec["seed"].is_number_integer());
  EXPECT_TRUE(spec.spec["search"]["parameters"]["hidden"].is_array());
}

TEST_F(SweepSpecTest, YamlNullQuotedNumbersAndFloats) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec("name: n\nkind: noop\nseed: 1\n"));
  EXPECT_TRUE(spec.spec["seed"].is_number_integer());
  ExpectInvalid("name: n\nkind: noop\nseed: \"1\"\n", "seed: must be an integer");
  ExpectInvalid("name: n\nkind: noop\nseed: 1.5\n", "seed: must be an integer");
  ExpectInvalid("name: n\nkind: noop\nseed: ~\n", "seed: must be an integer, got null");
  ExpectInvalid("name: n\nkind: noop\nseed: true\n", "seed: must be an integer, got true");
}

TEST_F(SweepSpecTest, NoopWithoutSearchIsOneTrial) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec("name: ping\nkind: noop\nsleep_ms: 5\n"));
  EXPECT_EQ(spec.method, "");
  EXPECT_EQ(spec.metric, "val_accuracy");
  ASSERT_EQ(spec.points.size(), 1u);
  EXPECT_EQ(spec.points[0], json::object());
  EXPECT_EQ(spec.trial_configs[0], (json{{"kind", "noop"}, {"sleep_ms", 5}}));
}

TEST_F(SweepSpecTest, NoopGridOverTopLevelKeys) {
  ASSERT_OK_AND_ASSIGN(
      SweepSpec spec,
      ParseSweepSpec("name: ping\nkind: noop\n"
                     "search: {method: grid, parameters: {seed: [1, 2, 3], sleep_ms: [0, 5]}}\n"));
  ASSERT_EQ(spec.points.size(), 6u);
  EXPECT_EQ(spec.trial_configs[5], (json{{"kind", "noop"}, {"seed", 3}, {"sleep_ms", 5}}));
}

TEST_F(SweepSpecTest, RandomSearchExpandsMaxTrials) {
  ASSERT_OK_AND_ASSIGN(
      SweepSpec spec,
      ParseSweepSpec(Random("    lr: {min: 1.0e-4, max: 1.0e-1, log: true}\n"
                            "    batch_size: {min: 16, max: 128, type: int}\n"
                            "    optimizer: [adamw, sgd]\n",
                            "  max_trials: 20\n  metric: {name: val_loss, goal: minimize}\n")));
  EXPECT_EQ(spec.method, "random");
  EXPECT_EQ(spec.metric, "val_loss");
  EXPECT_FALSE(spec.maximize);
  EXPECT_EQ(spec.spec["search"]["seed"], 0);
  ASSERT_EQ(spec.points.size(), 20u);
  for (size_t i = 0; i < spec.points.size(); ++i) {
    const json& p = spec.points[i];
    EXPECT_GE(p["lr"].get<double>(), 1e-4);
    EXPECT_LE(p["lr"].get<double>(), 1e-1);
    ASSERT_TRUE(p["batch_size"].is_number_integer());
    EXPECT_EQ(spec.trial_configs[i]["train"]["batch_size"], p["batch_size"]);
  }
  ASSERT_OK_AND_ASSIGN(SweepSpec again,
                       ParseSweepSpec(Random("    lr: {min: 1.0e-4, max: 1.0e-1, log: true}\n"
                                             "    batch_size: {min: 16, max: 128, type: int}\n"
                                             "    optimizer: [adamw, sgd]\n",
                                             "  max_trials: 20\n  seed: 0\n")));
  EXPECT_EQ(spec.points, again.points);
}

// ---- hostile documents (issue 9): limits, aliases, encodings --------------------------

const char kNoopHead[] = "name: n\nkind: noop\n";

TEST_F(SweepSpecTest, RecursiveAliasesAreRejectedNotFollowed) {
  ExpectInvalid("&a [*a]\n", "spec[0]: alias refers to a mapping or list that contains it");
  ExpectInvalid(std::string(kNoopHead) + "sleep_ms: &a [*a]\n",
                "sleep_ms[0]: alias refers to a mapping or list that contains it");
  ExpectInvalid(std::string(kNoopHead) + "a: &a {b: *a}\n", "a.b: alias refers to");
  ExpectInvalid(std::string(kNoopHead) + "a: &a {b: [1, {c: *a}]}\n", "a.b[1].c: alias refers to");
  // An alias to a sibling is fine: it is expanded.
  ASSERT_OK_AND_ASSIGN(SweepSpec spec,
                       ParseSweepSpec(Grid("    lr: &v [1.0e-3, 2.0e-3]\n    momentum: *v\n")));
  EXPECT_EQ(spec.points.size(), 4u);
}

// "Billion laughs": each level repeats the one before ten times, 10^9 values in all.
std::string AliasBomb(const std::string& indent) {
  std::string out = indent + "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level < 9; ++level) {
    const std::string prev = "*l" + std::to_string(level - 1);
    out += indent + "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [";
    for (int i = 0; i < 10; ++i) out += (i ? ", " : "") + prev;
    out += "]\n";
  }
  return out;
}

TEST_F(SweepSpecTest, AliasExpansionStopsAtTheValueLimit) {
  const std::string limit = "more than " + std::to_string(kMaxSpecValues) + " values";
  ExpectInvalid(std::string(kNoopHead) + "train:\n" + AliasBomb("  "), limit);
  ExpectInvalid(Grid(AliasBomb("    ")), limit);
  // Just under the limit is fine for the document (then rejected for what it says).
  std::string list = "[";
  for (int64_t i = 0; i < kMaxSpecValues - 10; ++i) list += i ? ",1" : "1";
  ExpectInvalid(std::string(kNoopHead) + "sleep_ms: " + list + "]\n", "sleep_ms");
  StatusOr<SweepSpec> big = ParseSweepSpec(std::string(kNoopHead) + "sleep_ms: " + list + "]\n");
  EXPECT_EQ(big.status().message().find("values"), std::string::npos) << big.status().message();
  // JSON is counted too.
  std::string json_list = "[";
  for (int64_t i = 0; i <= kMaxSpecValues; ++i) json_list += i ? ",1" : "1";
  ExpectInvalid("{\"name\": \"n\", \"kind\": \"noop\", \"sleep_ms\": " + json_list + "]}", limit);
}

std::string Nested(int levels) {
  return std::string(static_cast<size_t>(levels), '[') + std::string(static_cast<size_t>(levels), ']');
}

TEST_F(SweepSpecTest, NestingDeeperThanTheLimitIsRejectedWithTheLimit) {
  const std::string deep = "nesting deeper than " + std::to_string(kMaxSpecDepth) + " levels";
  // The document is level 1, so sleep_ms may hold kMaxSpecDepth - 1 nested lists.
  StatusOr<SweepSpec> ok = ParseSweepSpec(std::string(kNoopHead) + "sleep_ms: " +
                                          Nested(kMaxSpecDepth - 1) + "\n");
  ASSERT_FALSE(ok.ok());
  EXPECT_EQ(ok.status().message().find("nesting"), std::string::npos) << ok.status().message();
  ExpectInvalid(std::string(kNoopHead) + "sleep_ms: " + Nested(kMaxSpecDepth) + "\n", deep);
  // Past yaml-cpp's own recursion guard: the same message, not "bad file".
  ExpectInvalid(std::string(kNoopHead) + "sleep_ms: " + Nested(5000) + "\n", deep);
  std::string block = std::string(kNoopHead) + "train:\n";  // block style
  for (int i = 0; i < 80; ++i) block += std::string(static_cast<size_t>(2 * i + 2), ' ') + "k:\n";
  ExpectInvalid(block, deep);
  ExpectInvalid("{\"name\": \"n\", \"kind\": \"noop\", \"sleep_ms\": " + Nested(100000) + "}", deep);
}

TEST_F(SweepSpecTest, KeysPerMappingAreLimited) {
  const std::string many = "more than " + std::to_string(kMaxSpecKeysPerMapping) + " keys";
  std::string yaml = std::string(kNoopHead) + "train:\n";
  std::string json = "{\"name\": \"n\", \"kind\": \"noop\", \"train\": {";
  for (int i = 0; i < 100000; ++i) {
    yaml += "  k" + std::to_string(i) + ": 1\n";
    json += std::string(i ? "," : "") + "\"k" + std::to_string(i) + "\": 1";
  }
  ExpectInvalid(yaml, "train: " + many);
  ExpectInvalid(json + "}}", many);
  ExpectInvalid(Grid("    lr: [1]\n    lr: [2]\n"), "search.parameters.lr: duplicate key");
  ExpectInvalid("{\"name\": \"n\", \"name\": \"m\", \"kind\": \"noop\"}", "name: duplicate key");
}

TEST_F(SweepSpecTest, InvalidUtf8IsInvalidArgument) {
  ExpectInvalid(std::string(kNoopHead) + "sleep_ms: \"\xff\"\n", "spec: invalid UTF-8 at byte 30");
  ExpectInvalid("{\"name\": \"n\xc3\", \"kind\": \"noop\"}", "spec: invalid UTF-8 at byte 11");
  ExpectInvalid(std::string(kNoopHead) + "x: \"\xed\xa0\x80\"\n", "invalid UTF-8");   // surrogate
  ExpectInvalid(std::string(kNoopHead) + "x: \"\xc0\xaf\"\n", "invalid UTF-8");       // overlong
  ExpectInvalid(std::string(kNoopHead) + "x: \"\xf4\x90\x80\x80\"\n", "invalid UTF-8");  // > U+10FFFF
  EXPECT_OK(internal::CheckUtf8("ascii, \xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80"));
}

TEST_F(SweepSpecTest, JsonSurrogatePairEscapesAreAccepted) {
  const std::string text =
      "{\"name\": \"n\", \"kind\": \"noop\", \"search\": {\"method\": \"grid\", "
      "\"metric\": {\"name\": \"acc\\ud83d\\ude00\"}, \"parameters\": {\"sleep_ms\": [1, 2]}}}";
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(text));
  EXPECT_EQ(spec.metric, "acc\xf0\x9f\x98\x80");
  EXPECT_EQ(spec.points.size(), 2u);
  EXPECT_TRUE(spec.points[0]["sleep_ms"].is_number_integer());
  // A lone surrogate is not text.
  ExpectInvalid("{\"name\": \"n\\ud83d\", \"kind\": \"noop\"}", "spec: ");
}

// Found while fuzzing (tests/fuzz/fuzz_sweep_spec): plain scalars were typed with
// std::regex, whose libstdc++ matcher recurses once per character, so one number of
// ~100,000 digits (a 100 KB spec, far below the 5 MB body limit) overflowed the stack
// and killed the coordinator. Long scalars are now typed in one pass.
TEST_F(SweepSpecTest, LongPlainScalarsDoNotOverflowTheStack) {
  const std::string digits(1000000, '7');
  // Too big for int64 and for a double: +inf, which a spec refuses.
  ExpectInvalid("name: n\nkind: noop\nseed: " + digits + "\n", "seed: .nan and .inf");
  ExpectInvalid("name: n\nkind: noop\nsleep_ms: 0." + digits + "\n", "sleep_ms");
  ExpectInvalid("name: n\nkind: noop\nsleep_ms: -." + digits + "e-5\n", "sleep_ms");
  ExpectInvalid("name: " + digits + "x\nkind: noop\n", "name: must match");
  // The typing itself is unchanged (the YAML 1.2 core schema).
  auto spec = ParseSweepSpec(
      "name: n\nkind: noop\nsleep_ms: +12\nsearch:\n  method: grid\n  parameters:\n"
      "    seed: [1., .5, -2.5e3, 7E+2, 5e, .e1, '+', -.inf, .NaN, 0x1F, 1_000]\n");
  ASSERT_FALSE(spec.ok());  // -.inf and .NaN are refused
  EXPECT_NE(spec.status().message().find(".nan and .inf"), std::string::npos);
  auto types = internal::ParseSpecDocument(
      "a: [1., .5, -2.5e3, 7E+2, 5e, .e1, '+', +, 0x1F, 1_000, 12, -0, +7]\n");
  ASSERT_OK(types);
  const json expected = json::parse(
      R"([1.0, 0.5, -2500.0, 700.0, "5e", ".e1", "+", "+", "0x1F", "1_000", 12, 0, 7])");
  EXPECT_EQ(json((*types)["a"]), expected);
}

// Found by tests/fuzz/fuzz_sweep_spec: yaml-cpp writes the escapes \N and \_ as single
// Latin-1 bytes (and "\0N" in the text as one), so a valid UTF-8 spec gave strings that
// are not UTF-8: json::dump() then threw out of ParseSweepSpec (a 500 from POST
// /v1/sweeps), or the spec was accepted and could not be stored.
TEST_F(SweepSpecTest, YamlEscapesThatAreNotUtf8AreRejected) {
  const char nul[] = "name: n1\nkind: \0Noop\nsleep_ms: 5\n";  // the fuzzer's input
  ExpectInvalid(std::string(nul, sizeof nul - 1), "kind: not valid UTF-8");
  ExpectInvalid("name: \"n\\N\"\nkind: noop\n", "name: not valid UTF-8 once YAML escapes");
  ExpectInvalid("name: n\nkind: noop\nsearch:\n  method: grid\n  metric: {name: \"a\\_b\"}\n"
                "  parameters: {sleep_ms: [1]}\n",
                "search.metric.name: not valid UTF-8");
  ExpectInvalid("name: n\nkind: noop\n\"k\\N\": 1\n", "spec (a key): not valid UTF-8");
  // The characters themselves are fine, as are escapes yaml-cpp encodes as UTF-8.
  auto spec = ParseSweepSpec("name: n\nkind: noop\nsearch:\n  method: grid\n"
                             "  metric: {name: \"a\u00a0b\\u00e9\\x41\"}\n"
                             "  parameters: {sleep_ms: [1]}\n");
  ASSERT_OK(spec);
  EXPECT_EQ(spec->metric, "a\u00a0b\u00e9A");
  EXPECT_NO_THROW(spec->spec.dump());
}

TEST_F(SweepSpecTest, NonFiniteNumbersAreRejectedNamingTheKey) {
  ExpectInvalid(std::string(kNoopHead) + "sleep_ms: .nan\n",
                "sleep_ms: .nan and .inf are not allowed");
  ExpectInvalid(Grid("    lr: [1.0e-3, .inf]\n"), "search.parameters.lr[1]: .nan and .inf");
}

const char kEmbedHead[] =
    "kind: embed\nencoder: {type: flatten}\n"
    "corpus: {format: idx, images: /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz}\n";

// corpus.ids is read at submit: one id per corpus row (before limit), no repeats; the
// error names the id and its rows, and nothing is stored for a rejected spec.
TEST_F(SweepSpecTest, EmbedItemIdsAreCheckedAtSubmit) {
  testutil::TempDir dir;
  std::string ids;
  for (int r = 0; r < 10000; ++r) ids += "tee-" + std::to_string(r) + "\n";
  std::ofstream(dir.Join("ids.txt")) << ids;
  const std::string head = std::string("name: e\n") + kEmbedHead;
  auto with_ids = [&](const std::string& file) {
    return "name: e\nkind: embed\nencoder: {type: flatten}\n"
           "corpus: {format: idx, images: /usr/share/datasets/fashion-mnist/"
           "t10k-images-idx3-ubyte.gz, limit: 100, ids: " + file + "}\n";
  };
  ASSERT_OK_AND_ASSIGN(SweepSpec ok, ParseSweepSpec(with_ids(dir.Join("ids.txt"))));
  EXPECT_EQ(ok.spec["corpus"]["ids"], dir.Join("ids.txt"));
  EXPECT_EQ(ok.trial_configs[0]["corpus"]["ids"], dir.Join("ids.txt"));
  std::ofstream(dir.Join("dup.txt")) << ids << "tee-17\n";
  ExpectInvalid(with_ids(dir.Join("dup.txt")), "corpus.ids: " + dir.Join("dup.txt") +
                                                   ": 10001 ids for 10000 corpus rows");
  std::string dup = ids;
  dup.replace(dup.find("tee-9999"), 8, "tee-4242");
  std::ofstream(dir.Join("dup2.txt")) << dup;
  ExpectInvalid(with_ids(dir.Join("dup2.txt")), "duplicate id 'tee-4242' (rows 4242 and 9999)");
  ExpectInvalid(with_ids(dir.Join("missing.txt")), "corpus.ids: file not found");
}

TEST_F(SweepSpecTest, EmbedIndexNamesAreCheckedAtSubmit) {
  const std::string head = std::string("name: e\n") + kEmbedHead;
  for (const char* bad : {"../../x", "$(id)", ".", "..", "a/b", "\"a\\nb\"", "\"\"", "-x"}) {
    ExpectInvalid(head + "index: {name: " + bad + "}\n", "index.name: index name");
  }
  ExpectInvalid(std::string("name: .hidden\n") + kEmbedHead,
                "index.name (defaults to the sweep name): index name \".hidden\": must match");
  ASSERT_OK_AND_ASSIGN(SweepSpec ok, ParseSweepSpec(head + "index: {name: fmnist_v2.1-a}\n"));
  EXPECT_EQ(ok.spec["index"]["name"], "fmnist_v2.1-a");
}

TEST_F(SweepSpecTest, EmbedRecallRequirementMustBeInRange) {
  const std::string head = std::string("name: e\n") + kEmbedHead;
  ExpectInvalid(head + "index: {require: {recall@10: .nan}}\n",
                "index.require.recall@10: .nan and .inf are not allowed");
  ExpectInvalid(head + "index: {require: {recall@10: .inf}}\n", "index.require.recall@10");
  ExpectInvalid(head + "index: {require: {recall@10: 1.5}}\n", "must be a number in (0, 1]");
  ExpectInvalid(head + "index: {require: {recall@10: 0}}\n", "must be a number in (0, 1]");
  ExpectInvalid(head + "index: {require: {recall@10: \"0.9\"}}\n", "must be a number in (0, 1]");
  EXPECT_OK(ParseSweepSpec(head + "index: {require: {recall@10: 0.9}}\n"));
}

// Random search validates every value a draw could give, not only those drawn.
TEST_F(SweepSpecTest, RandomSearchValidatesEveryDrawableValue) {
  // Seed 0: the one trial draws 0.1, so only the new check sees 2^31.
  ExpectInvalid(Random("    dropout: [0.1, 2147483648]\n", "  max_trials: 1\n  seed: 0\n"),
                "search.parameters.dropout: value 2147483648 can be drawn, but a trial with it is "
                "invalid: model.dropout");
  ExpectInvalid(Random("    dropout: {min: 0.1, max: 1.5}\n", "  max_trials: 1\n  seed: 3\n"),
                "search.parameters.dropout: value 1.5 can be drawn");
  ExpectInvalid(Random("    batch_size: {min: -5, max: 64, type: int}\n",
                       "  max_trials: 1\n  seed: 3\n"),
                "search.parameters.batch_size: value -5 can be drawn");
  EXPECT_OK(ParseSweepSpec(Random("    dropout: [0.1, 0.5]\n"
                                  "    lr: {min: 1.0e-4, max: 1.0e-1, log: true}\n",
                                  "  max_trials: 1\n")));
}

// ---- rejected specs: code InvalidArgument, message names the key ---------------------

TEST_F(SweepSpecTest, RejectsTopLevelProblems) {
  ExpectInvalid(TrainSpec(kGrid27, "colour: blue\n"), "colour: unknown key");
  ExpectInvalid("kind: noop\n", "name: required");
  ExpectInvalid("name: noop\n", "kind: required");
  ExpectInvalid("name: has space\nkind: noop\n", "name: must match");
  ExpectInvalid("name: " + std::string(65, 'a') + "\nkind: noop\n", "name: must match");
  ExpectInvalid("name: [a]\nkind: noop\n", "name: must match");
  ExpectInvalid("name: n\nkind: distill_everything\n", "kind: unknown job kind");
  ExpectInvalid("name: n\nkind: 3\n", "kind: unknown job kind");
  ExpectInvalid("name: n\nkind: train\ntrain: 5\nsearch: {method: grid}\n",
                "train: must be a mapping");
  ExpectInvalid("- a\n- b\n", "spec: must be a mapping");
  ExpectInvalid("", "spec: must be a mapping");
  ExpectInvalid("name: n\nname: m\nkind: noop\n", "name: duplicate key");
}

TEST_F(SweepSpecTest, RejectsBadLimitsAndResources) {
  ExpectInvalid(TrainSpec(kGrid27, "max_concurrent_trials: 0\n"), "max_concurrent_trials:");
  ExpectInvalid(TrainSpec(kGrid27, "max_concurrent_trials: eight\n"),
                "max_concurrent_trials: must be an integer");
  ExpectInvalid(TrainSpec(kGrid27, "max_attempts: 0\n"), "max_attempts: must be in [1,");
  ExpectInvalid(TrainSpec(kGrid27, "max_attempts: 2.5\n"), "max_attempts: must be an integer");
  ExpectInvalid(TrainSpec(kGrid27, "resources: {workers_per_trial: 0}\n"),
                "resources.workers_per_trial: must be in [1,");
  ExpectInvalid(TrainSpec(kGrid27, "resources: {workers_per_trial: 2000}\n"),
                "resources.workers_per_trial: at most 1024");
  ExpectInvalid(TrainSpec(kGrid27, "resources: {workers_per_trial: two}\n"),
                "resources.workers_per_trial: must be an integer");
  ExpectInvalid(TrainSpec(kGrid27, "resources: {gpus: 1}\n"), "resources.gpus: unknown key");
  ExpectInvalid(TrainSpec(kGrid27, "resources: 1\n"), "resources: must be a mapping");
}

TEST_F(SweepSpecTest, RejectsSearchProblems) {
  ExpectInvalid(TrainSpec(""), "search: required for kind train");
  ExpectInvalid(TrainSpec("search: grid\n"), "search: must be a mapping");
  ExpectInvalid(TrainSpec("search: {parameters: {lr: [1]}}\n"), "search.method: required");
  ExpectInvalid(TrainSpec("search: {method: asha, parameters: {lr: [1]}}\n"),
                "search.method: must be grid or random");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  budget: 3\n"), "search.budget: unknown key");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  metric: {name: acc, goal: up}\n"),
                "search.metric.goal: must be maximize or minimize");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  metric: acc\n"), "search.metric: must be a mapping");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  metric: {name: \"\"}\n"), "search.metric.name:");
  // A train job's metric must be one it reports; test metrics never rank trials.
  ExpectInvalid(Grid("    lr: [0.1]\n", "  metric: {name: val_f2}\n"),
                "search.metric.name: \"val_f2\" is not a metric of a train job (one of: "
                "train_loss, train_accuracy, val_loss, val_accuracy, val_f1, lr");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  metric: {name: test_accuracy}\n"),
                "test metrics never select a trial");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  metric: {name: selected_epoch}\n"),
                "\"selected_epoch\" is not a metric");  // no selection configured
  // repeats: each point N times with consecutive seeds.
  {
    ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(TrainSpec(kGrid27, "repeats: 3\n")));
    ASSERT_EQ(spec.points.size(), 81u);
    EXPECT_EQ(spec.points[0]["seed"], 42);
    EXPECT_EQ(spec.points[2]["seed"], 44);
    EXPECT_EQ(spec.points[3]["seed"], 42);
    EXPECT_EQ(spec.points[2]["lr"], spec.points[0]["lr"]);
    EXPECT_EQ(spec.trial_configs[1]["seed"], 43);
    EXPECT_EQ(spec.parameter_names.back(), "seed");
  }
  ExpectInvalid(TrainSpec(kGrid27, "repeats: 0\n"), "repeats: must be in [1, 1000]");
  ExpectInvalid(Grid("    seed: [1, 2]\n", "").insert(0, "repeats: 2\n"),
                "repeats: seed is a searched parameter");
  for (const char* ok : {"val_f1", "selected_val_f1", "train_accuracy", "best_val_loss"}) {
    EXPECT_OK(ParseSweepSpec(Grid("    lr: [0.1]\n",
                                  "  metric: {name: " + std::string(ok) + "}\n")).status());
  }
  ExpectInvalid(TrainSpec("search: {method: grid}\n"), "search.parameters: required");
  ExpectInvalid(Grid("    {}\n"), "search.parameters: must not be empty");
  ExpectInvalid(TrainSpec("search: {method: grid, parameters: [lr]}\n"),
                "search.parameters: must be a mapping");
}

TEST_F(SweepSpecTest, RejectsEmptyOrNonListGrids) {
  ExpectInvalid(Grid("    lr: []\n"), "search.parameters.lr: grid values must be a non-empty list");
  ExpectInvalid(Grid("    lr: 0.1\n"),
                "search.parameters.lr: grid values must be a non-empty list");
  ExpectInvalid(Grid("    lr: {min: 0.1, max: 1}\n"),
                "search.parameters.lr: grid values must be a non-empty list");
  ExpectInvalid(Grid("    lr: [0.1]\n    dropout:\n"),
                "search.parameters.dropout: grid values must be a non-empty list");
}

TEST_F(SweepSpecTest, RejectsGridOnlyAndRandomOnlyKeys) {
  ExpectInvalid(Grid("    lr: [0.1]\n", "  max_trials: 5\n"),
                "search.max_trials: not allowed for method grid");
  ExpectInvalid(Grid("    lr: [0.1]\n", "  seed: 5\n"), "search.seed: only used by method random");
  ExpectInvalid(Random("    lr: [0.1]\n", ""), "search.max_trials: required for method random");
  ExpectInvalid(Random("    lr: [0.1]\n", "  max_trials: 0\n"), "search.max_trials: must be in");
  ExpectInvalid(Random("    lr: [0.1]\n", "  max_trials: 100001\n"),
                "search.max_trials: must be in");
  ExpectInvalid(Random("    lr: [0.1]\n", "  max_trials: 3\n  seed: x\n"),
                "search.seed: must be an integer");
}

TEST_F(SweepSpecTest, RejectsBadRanges) {
  const std::string n = "  max_trials: 4\n";
  ExpectInvalid(Random("    lr: {min: 1, max: 0.1}\n", n),
                "search.parameters.lr: min must be < max");
  ExpectInvalid(Random("    lr: {min: 0.1, max: 0.1}\n", n),
                "search.parameters.lr: min must be < max");
  ExpectInvalid(Random("    lr: {min: 0, max: 0.1, log: true}\n", n),
                "search.parameters.lr: log: true needs min > 0");
  ExpectInvalid(Random("    lr: {min: -1, max: 0.1, log: true}\n", n),
                "search.parameters.lr: log: true needs min > 0");
  ExpectInvalid(Random("    lr: {max: 0.1}\n", n), "search.parameters.lr.min: required");
  ExpectInvalid(Random("    lr: {min: a, max: 0.1}\n", n),
                "search.parameters.lr.min: must be a number");
  ExpectInvalid(Random("    lr: {min: 0.1, max: 1, step: 2}\n", n),
                "search.parameters.lr.step: unknown key");
  ExpectInvalid(Random("    lr: {min: 0.1, max: 1, log: yes}\n", n),
                "search.parameters.lr.log: must be a bool");
  ExpectInvalid(Random("    lr: {min: 0.1, max: 1, type: double}\n", n),
                "search.parameters.lr.type: must be float or int");
  ExpectInvalid(Random("    epochs: {min: 1.5, max: 9, type: int}\n", n),
                "search.parameters.epochs: type int needs integer min and max");
  ExpectInvalid(Random("    lr: []\n", n), "search.parameters.lr: must be a non-empty list");
}

TEST_F(SweepSpecTest, RejectsUnknownAndOverlappingParameters) {
  ExpectInvalid(Grid("    learning_rate: [0.1]\n"),
                "search.parameters.learning_rate: unknown parameter");
  ExpectInvalid(Grid("    lr: [0.1]\n    train.lr: [0.2]\n"),
                "search.parameters.train.lr: sets train.lr, which overlaps parameter lr");
  ExpectInvalid(Grid("    train.early_stopping: [{patience: 2}]\n"
                     "    train.early_stopping.patience: [3]\n"),
                "search.parameters.train.early_stopping.patience: sets");
}

TEST_F(SweepSpecTest, RejectsGridsOverTheLimit) {
  // 10^6 points: rejected before anything is expanded.
  std::string params;
  for (int i = 0; i < 6; ++i) {
    params += "    train.p" + std::to_string(i) + ": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n";
  }
  ExpectInvalid(Grid(params), "search.parameters: grid has 1000000 points, more than the limit");
}

// A grid at the trial limit is accepted (about 1 s and 260 MB on the build machine); the
// same grid over a larger config passes kMaxSweepValues and is rejected before expanding.
TEST_F(SweepSpecTest, SweepsAreLimitedByTrialsTimesConfigValues) {
  const std::string params =
      "    lr: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
      "    weight_decay: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.05]\n"
      "    dropout: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.05]\n"
      "    momentum: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.05]\n"
      "    epochs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n";
  ASSERT_OK_AND_ASSIGN(SweepSpec grid, ParseSweepSpec(Grid(params)));
  EXPECT_EQ(grid.points.size(), kMaxTrialsPerSweep);
  EXPECT_EQ(grid.trial_configs.size(), kMaxTrialsPerSweep);
  std::string hidden = "[";
  for (int i = 0; i < 60; ++i) hidden += i ? ", 8" : "8";
  const std::string wide = TrainSpec("search:\n  method: grid\n  parameters:\n" + params,
                                     "distill: {hidden: " + hidden + "]}\n");
  ExpectInvalid(wide, "search: 100000 trials of up to ");
  ExpectInvalid(wide, "more than the limit of " + std::to_string(kMaxSweepValues));
  ExpectInvalid(Random("    lr: [1.0e-3]\n", "  max_trials: 100000\n"
                                               "  seed: 0\n") +
                    "distill: {hidden: " + hidden + "]}\n",
                "more than the limit of " + std::to_string(kMaxSweepValues));
}

TEST_F(SweepSpecTest, YamlSyntaxErrorsHaveLineAndColumn) {
  ExpectInvalid("name: n\nkind: [noop\nseed: 1\n", "spec: line ");
  StatusOr<SweepSpec> spec = ParseSweepSpec("name: n\nkind: noop\n  bad: : indent\n");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("column"), std::string::npos) << spec.status().message();
}

TEST_F(SweepSpecTest, TrialConfigErrorsNameTheTrialAndParameters) {
  ExpectInvalid(Grid("    lr: [1.0e-3, -1]\n    dropout: [0.1]\n"),
                "trial 1 (lr=-1, dropout=0.1): train.lr: must be > 0");
  ExpectInvalid(Grid("    optimizer: [adamw, rmsprop]\n"),
                "trial 1 (optimizer=rmsprop): train.optimizer");
  ExpectInvalid(Grid("    train.bogus: [1]\n"), "trial 0 (train.bogus=1): train.bogus");
}

TEST_F(SweepSpecTest, ScheduleKeysAreSweepableByTheirDottedPath) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec,
                       ParseSweepSpec(Grid("    train.schedule.type: [cosine, plateau]\n"
                                           "    train.schedule.warmup_steps: [0, 50]\n"
                                           "    train.clip_grad_norm: [1.0]\n")));
  ASSERT_EQ(spec.trial_configs.size(), 4u);
  const json& c = spec.trial_configs[3];
  EXPECT_EQ(c["train"]["schedule"], (json{{"type", "plateau"}, {"warmup_steps", 50}}));
  EXPECT_EQ(c["train"]["clip_grad_norm"], 1.0);
  EXPECT_EQ(c["train"]["epochs"], 2);  // the rest of the base train section stays
  // A key of one type only is rejected for the others, naming the trial.
  ExpectInvalid(Grid("    train.schedule.type: [plateau, step]\n"
                     "    train.schedule.patience: [3]\n"),
                "trial 1 (train.schedule.type=step, train.schedule.patience=3): "
                "train.schedule.patience: not a key of schedule type step");
}

TEST_F(SweepSpecTest, MissingDatasetFileIsRejected) {
  std::string text = Grid("    lr: [0.1]\n");
  const std::string missing = "/nonexistent/lattice/digits.csv";
  text.replace(text.find(kDigits), sizeof(kDigits) - 1, missing);
  StatusOr<SweepSpec> spec = ParseSweepSpec(text);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("trial 0 (lr=0.1): dataset"), std::string::npos)
      << spec.status().message();
}

TEST_F(SweepSpecTest, LoadSweepSpecFile) {
  testutil::TempDir dir;
  StatusOr<SweepSpec> missing = LoadSweepSpecFile(dir.Join("nope.yaml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);

  const std::string bad = dir.Join("bad.yaml");
  std::ofstream(bad) << "name: n\nkind: noop\nmax_attempts: 0\n";
  StatusOr<SweepSpec> invalid = LoadSweepSpecFile(bad);
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(invalid.status().message().rfind(bad + ": max_attempts:", 0), 0u)
      << invalid.status().message();

  const std::string good = dir.Join("good.json");
  std::ofstream(good) << R"({"name": "ping", "kind": "noop"})";
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, LoadSweepSpecFile(good));
  EXPECT_EQ(spec.name, "ping");
}

TEST_F(SweepSpecTest, ExampleSpecsParse) {
  const std::filesystem::path dir = testutil::SourceDir() + "/examples";
  const std::filesystem::path grid = dir / "digits-probe-grid.yaml";
  if (!std::filesystem::exists(grid)) GTEST_SKIP() << grid << " not written yet";
  ASSERT_OK_AND_ASSIGN(SweepSpec digits, LoadSweepSpecFile(grid.string()));
  EXPECT_EQ(digits.points.size(), 27u);
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    StatusOr<SweepSpec> spec = LoadSweepSpecFile(entry.path().string());
    // An example whose dataset is not installed on this machine is not a spec error.
    if (!spec.ok() && spec.status().message().find("not found") != std::string::npos) continue;
    ASSERT_OK(spec);
    EXPECT_FALSE(spec->points.empty());
    EXPECT_EQ(spec->points.size(), spec->trial_configs.size());
  }
}

// ---- ApplyParameters / DescribePoint ----------------------------------------------------

TEST(ApplyParametersTest, SetsAliasesAndDottedPathsCreatingObjects) {
  const json base = {{"kind", "train"}, {"train", {{"epochs", 3}}}};
  const json out = ApplyParameters(base, {{"lr", 0.01},
                                          {"model", "linear"},
                                          {"hidden", {256, 128}},
                                          {"train.early_stopping.patience", 5},
                                          {"dataset.split.seed", 7}});
  EXPECT_EQ(out["kind"], "train");
  EXPECT_EQ(out["train"]["epochs"], 3);
  EXPECT_EQ(out["train"]["lr"], 0.01);
  EXPECT_EQ(out["model"]["type"], "linear");
  EXPECT_EQ(out["model"]["hidden"], (json{256, 128}));
  EXPECT_EQ(out["train"]["early_stopping"]["patience"], 5);
  EXPECT_EQ(out["dataset"]["split"]["seed"], 7);
  EXPECT_FALSE(base["train"].contains("lr"));  // base untouched
}

TEST(ApplyParametersTest, OverwritesExistingValuesAndNonObjectIntermediates) {
  const json base = {{"train", {{"lr", 0.5}}}, {"model", "mlp"}};
  const json out = ApplyParameters(base, {{"lr", 0.1}, {"dropout", 0.2}});
  EXPECT_EQ(out["train"]["lr"], 0.1);
  EXPECT_EQ(out["model"], (json{{"dropout", 0.2}}));
  EXPECT_EQ(ApplyParameters(base, json::object()), base);
}

TEST(DescribePointTest, UsesGivenOrderThenTheRest) {
  const json p = {{"lr", 0.001}, {"optimizer", "sgd"}, {"dropout", 0.1}, {"zeta", 1}};
  EXPECT_EQ(DescribePoint(p, {"optimizer", "lr", "dropout"}),
            "optimizer=sgd, lr=0.001, dropout=0.1, zeta=1");
  EXPECT_EQ(DescribePoint(json::object(), {}), "");
}

TEST_F(SweepSpecTest, WorkersPerTrialIsTheGangSize) {
  ASSERT_OK_AND_ASSIGN(SweepSpec one, ParseSweepSpec(TrainSpec(kGrid27)));
  EXPECT_EQ(one.workers_per_trial, 1);
  EXPECT_FALSE(one.spec.contains("resources"));  // the default is not stored
  ASSERT_OK_AND_ASSIGN(SweepSpec four,
                       ParseSweepSpec(TrainSpec(kGrid27, "resources: {workers_per_trial: 4}\n")));
  EXPECT_EQ(four.workers_per_trial, 4);
  EXPECT_EQ(four.spec["resources"]["workers_per_trial"], 4);
  EXPECT_FALSE(four.trial_configs[0].contains("resources"));
  ExpectInvalid(std::string("name: e\n") + kEmbedHead + "resources: {workers_per_trial: 2}\n",
                "resources.workers_per_trial: an embed sweep's shards each run on one worker");
}

// lattice submit: relative paths resolve against the spec file's directory.
TEST(ResolveSpecPathsTest, MakesEveryRelativePathFieldAbsolute) {
  const std::string yaml =
      "name: p\n"
      "kind: train\n"
      "dataset: {features: data/x.npy, labels: ./data/y.npy, scale: 2,\n"
      "          test: {features: ../t/x.npy, labels: /abs/y.npy}}\n"
      "model: {type: torchscript, path: m.pt}\n"
      "teacher: {type: torchscript, path: t.pt}\n"
      "encoder: {type: torchscript, path: enc.pt}\n"
      "corpus: {format: images, dir: imgs, size: [8, 8]}\n"
      "train: {optimizer: adamw, epochs: 1}\n"
      "search:\n"
      "  method: grid\n"
      "  parameters:\n"
      "    encoder.path: [a.pt, /b.pt]\n"
      "    dataset: [{features: f.npy, labels: l.npy}]\n"
      "    optimizer: [sgd]\n"
      "    lr: [0.1]\n";
  auto resolved = ResolveSpecPaths(yaml, "/specs/dir");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  const json doc = json::parse(*resolved);
  EXPECT_EQ(doc["dataset"]["features"], "/specs/dir/data/x.npy");
  EXPECT_EQ(doc["dataset"]["labels"], "/specs/dir/data/y.npy");
  EXPECT_EQ(doc["dataset"]["scale"], 2);
  EXPECT_EQ(doc["dataset"]["test"]["features"], "/specs/t/x.npy");
  EXPECT_EQ(doc["dataset"]["test"]["labels"], "/abs/y.npy");
  EXPECT_EQ(doc["model"]["path"], "/specs/dir/m.pt");
  EXPECT_EQ(doc["model"]["type"], "torchscript");
  EXPECT_EQ(doc["teacher"]["path"], "/specs/dir/t.pt");
  EXPECT_EQ(doc["encoder"]["path"], "/specs/dir/enc.pt");
  EXPECT_EQ(doc["corpus"]["dir"], "/specs/dir/imgs");
  EXPECT_EQ(doc["train"]["optimizer"], "adamw");
  const json& params = doc["search"]["parameters"];
  EXPECT_EQ(params["encoder.path"], json({"/specs/dir/a.pt", "/b.pt"}));
  EXPECT_EQ(params["dataset"][0]["features"], "/specs/dir/f.npy");
  EXPECT_EQ(params["dataset"][0]["labels"], "/specs/dir/l.npy");
  EXPECT_EQ(params["optimizer"], json({"sgd"}));
  // Key order is kept: the server expands the grid in the order written.
  EXPECT_LT(resolved->find("\"encoder.path\":["), resolved->find("\"optimizer\":[\"sgd\"]"));
}

TEST(ResolveSpecPathsTest, ResolvedSpecParsesLikeTheOriginalFromItsDirectory) {
  testutil::TempDir dir;
  std::ofstream(dir.Join("digits.csv")) << "1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,0\n11,12,1\n";
  const std::string yaml =
      "name: rel\nkind: train\ndataset: {format: csv, path: digits.csv}\n"
      "model: {type: linear}\ntrain: {epochs: 1}\n"
      "search: {method: grid, parameters: {lr: [0.1, 0.01]}}\n";
  // From elsewhere the relative path names nothing; resolved, it names the file.
  EXPECT_FALSE(ParseSweepSpec(yaml).ok());
  auto resolved = ResolveSpecPaths(yaml, dir.path());
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  auto spec = ParseSweepSpec(*resolved);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ASSERT_EQ(spec->trial_configs.size(), 2u);
  EXPECT_EQ(spec->trial_configs[1]["dataset"]["path"], dir.Join("digits.csv"));
  EXPECT_EQ(spec->points[1]["lr"], 0.01);
}

TEST(ResolveSpecPathsTest, ParseErrorsAreTheParsersOwn) {
  auto bad = ResolveSpecPaths("name: [unclosed\n", "/d");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("spec: line"), std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(ResolveSpecPaths("- a\n- b\n", "/d").ok());
}

}  // namespace
}  // namespace lattice::scheduler
