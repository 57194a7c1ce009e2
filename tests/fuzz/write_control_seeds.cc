// Writes the seed corpus of fuzz_control_messages: one file per message, byte 0 the
// MessageType, then the payload exactly as EncodeMessage makes it.
//   build-fuzz/write_control_seeds tests/fuzz/corpus/fuzz_control_messages
// (Run by hand when the encoding changes; the seeds are committed.)
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "control/messages.h"

namespace {

using lattice::Message;

void Write(const std::string& dir, const std::string& name, const Message& m) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.put(static_cast<char>(lattice::TypeOf(m)));
  out << lattice::EncodeMessage(m);
}

void WriteRaw(const std::string& dir, const std::string& name, lattice::MessageType type,
              const std::string& payload) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.put(static_cast<char>(type));
  out << payload;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const lattice::TrialId id{lattice::SweepId{3}, 17};
  Write(dir, "register", lattice::RegisterMsg{"node1", 4, "cuda:0", 4321});
  Write(dir, "assign", lattice::AssignMsg{id, 2, {{"kind", "train"}, {"train", {{"lr", 1e-3}}}}});
  Write(dir, "progress", lattice::ProgressMsg{id, 1, 5, {{"val_accuracy", 0.75}, {"loss", 0.5}}});
  Write(dir, "result", lattice::ResultMsg{id, 1, lattice::StatusCode::kInvalidArgument,
                                          {{"x", 1.5}}, 3, "NaN loss", 12.5});
  lattice::HeartbeatMsg beat;
  beat.trial = id;
  beat.rss_bytes = 1 << 20;
  beat.vram_bytes = 1 << 30;
  beat.task_restarts = 2;
  beat.fault = "task process killed by signal 11 (Segmentation fault) while running s3-t17";
  Write(dir, "heartbeat", beat);
  Write(dir, "heartbeat-empty", lattice::HeartbeatMsg{});
  Write(dir, "cancel", lattice::CancelMsg{id});
  Write(dir, "shutdown", lattice::ShutdownMsg{});
  Write(dir, "vectors", lattice::VectorsMsg{id, 1, 100, 2, 3, {1, 2, 3, 4, 5, 6},
                                            {"{\"path\":\"a.png\"}", "{\"label\":3}"}});
  Write(dir, "vectors-no-metadata", lattice::VectorsMsg{id, 1, 0, 1, 2, {0.5f, -0.5f}, {}});
  Write(dir, "checkpoint", lattice::CheckpointMsg{id, 1, std::string("\x00\x01weights", 9), 0, 0, 9});
  Write(dir, "checkpoint-piece", lattice::CheckpointMsg{id, 2, "abcd", 40, 4, 12});
  Write(dir, "result-nan-not-utf8",
        lattice::ResultMsg{id, 1, lattice::StatusCode::kInvalidArgument,
                           {{"val_loss", std::nan("")}, {"ok", 0.5}}, 3,
                           "corpus.dir: /data/\xff.png: cannot decode image", 1.5});
  // Hand-written variants the encoder never makes.
  using lattice::MessageType;
  WriteRaw(dir, "raw-register-floats", MessageType::kRegister,
           R"({"host":"h","threads":1e3,"device":"cpu","pid":-1})");
  WriteRaw(dir, "raw-result-bad-code", MessageType::kResult,
           R"({"trial":"s1-t0","attempt":1,"code":99,"metrics":{},"epochs_done":0,"error":""})");
  WriteRaw(dir, "raw-progress-inf", MessageType::kProgress,
           R"({"trial":"s1-t0","attempt":1,"epoch":1,"metrics":{"loss":1e400}})");
  WriteRaw(dir, "raw-vectors-overflow", MessageType::kVectors,
           "{\"trial\":\"s1-t0\",\"attempt\":1,\"begin\":0,\"rows\":4611686018427387904,\"dim\":4}\n");
  WriteRaw(dir, "raw-checkpoint-huge-total", MessageType::kCheckpoint,
           "{\"trial\":\"s1-t0\",\"attempt\":1,\"bytes\":1,\"offset\":0,\"total\":9000000000000}\nx");
  WriteRaw(dir, "raw-vectors-float-attempt", MessageType::kVectors,
           "{\"trial\":\"s1-t0\",\"attempt\":4611686018.27387904,\"dim\":4}\n");
  WriteRaw(dir, "raw-unknown-type", static_cast<MessageType>(10), "{}");
  return 0;
}
