#include "jobs/data_roots.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "jobs/dataset.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

// Issue 9: a spec could read /etc/passwd or the coordinator's token as a dataset, and the
// trial error showed the file's first bytes.
class DataRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Join("data"));
    std::filesystem::create_directories(dir_.Join("state"));
    std::ofstream(dir_.Join("data/x.csv")) << "1,2,0\n3,4,1\n";
    std::ofstream(dir_.Join("state/token")) << "0123456789abcdef0123\n";
    ASSERT_OK(SetDataRoots({dir_.path()}, {dir_.Join("state")}));
  }
  void TearDown() override { ASSERT_OK(SetDataRoots({"/"}, {})); }

  testutil::TempDir dir_;
};

TEST_F(DataRootsTest, OnlyFilesUnderTheRootsOutsideTheDataDirAreRead) {
  EXPECT_OK(CheckDataPath(dir_.Join("data/x.csv")));
  auto part = LoadCsv(dir_.Join("data/x.csv"), -1, false, 0);
  EXPECT_OK(part.status());

  for (const std::string& path : {std::string("/etc/passwd"), dir_.Join("state/token"),
                                  dir_.Join("data/../state/token")}) {
    const Status s = CheckDataPath(path);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << path;
    EXPECT_NE(s.message().find("outside the allowed data roots"), std::string::npos);
    auto loaded = LoadCsv(path, -1, false, 0);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().message().find("0123456789"), std::string::npos);
    EXPECT_EQ(loaded.status().message().find("root:"), std::string::npos);
  }
  // A symlink inside a root that points out of it is resolved first.
  ASSERT_EQ(symlink("/etc/passwd", dir_.Join("data/link.csv").c_str()), 0);
  EXPECT_FALSE(CheckDataPath(dir_.Join("data/link.csv")).ok());
}

TEST_F(DataRootsTest, AMissingRootIsAnError) {
  EXPECT_EQ(SetDataRoots({dir_.Join("nope")}, {}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lattice::jobs
