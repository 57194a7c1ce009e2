#include "common/item_id.h"

#include <gtest/gtest.h>

namespace lattice {
namespace {

TEST(ItemIdTest, TextOfStringsAndIntegersCompareAlike) {
  EXPECT_EQ(ItemIdText(nlohmann::json(42)), "42");
  EXPECT_EQ(ItemIdText(nlohmann::json("42")), "42");
  EXPECT_EQ(ItemIdText(nlohmann::json("doc-7")), "doc-7");
}

TEST(ItemIdTest, RowNumbersAreWholeNonNegativeDecimals) {
  EXPECT_EQ(ParseRowNumber("0"), 0);
  EXPECT_EQ(ParseRowNumber("9999"), 9999);
  for (const char* bad : {"", "-1", "4x", " 4", "+4", "1.5", "99999999999999999999"}) {
    EXPECT_FALSE(ParseRowNumber(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace lattice
