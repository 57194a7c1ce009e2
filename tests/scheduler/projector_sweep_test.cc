// A projector grid (jobs/projector_config.h): one sweep over model.type compares the four
// projectors with one base config, and the sweep metric must be an alignment metric.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "scheduler/sweep_spec.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::scheduler {
namespace {

struct Files {
  testutil::TempDir dir;
  std::string tokens, targets;
  Files() : tokens(dir.Join("tokens.npy")), targets(dir.Join("targets.npy")) {
    jobs::testing::WriteNpy(tokens, "<f4", "(20, 4, 3)", std::vector<float>(20 * 4 * 3, 0.5f));
    jobs::testing::WriteNpy(targets, "<f4", "(20, 8)", std::vector<float>(20 * 8, 0.25f));
  }
};

std::string Spec(const Files& f, const std::string& metric) {
  return "name: projector-grid\n"
         "kind: train\n"
         "alignment: siglip\n"
         "dataset: {features: " + f.tokens + ", targets: " + f.targets + "}\n"
         "model: {queries: 4, depth: 1, width: 16, heads: 4}\n"
         "train: {epochs: 2, batch_size: 8}\n"
         "search:\n"
         "  method: grid\n"
         "  metric: {name: " + metric + ", goal: maximize}\n"
         "  parameters:\n"
         "    model.type: [linear, mlp2, c_abstractor, perceiver]\n"
         "    lr: [1.0e-3, 3.0e-3]\n";
}

TEST(ProjectorSweepTest, OneGridOverModelTypeComparesTheFourProjectors) {
  Files f;
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Spec(f, "siglip_score")));
  ASSERT_EQ(spec.trial_configs.size(), 8u);
  std::vector<std::string> types;
  for (const auto& c : spec.trial_configs) types.push_back(c["model"]["type"].get<std::string>());
  for (const char* type : {"linear", "mlp2", "c_abstractor", "perceiver"}) {
    EXPECT_EQ(std::count(types.begin(), types.end(), type), 2) << type;
  }
  EXPECT_EQ(spec.trial_configs[0]["model"]["queries"], 4);  // the base keys stay in every trial
}

TEST(ProjectorSweepTest, AClassifierMetricIsRefusedListingTheAlignmentOnes) {
  Files f;
  auto spec = ParseSweepSpec(Spec(f, "val_accuracy"));
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("\"val_accuracy\" is not a metric of a train job"),
            std::string::npos)
      << spec.status().message();
  EXPECT_NE(spec.status().message().find("siglip_score"), std::string::npos);
}

TEST(ProjectorSweepTest, AGridPointWithTwoDimensionalFeaturesIsRefusedNamingIt) {
  Files f;
  const std::string flat = f.dir.Join("flat.npy");
  jobs::testing::WriteNpy(flat, "<f4", "(20, 12)", std::vector<float>(20 * 12, 0.5f));
  std::string text = Spec(f, "siglip_score");
  text.replace(text.find(f.tokens), f.tokens.size(), flat);
  auto spec = ParseSweepSpec(text);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("is 2-D [20, 12]: a projector (model.type linear) needs "
                                         "token sequences"),
            std::string::npos)
      << spec.status().message();
}

}  // namespace
}  // namespace lattice::scheduler
