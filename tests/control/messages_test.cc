#include "control/messages.h"

#include <cmath>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

template <typename T>
T RoundTrip(const T& msg) {
  Message m = msg;
  auto decoded = DecodeMessage(TypeOf(m), EncodeMessage(m));
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_TRUE(std::holds_alternative<T>(decoded.value()));
  return std::get<T>(decoded.value());
}

TEST(MessagesTest, EveryMessageRoundTrips) {
  TrialId id{SweepId{3}, 17};
  auto assign = RoundTrip(AssignMsg{id, 2, {{"kind", "train"}, {"train", {{"lr", 0.001}}}}});
  EXPECT_EQ(assign.trial, id);
  EXPECT_EQ(assign.attempt, 2);
  EXPECT_DOUBLE_EQ(assign.config["train"]["lr"].get<double>(), 0.001);
  EXPECT_TRUE(assign.gang.empty());
  AssignMsg member{id, 2, {{"kind", "noop"}}};
  member.gang = {3, 1, 2};
  EXPECT_EQ(RoundTrip(member).gang, (std::vector<int>{3, 1, 2}));

  auto progress = RoundTrip(ProgressMsg{id, 1, 5, {{"val_accuracy", 0.75}}});
  EXPECT_EQ(progress.epoch, 5);
  EXPECT_DOUBLE_EQ(progress.metrics.at("val_accuracy"), 0.75);

  auto result = RoundTrip(ResultMsg{id, 1, StatusCode::kInvalidArgument, {{"x", 1.5}}, 3, "NaN loss"});
  EXPECT_EQ(result.code, StatusCode::kInvalidArgument);
  EXPECT_EQ(result.error, "NaN loss");
  EXPECT_EQ(result.epochs_done, 3);
  EXPECT_FALSE(result.preempted);
  ResultMsg stopped{id, 2, StatusCode::kCancelled, {}, 1, "preempted in epoch 2 at step 37", 4.5};
  stopped.preempted = true;
  auto preempted = RoundTrip(stopped);
  EXPECT_TRUE(preempted.preempted);
  EXPECT_EQ(preempted.code, StatusCode::kCancelled);
  EXPECT_EQ(EncodeMessage(result).find("preempted"), std::string::npos)
      << "only a preempted result carries the flag";

  auto reg = RoundTrip(RegisterMsg{"node1", 4, "cpu", 4321});
  EXPECT_EQ(reg.host, "node1");
  EXPECT_EQ(reg.threads, 4);
  EXPECT_EQ(reg.pid, 4321);

  HeartbeatMsg beat;
  beat.rss_bytes = 1234;
  auto idle = RoundTrip(beat);
  EXPECT_FALSE(idle.trial.has_value());
  EXPECT_EQ(idle.rss_bytes, 1234);
  EXPECT_EQ(idle.task_restarts, 0);
  EXPECT_EQ(idle.fault, "");
  beat.trial = id;
  beat.task_restarts = 2;
  beat.fault = "task process killed by signal 6 (Aborted) while running s1-t0";
  auto busy = RoundTrip(beat);
  ASSERT_TRUE(busy.trial.has_value());
  EXPECT_EQ(*busy.trial, id);
  EXPECT_EQ(busy.task_restarts, 2);
  EXPECT_EQ(busy.fault, beat.fault);

  EXPECT_EQ(RoundTrip(CancelMsg{id}).trial, id);
  RoundTrip(ShutdownMsg{});
  RoundTrip(DrainMsg{});
  EXPECT_EQ(TypeOf(DrainMsg{}), MessageType::kDrain);
}

// Usage fields (processed rows, device memory) round-trip, are left out when unset, and
// messages of a sender without them decode with 0.
TEST(MessagesTest, UsageFieldsAreOptionalOnTheWire) {
  TrialId id{SweepId{3}, 17};
  EXPECT_EQ(RoundTrip(ProgressMsg{id, 1, 2, {}, 1437}).processed, 1437);
  ResultMsg result{id, 1, StatusCode::kOk, {}, 2, "", 0.5};
  result.processed = 2000;
  EXPECT_EQ(RoundTrip(result).processed, 2000);
  RegisterMsg gpu{"node1", 4, "cuda:0", 4321, int64_t{80} << 30};
  EXPECT_EQ(RoundTrip(gpu).vram_total_bytes, int64_t{80} << 30);

  EXPECT_EQ(EncodeMessage(ProgressMsg{id, 1, 2, {}, 0}).find("processed"), std::string::npos);
  EXPECT_EQ(EncodeMessage(RegisterMsg{"node1", 4, "cpu", 1}).find("vram_total"), std::string::npos);
  auto old_progress = DecodeMessage(MessageType::kProgress,
                                    R"({"trial":"s1-t1","attempt":1,"epoch":3,"metrics":{}})");
  ASSERT_OK(old_progress);
  EXPECT_EQ(std::get<ProgressMsg>(*old_progress).processed, 0);
  auto old_result = DecodeMessage(
      MessageType::kResult,
      R"({"trial":"s1-t1","attempt":1,"code":0,"metrics":{},"epochs_done":0,"error":""})");
  ASSERT_OK(old_result);
  EXPECT_EQ(std::get<ResultMsg>(*old_result).processed, 0);
  auto old_register =
      DecodeMessage(MessageType::kRegister, R"({"host":"h","threads":1,"device":"cpu"})");
  ASSERT_OK(old_register);
  EXPECT_EQ(std::get<RegisterMsg>(*old_register).vram_total_bytes, 0);
}

