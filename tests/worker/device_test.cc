#include "worker/device.h"

#include <gtest/gtest.h>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

// Runs in both builds. The CPU build always runs on the CPU; a CUDA build either finds a
// GPU or says that it has none (a worker then exits instead of silently using the CPU).
TEST(DeviceTest, DiscoversCpuOrGpuConsistently) {
  StatusOr<DeviceInfo> found = DiscoverDevice(1);
  if (!found.ok()) {
    EXPECT_EQ(found.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(found.status().message().find("sees no GPU"), std::string::npos);
    GTEST_SKIP() << "CUDA build without a GPU: " << found.status().message();
  }
  const DeviceInfo& d = *found;
  if (d.kind == "cpu") {
    EXPECT_EQ(d.index, -1);
    EXPECT_EQ(d.Describe(), "cpu");
    EXPECT_EQ(d.TorchDevice(), "cpu");
    EXPECT_EQ(DeviceMemoryInUse(d), 0);
    ResetPeakDeviceMemory(d);
    EXPECT_EQ(PeakDeviceMemory(d), 0);
  } else {
    ASSERT_EQ(d.kind, "cuda");
    EXPECT_GE(d.index, 0);
    EXPECT_GT(d.total_bytes, 0);
    EXPECT_NE(d.Describe().find("cuda:"), std::string::npos);
    EXPECT_EQ(d.TorchDevice(), "cuda:" + std::to_string(d.index));
    EXPECT_LE(DeviceMemoryInUse(d), d.total_bytes);
    ResetPeakDeviceMemory(d);
    EXPECT_GE(PeakDeviceMemory(d), 0);
  }
}

}  // namespace
}  // namespace lattice
