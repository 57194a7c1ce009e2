#include "common/status.h"

#include <gtest/gtest.h>

#include "common/ids.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Status Quarter(int x, int* out) {
  LATTICE_ASSIGN_OR_RETURN(int h, Half(x));
  LATTICE_ASSIGN_OR_RETURN(*out, Half(h));
  return Status::Ok();
}

TEST(StatusTest, PropagatesErrorsWithContext) {
  int out = 0;
  ASSERT_OK(Quarter(8, &out));
  EXPECT_EQ(out, 2);
  Status s = Quarter(6, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.WithContext("spec").ToString(), "InvalidArgument: spec: odd: 3");
}

TEST(IdsTest, RoundTripAndOrder) {
  TrialId t{SweepId{7}, 12};
  EXPECT_EQ(t.ToString(), "s7-t12");
  auto parsed = TrialId::Parse("s7-t12");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, t);
  EXPECT_FALSE(TrialId::Parse("s7-x12").has_value());
  EXPECT_FALSE(SweepId::Parse("sx").has_value());
  EXPECT_EQ(SweepId::Parse("9")->value, 9u);
  // Keys sort numerically.
  EXPECT_LT(SweepId{9}.Key(), SweepId{10}.Key());
  EXPECT_LT((TrialId{SweepId{1}, 9}.Key()), (TrialId{SweepId{1}, 10}.Key()));
}

}  // namespace
}  // namespace lattice