TEST(MessagesTest, MalformedPayloadsAreErrorsNotCrashes) {
  EXPECT_FALSE(DecodeMessage(MessageType::kAssign, "{not json").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kAssign, R"({"trial":"bogus","attempt":1,"config":{}})").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kAssign,
                             R"({"trial":"s1-t1","attempt":1,"config":{},"gang":[1,"x"]})").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kAssign,
                             R"({"trial":"s1-t1","attempt":1,"config":{},"gang":[0,1]})").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kAssign,
                             R"({"trial":"s1-t1","attempt":1,"config":{},"gang":7})").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kResult, R"({"trial":"s1-t1","attempt":1})").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kResult,
                             R"({"trial":"s1-t1","attempt":1,"code":42,"metrics":{},"epochs_done":0,"error":""})")
                   .ok());
  EXPECT_FALSE(DecodeMessage(static_cast<MessageType>(99), "{}").ok());
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TEST(MessagesTest, VectorsTravelAsBinary) {
  VectorsMsg m{TrialId{SweepId{2}, 5}, 1, 1000, 3, 2, {1.5f, -2.0f, 0.0f, 3.25f, 1e-7f, -1e30f}, {}};
  Message msg = m;
  std::string wire = EncodeMessage(msg);
  auto decoded = DecodeMessage(MessageType::kVectors, wire);
  ASSERT_OK(decoded);
  const auto& back = std::get<VectorsMsg>(decoded.value());
  EXPECT_EQ(back.begin, 1000);
  EXPECT_EQ(back.rows, 3);
  EXPECT_EQ(back.dim, 2);
  EXPECT_EQ(back.data, m.data);
  // A truncated payload is an error, not a short read.
  EXPECT_FALSE(DecodeMessage(MessageType::kVectors, wire.substr(0, wire.size() - 4)).ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kVectors, "no header").ok());

  m.metadata = {R"({"label":1})", R"({"label":2})", R"({"path":"a b.png"})"};
  auto with_meta = DecodeMessage(MessageType::kVectors, EncodeMessage(Message(m)));
  ASSERT_OK(with_meta);
  EXPECT_EQ(std::get<VectorsMsg>(with_meta.value()).metadata, m.metadata);
  m.metadata.pop_back();  // 2 entries for 3 rows
  EXPECT_FALSE(DecodeMessage(MessageType::kVectors, EncodeMessage(Message(m))).ok());
}

TEST(MessagesTest, CheckpointBytesTravelUnchanged) {
  std::string bytes = "{\"format\":\"x\"}\n";
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>(i % 256));  // NULs, newlines
  auto pieces = SplitCheckpoint(TrialId{SweepId{4}, 11}, 2, 30, bytes);
  ASSERT_EQ(pieces.size(), 1u);
  const CheckpointMsg& m = pieces[0];
  std::string wire = EncodeMessage(Message(m));
  EXPECT_EQ(TypeOf(Message(m)), MessageType::kCheckpoint);
  auto decoded = DecodeMessage(MessageType::kCheckpoint, wire);
  ASSERT_OK(decoded);
  const auto& back = std::get<CheckpointMsg>(decoded.value());
  EXPECT_EQ(back.trial, m.trial);
  EXPECT_EQ(back.attempt, 2);
  EXPECT_EQ(back.step, 30);
  EXPECT_EQ(back.offset, 0);
  EXPECT_EQ(back.total, static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(back.bytes, bytes);
  EXPECT_FALSE(DecodeMessage(MessageType::kCheckpoint, wire.substr(0, wire.size() - 1)).ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kCheckpoint, "{\"trial\":\"s1-t0\"}").ok());
  CheckpointMsg overflowing = m;
  overflowing.total = 10;  // a piece larger than its checkpoint
  EXPECT_FALSE(DecodeMessage(MessageType::kCheckpoint, EncodeMessage(Message(overflowing))).ok());
}

