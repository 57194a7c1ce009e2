// Sweep specs of activation datasets (embed `output: {dataset}`) and sparse autoencoders
// (`model: {type: sae}` on `dataset: {activations}`): what is checked at parse time.
#include <gtest/gtest.h>

#include <string>

#include "scheduler/sweep_spec.h"
#include "tests/testutil/testutil.h"

namespace lattice::scheduler {
namespace {

const char kEmbed[] =
    "name: e\nkind: embed\nencoder: {type: flatten}\n"
    "corpus: {format: idx, images: /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz}\n";

std::string Sae(const std::string& extra = "", const std::string& search = "") {
  return "name: s\nkind: train\ndataset: {activations: acts}\nmodel: {type: sae}\n" + extra +
         (search.empty() ? "search:\n  method: grid\n  metric: {name: val_explained_variance, "
                           "goal: maximize}\n  parameters:\n    expansion: [4, 8]\n"
                           "    l1_coefficient: [1.0e-3, 1.0e-2]\n"
                         : search);
}

void ExpectInvalid(const std::string& text, const std::string& needle) {
  StatusOr<SweepSpec> spec = ParseSweepSpec(text);
  ASSERT_FALSE(spec.ok()) << "accepted:\n" << text;
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument) << spec.status().ToString();
  EXPECT_NE(spec.status().message().find(needle), std::string::npos)
      << "message: " << spec.status().message() << "\nexpected to contain: " << needle;
}

TEST(DatasetSpecTest, EmbedOutputDataset) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(std::string(kEmbed) +
                                                      "output: {dataset: acts}\n"));
  EXPECT_EQ(spec.spec["output"]["dataset"], "acts");
  EXPECT_FALSE(spec.spec.contains("index")) << "a dataset sweep builds no index";
  for (const auto& config : spec.trial_configs) EXPECT_FALSE(config.contains("output"));
  ExpectInvalid(std::string(kEmbed) + "output: {dataset: acts}\nindex: {type: flat}\n",
                "either an index or output.dataset");
  ExpectInvalid(std::string(kEmbed) + "output: {}\n", "output.dataset: required");
  ExpectInvalid(std::string(kEmbed) + "output: {dataset: acts, fmt: npy}\n",
                "output.fmt: unknown key");
  ExpectInvalid(std::string(kEmbed) + "output: {dataset: ../x}\n", "output.dataset");
  ExpectInvalid(Sae("output: {dataset: x}\n"), "output: only used by kind embed");
}

TEST(DatasetSpecTest, SaeSweepExpandsAndChecksItsMetricAndKeys) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Sae()));
  ASSERT_EQ(spec.trial_configs.size(), 4u);
  EXPECT_EQ(spec.trial_configs[3]["model"]["expansion"], 8);
  EXPECT_EQ(spec.trial_configs[3]["train"]["l1_coefficient"], 1e-2);
  ExpectInvalid(Sae("", "search:\n  method: grid\n  metric: {name: val_accuracy}\n"
                        "  parameters:\n    expansion: [4]\n"),
                "val_explained_variance");
  ExpectInvalid(Sae("resources: {workers_per_trial: 2}\n"), "trains on one worker");
  ExpectInvalid(Sae("checkpoint: {every_steps: 10}\n"), "step checkpoints are not supported");
  ExpectInvalid(Sae("", "search:\n  method: grid\n  parameters:\n    expansion: [0]\n"),
                "model.expansion: must be >= 1");
}

}  // namespace
}  // namespace lattice::scheduler
