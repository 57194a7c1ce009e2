#include "worker/device.h"

#include <gtest/gtest.h>

namespace lattice {
namespace {

// Runs in both builds: without a GPU (or in the CPU build) a worker runs on the CPU.
TEST(DeviceTest, DiscoversCpuOrGpuConsistently) {
  DeviceInfo d = DiscoverDevice(1);
  if (d.kind == "cpu") {
    EXPECT_EQ(d.index, -1);
    EXPECT_EQ(d.Describe(), "cpu");
    EXPECT_EQ(DeviceMemoryInUse(d), 0);
  } else {
    ASSERT_EQ(d.kind, "cuda");
    EXPECT_GE(d.index, 0);
    EXPECT_GT(d.total_bytes, 0);
    EXPECT_NE(d.Describe().find("cuda:"), std::string::npos);
    EXPECT_LE(DeviceMemoryInUse(d), d.total_bytes);
  }
}

}  // namespace
}  // namespace lattice