TEST(MessagesTest, CheckpointsSplitIntoPiecesAndAssembleBack) {
  std::string bytes(10000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  const TrialId trial{SweepId{2}, 3};
  auto pieces = SplitCheckpoint(trial, 1, 50, bytes, 3000);
  ASSERT_EQ(pieces.size(), 4u);
  EXPECT_EQ(pieces[3].offset, 9000);
  EXPECT_EQ(pieces[3].bytes.size(), 1000u);
  EXPECT_TRUE(pieces[3].last());

  CheckpointAssembler assembler;
  for (size_t i = 0; i < pieces.size(); ++i) {
    // Through the wire encoding, as a worker receives them.
    auto decoded = DecodeMessage(MessageType::kCheckpoint, EncodeMessage(Message(pieces[i])));
    ASSERT_OK(decoded);
    auto whole = assembler.Add(std::get<CheckpointMsg>(std::move(decoded).value()));
    ASSERT_OK(whole);
    ASSERT_EQ(whole->has_value(), i + 1 == pieces.size()) << i;
    if (*whole) {
      EXPECT_EQ((*whole)->bytes, bytes);
      EXPECT_EQ((*whole)->step, 50);
      EXPECT_EQ((*whole)->total, 10000);
    }
  }
  // A piece that does not continue its checkpoint is an error, and what came before is dropped.
  ASSERT_OK(assembler.Add(pieces[0]));
  EXPECT_EQ(assembler.Add(pieces[2]).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(assembler.Add(pieces[1]).status().code(), StatusCode::kInvalidArgument)
      << "the checkpoint started over: piece 1 no longer continues it";
  // An empty checkpoint is one empty piece.
  auto empty = SplitCheckpoint(trial, 1, 0, "");
  ASSERT_EQ(empty.size(), 1u);
  auto whole = assembler.Add(empty[0]);
  ASSERT_OK(whole);
  EXPECT_TRUE(whole->has_value());
}

// Found by tests/fuzz/fuzz_control_messages (its corpus holds these inputs): rows x dim
// x 4 bytes wrapped around to 0, so a header-only message claimed 2^62 rows of no data.
TEST(MessagesTest, VectorsWhoseSizeOverflowsAreRejected) {
  const std::string header = R"({"trial":"s1-t0","attempt":1,"begin":0,"rows":4611686018427387904,"dim":4})";
  auto overflow = DecodeMessage(MessageType::kVectors, header + "\n");
  ASSERT_FALSE(overflow.ok());
  EXPECT_EQ(overflow.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(overflow.status().message().find("0 payload bytes for 4611686018427387904 x 4"),
            std::string::npos)
      << overflow.status().message();
  // Rows of dimension 0 carry nothing either.
  auto no_dim = DecodeMessage(
      MessageType::kVectors, R"({"trial":"s1-t0","attempt":1,"begin":0,"rows":3,"dim":0})" "\n");
  EXPECT_FALSE(no_dim.ok());
  // No rows at all is still a message (an empty shard).
  auto empty = DecodeMessage(
      MessageType::kVectors, R"({"trial":"s1-t0","attempt":1,"begin":0,"rows":0,"dim":0})" "\n");
  ASSERT_OK(empty);
  EXPECT_TRUE(std::get<VectorsMsg>(*empty).data.empty());
}

// Found by the fuzzer: nlohmann's get<int>() converted 4611686018.27 (undefined behaviour
// for a float out of range) and truncated 2^32 + 1 to 1. Integer fields must be integers
// within their type.
TEST(MessagesTest, IntegerFieldsMustBeIntegersInRange) {
  auto decode = [](MessageType type, const std::string& payload) {
    return DecodeMessage(type, payload);
  };
  const std::string progress = R"({"trial":"s1-t0","epoch":1,"metrics":{},"attempt":)";
  for (const char* bad : {"4611686018.27", "1e30", "4294967297", "-2147483649", "1.0", "\"1\""}) {
    auto m = decode(MessageType::kProgress, progress + bad + "}");
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("'attempt' must be an integer"), std::string::npos)
        << m.status().message();
  }
  ASSERT_OK(decode(MessageType::kProgress, progress + "2147483647}"));
  ASSERT_OK(decode(MessageType::kProgress, progress + "-2147483648}"));
  EXPECT_FALSE(decode(MessageType::kRegister,
                      R"({"host":"h","threads":1e3,"device":"cpu","pid":1})").ok());
  EXPECT_FALSE(decode(MessageType::kHeartbeat, R"({"rss_bytes":1.5})").ok());
  EXPECT_FALSE(decode(MessageType::kHeartbeat, R"({"rss_bytes":18446744073709551615})").ok());
  EXPECT_FALSE(decode(MessageType::kCheckpoint,
                      "{\"trial\":\"s1-t0\",\"attempt\":1,\"bytes\":-1}\n").ok());
  EXPECT_FALSE(decode(MessageType::kCheckpoint,
                      "{\"trial\":\"s1-t0\",\"attempt\":1,\"bytes\":1e300}\nx").ok());
  auto ok = decode(MessageType::kHeartbeat, R"({"rss_bytes":9223372036854775807,"task_restarts":2})");
  ASSERT_OK(ok);
  EXPECT_EQ(std::get<HeartbeatMsg>(*ok).rss_bytes, INT64_MAX);
}

// Found by the fuzzer: the assembler reserved a piece's `total` up front, so a piece
// claiming a 9 TB checkpoint was one 9 TB allocation (std::bad_alloc in the receiver).
TEST(MessagesTest, AssemblerDoesNotReserveABogusTotal) {
  auto decoded = DecodeMessage(
      MessageType::kCheckpoint,
      "{\"trial\":\"s1-t0\",\"attempt\":1,\"bytes\":1,\"offset\":0,\"total\":9000000000000}\nx");
  ASSERT_OK(decoded);
  CheckpointAssembler assembler;
  StatusOr<std::optional<CheckpointMsg>> added = Status::Internal("not called");
  EXPECT_NO_THROW(added = assembler.Add(std::get<CheckpointMsg>(std::move(decoded).value())));
  ASSERT_OK(added);
  EXPECT_FALSE(added->has_value());
}

// Found by tests/fuzz/fuzz_control_messages (encoder mode): a Result whose error text was
// not UTF-8 (a file name) made EncodeMessage throw, and a NaN metric was encoded as null,
// which the decoder refused, so the whole Result was lost.
TEST(MessagesTest, NonUtf8TextAndNonFiniteNumbersCrossTheWire) {
  const double nan = std::nan("");
  ResultMsg result{TrialId{SweepId{1}, 2}, 1, StatusCode::kInvalidArgument,
                   {{"val_loss", nan}, {"big", HUGE_VAL}, {"ok", 0.5}}, 3,
                   "corpus.dir: /data/\xff.png: cannot decode image", nan};
  std::string encoded;
  ASSERT_NO_THROW(encoded = EncodeMessage(result));
  auto decoded = DecodeMessage(MessageType::kResult, encoded);
  ASSERT_OK(decoded);
  const auto& got = std::get<ResultMsg>(*decoded);
  EXPECT_TRUE(std::isnan(got.metrics.at("val_loss")));
  EXPECT_TRUE(std::isnan(got.metrics.at("big")));  // not finite: NaN on arrival
  EXPECT_EQ(got.metrics.at("ok"), 0.5);
  EXPECT_TRUE(std::isnan(got.run_seconds));
  EXPECT_EQ(got.error, "corpus.dir: /data/\xEF\xBF\xBD.png: cannot decode image");
  EXPECT_EQ(EncodeMessage(got), encoded);

  auto progress = DecodeMessage(MessageType::kProgress,
                                EncodeMessage(ProgressMsg{TrialId{SweepId{1}, 2}, 1, 4, {{"loss", nan}}}));
  ASSERT_OK(progress);
  EXPECT_TRUE(std::isnan(std::get<ProgressMsg>(*progress).metrics.at("loss")));

  HeartbeatMsg beat;
  beat.rss_bytes = 1;
  beat.fault = "killed by signal 11 while reading \xc3";
  RegisterMsg reg{"host-\xfe", 1, "cpu", 7};
  std::string beat_bytes, reg_bytes;
  ASSERT_NO_THROW(beat_bytes = EncodeMessage(beat));
  ASSERT_NO_THROW(reg_bytes = EncodeMessage(reg));
  auto beat_back = DecodeMessage(MessageType::kHeartbeat, beat_bytes);
  auto reg_back = DecodeMessage(MessageType::kRegister, reg_bytes);
  ASSERT_OK(beat_back);
  ASSERT_OK(reg_back);
  EXPECT_EQ(std::get<HeartbeatMsg>(*beat_back).fault, "killed by signal 11 while reading \xEF\xBF\xBD");
  EXPECT_EQ(std::get<RegisterMsg>(*reg_back).host, "host-\xEF\xBF\xBD");
  // Metrics must still be an object of numbers.
  EXPECT_FALSE(DecodeMessage(MessageType::kProgress,
                             R"({"trial":"s1-t0","attempt":1,"epoch":1,"metrics":[["a",1]]})").ok());
  EXPECT_FALSE(DecodeMessage(MessageType::kProgress,
                             R"({"trial":"s1-t0","attempt":1,"epoch":1,"metrics":{"a":"1"}})").ok());
}

}  // namespace
}  // namespace lattice
