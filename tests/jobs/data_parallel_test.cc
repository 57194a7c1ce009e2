// DataParallel's logic without a cluster: a fake Communicator stands for member `rank` of
// `size`, its peers' contributions scripted (the real transports are tests/comm's and the
// 2-worker equivalence is tests/integration/gang_test.cc).
#include "jobs/internal/data_parallel.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <vector>

#include "jobs/internal/flat_optimizer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs::internal {
namespace {

// Member `rank` of `size`; Allgather fills member m's part with `peer(m, send)` for the
// others. Counts the calls and offers a workspace when `workspace` is set.
class FakeGang final : public comm::Communicator {
 public:
  FakeGang(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "fake"; }
  Status Allreduce(float*, size_t, comm::ReduceOp) override { return Status::Ok(); }
  Status Broadcast(void*, size_t, int) override { return Status::Ok(); }
  Status Allgather(const float* send, size_t count, float* recv) override {
    ++allgathers;
    for (int m = 0; m < size_; ++m) {
      std::vector<float> part(send, send + count);
      if (m != rank_) part = peer(m, part);
      std::memcpy(recv + static_cast<size_t>(m) * count, part.data(), count * sizeof(float));
    }
    return Status::Ok();
  }
  Status ReduceScatter(float*, size_t, comm::ReduceOp) override { return Status::Ok(); }
  Status Barrier() override { return Status::Ok(); }
  float* Workspace(size_t count) override {
    if (!workspace) return nullptr;
    memory.emplace_back(count, 7.0f);  // not zero: FlatParameters must zero it
    return memory.back().data();
  }

  std::function<std::vector<float>(int, const std::vector<float>&)> peer;
  int allgathers = 0;
  bool workspace = false;
  std::deque<std::vector<float>> memory;  // the regions handed out, in order

 private:
  int rank_, size_;
};

TEST(DataParallelTest, EvalRowsSplitEveryRowOnceInMemberOrder) {
  for (int64_t n : {0, 1, 2, 10, 601}) {
    int64_t next = 0;
    for (int m = 0; m < 3; ++m) {
      FakeGang gang(m, 3);
      DataParallel dp(&gang, nullptr);
      const auto rows = dp.EvalRows(n);
      EXPECT_EQ(rows.first, next) << "n " << n << " member " << m;
      EXPECT_LE(rows.second - rows.first, n / 3 + 1);
      next = rows.second;
    }
    EXPECT_EQ(next, n);
  }
  DataParallel one(nullptr, nullptr);  // one worker: every row
  EXPECT_EQ(one.EvalRows(601), (std::pair<int64_t, int64_t>{0, 601}));
}

TEST(DataParallelTest, SumOverMembersAddsDoublesExactlyAndInPieces) {
  FakeGang gang(1, 3);
  // Member m holds value * (m + 1) + a part below float precision.
  gang.peer = [](int m, const std::vector<float>& mine) {
    std::vector<float> out(mine.size());
    for (size_t i = 0; i < mine.size(); i += 2) {
      double v = 0;
      std::memcpy(&v, mine.data() + i, sizeof(double));
      v = (v - 1e-9) / 2 * (m + 1) + 1e-9;
      std::memcpy(out.data() + i, &v, sizeof(double));
    }
    return out;
  };
  DataParallel dp(&gang, nullptr);
  std::vector<double> values(5000);  // more than one piece (4096)
  for (size_t i = 0; i < values.size(); ++i) values[i] = 2.0 * static_cast<double>(i) + 1e-9;
  ASSERT_OK(dp.SumOverMembers(values.data(), values.size()));
  EXPECT_EQ(gang.allgathers, 2);
  for (size_t i = 0; i < values.size(); ++i) {
    // i * (1 + 2 + 3) + 3e-9: the 1e-9 parts survive (float would drop them).
    EXPECT_NEAR(values[i], 6.0 * static_cast<double>(i) + 3e-9, 1e-10) << i;
  }
  DataParallel one(nullptr, nullptr);
  double unchanged = 0.25;
  ASSERT_OK(one.SumOverMembers(&unchanged, 1));
  EXPECT_EQ(unchanged, 0.25);
}

TEST(DataParallelTest, BuffersLiveInTheGangsWorkspacePaddedToEqualShards) {
  torch::manual_seed(3);
  torch::nn::Linear layer(12, 5);  // 65 parameters: 3 shards of 22, one padding float
  FakeGang gang(0, 3);
  gang.workspace = true;
  DataParallel dp(&gang, nullptr);
  FlatParameters flat(layer->parameters(), dp.BufferMemory());
  ASSERT_EQ(gang.memory.size(), 2u);  // the gradients, then the parameters
  ASSERT_EQ(gang.memory[0].size(), 66u);
  EXPECT_TRUE(flat.borrowed());
  EXPECT_EQ(flat.numel(), 65);
  EXPECT_EQ(flat.grads().data_ptr<float>(), gang.memory[0].data());
  EXPECT_EQ(flat.params().data_ptr<float>(), gang.memory[1].data());
  EXPECT_EQ(flat.padded_grads().abs().sum().item<double>(), 0);  // zeroed
  EXPECT_EQ(flat.padded_params()[65].item<float>(), 0);           // padding
  EXPECT_TRUE(flat.params().narrow(0, 0, 60).equal(layer->weight.flatten()));
  torch::nn::functional::cross_entropy(layer->forward(torch::randn({4, 12})),
                                       torch::randint(0, 5, {4}, torch::kLong))
      .backward();
  double in_workspace = 0;
  for (float g : gang.memory[0]) in_workspace += std::abs(g);
  EXPECT_GT(in_workspace, 0);  // backward wrote the shared memory
  EXPECT_EQ(layer->parameters()[0].grad().data_ptr<float>(), gang.memory[0].data());

  DataParallel one(nullptr, nullptr);  // one worker: its own memory, no padding
  torch::nn::Linear other(12, 5);
  FlatParameters own(other->parameters(), one.BufferMemory());
  EXPECT_FALSE(own.borrowed());
  EXPECT_EQ(own.padded_params().numel(), 65);
}

// A workspace too small for the parameters too: the gradients keep it, the optimizer step
// is not sharded.
TEST(DataParallelTest, NoRoomForTheParametersMeansAReplicatedStep) {
  torch::nn::Linear layer(12, 5);
  FakeGang gang(1, 2);
  gang.workspace = true;
  DataParallel dp(&gang, nullptr);
  FlatMemory memory = dp.BufferMemory();
  int calls = 0;
  memory.allocate = [&, inner = memory.allocate](int64_t n) {
    return ++calls == 1 ? inner(n) : nullptr;
  };
  FlatParameters flat(layer->parameters(), memory);
  EXPECT_FALSE(flat.borrowed());
  EXPECT_EQ(flat.grads().data_ptr<float>(), gang.memory[0].data());
  FlatOptimizer optimizer(flat, {});
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches = {
      {torch::zeros({4, 12}), torch::zeros({4}, torch::kLong)}};
  ASSERT_OK(dp.Start({}, flat, optimizer, batches, {}, 1));
  EXPECT_FALSE(dp.sharded());
  EXPECT_EQ(batches[0].first.size(0), 2);  // member 1's half
}

}  // namespace
}  // namespace lattice::jobs::internal
