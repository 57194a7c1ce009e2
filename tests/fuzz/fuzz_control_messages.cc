// Fuzz target: the control-protocol codec (control/messages.h): the decoder reads what
// the other side of an MPI / socket control channel sent; the encoder must be able to
// send whatever a worker or the coordinator puts into a message.
//
// Input, byte 0 < 128 (the decoder): byte 0 picks the MessageType (value % 11: 1..9 are the
// real types, 0 and 10 unknown ones), the rest is the payload, as the channel hands it to
// DecodeMessage. Checks, besides ASan / UBSan:
//   * a decoded message has the type that was asked for;
//   * the encoding is a fixed point: Encode(Decode(Encode(m))) == Encode(m), i.e. every
//     message the decoder accepts re-encodes into one it accepts again, unchanged;
//   * a Vectors message holds rows x dim floats and rows metadata entries (or none);
//   * a Checkpoint piece goes through a CheckpointAssembler as the coordinator's receive
//     loop would, and its bytes split by SplitCheckpoint and reassembled come back whole.
// Input, byte 0 >= 128 (the encoder): the rest builds a message field by field
// (FuzzedDataProvider: any bytes in strings, any double bit pattern in metrics, NaN and
// infinities included). Checks: EncodeMessage does not throw, its output decodes, and
// from the re-encoded message on, the decoder's fixed point holds.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <variant>

#include <fuzzer/FuzzedDataProvider.h>

#include "control/messages.h"

namespace {

void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_control_messages: %s: %s\n", what, detail.c_str());
  std::abort();
}

void CheckCheckpoint(const lattice::CheckpointMsg& piece, uint8_t selector) {
  // As received: the first piece of its checkpoint (or all of it).
  lattice::CheckpointAssembler assembler;
  auto added = assembler.Add(piece);
  if (added.ok() && added->has_value() && (*added)->bytes != piece.bytes) {
    Fail("assembler", "a whole one-piece checkpoint came back changed");
  }
  // Split into pieces of 1..8 bytes and put back together.
  const int64_t piece_bytes = 1 + selector % 8;
  auto pieces = lattice::SplitCheckpoint(piece.trial, piece.attempt, piece.step, piece.bytes,
                                         piece_bytes);
  lattice::CheckpointAssembler again;
  std::string whole;
  bool done = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    auto r = again.Add(pieces[i]);
    if (!r.ok()) Fail("split/assemble", r.status().ToString());
    if (r->has_value()) {
      if (i + 1 != pieces.size()) Fail("split/assemble", "whole before the last piece");
      whole = (*r)->bytes;
      done = true;
    }
  }
  if (!done || whole != piece.bytes) Fail("split/assemble", "bytes changed");
}

double AnyDouble(FuzzedDataProvider& p) {
  const uint64_t bits = p.ConsumeIntegral<uint64_t>();
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::map<std::string, double> Metrics(FuzzedDataProvider& p) {
  std::map<std::string, double> m;
  for (int n = p.ConsumeIntegralInRange(0, 4); n > 0; --n) {
    m[p.ConsumeRandomLengthString(16)] = AnyDouble(p);
  }
  return m;
}

// A message as a worker or the coordinator could build it. Trial ids are those the
// coordinator makes (sweep numbers below 10^18: TrialId::Parse reads at most 18 digits).
lattice::Message Build(FuzzedDataProvider& p) {
  const lattice::TrialId trial{lattice::SweepId{p.ConsumeIntegralInRange<uint64_t>(0, 999999999999999999ULL)},
                               p.ConsumeIntegral<uint32_t>()};
  const int attempt = p.ConsumeIntegral<int>();
  switch (p.ConsumeIntegralInRange(0, 8)) {
    case 0:
      return lattice::RegisterMsg{p.ConsumeRandomLengthString(64), p.ConsumeIntegral<int>(),
                                  p.ConsumeRandomLengthString(16), p.ConsumeIntegral<int>()};
    case 1: {
      nlohmann::json config = {{"kind", p.ConsumeRandomLengthString(16)},
                               {"train", {{"lr", AnyDouble(p)}}}};
      return lattice::AssignMsg{trial, attempt, config};
    }
    case 2:
      return lattice::ProgressMsg{trial, attempt, p.ConsumeIntegral<int>(), Metrics(p)};
    case 3: {
      lattice::ResultMsg r;
      r.trial = trial;
      r.attempt = attempt;
      r.code = static_cast<lattice::StatusCode>(
          p.ConsumeIntegralInRange<int>(0, static_cast<int>(lattice::StatusCode::kDataLoss)));
      r.metrics = Metrics(p);
      r.epochs_done = p.ConsumeIntegral<int>();
      r.error = p.ConsumeRandomLengthString(128);
      r.run_seconds = AnyDouble(p);
      return r;
    }
    case 4: {
      lattice::HeartbeatMsg h;
      if (p.ConsumeBool()) h.trial = trial;
      h.rss_bytes = p.ConsumeIntegral<int64_t>();
      h.vram_bytes = p.ConsumeIntegral<int64_t>();
      h.task_restarts = p.ConsumeIntegral<int>();
      h.fault = p.ConsumeRandomLengthString(128);
      return h;
    }
    case 5:
      return lattice::CancelMsg{trial};
    case 6:
      return lattice::ShutdownMsg{};
    case 7: {
      lattice::VectorsMsg v;
      v.trial = trial;
      v.attempt = attempt;
      v.begin = p.ConsumeIntegral<int64_t>();
      v.rows = p.ConsumeIntegralInRange<int64_t>(0, 4);
      v.dim = p.ConsumeIntegralInRange<int>(v.rows > 0 ? 1 : 0, 4);
      for (int64_t i = 0; i < v.rows * v.dim; ++i) v.data.push_back(static_cast<float>(AnyDouble(p)));
      if (p.ConsumeBool()) {
        for (int64_t i = 0; i < v.rows; ++i) v.metadata.push_back(p.ConsumeRandomLengthString(32));
      }
      return v;
    }
    default: {
      lattice::CheckpointMsg c;
      c.trial = trial;
      c.attempt = attempt;
      c.bytes = p.ConsumeRandomLengthString(64);
      c.step = p.ConsumeIntegralInRange<int64_t>(0, INT64_MAX);
      c.offset = p.ConsumeIntegralInRange<int64_t>(0, INT64_MAX / 2);
      c.total = c.offset + static_cast<int64_t>(c.bytes.size()) +
                p.ConsumeIntegralInRange<int64_t>(0, INT64_MAX / 4);
      return c;
    }
  }
}

void CheckEncoder(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  const lattice::Message m = Build(p);
  const lattice::MessageType type = lattice::TypeOf(m);
  const std::string encoded = lattice::EncodeMessage(m);  // must not throw
  auto decoded = lattice::DecodeMessage(type, encoded);
  if (!decoded.ok()) {
    Fail("decoding an encoded message", decoded.status().ToString() + " for " + encoded.substr(0, 300));
  }
  // From there on the decoder's fixed point holds. (Not already for `encoded`: text that
  // is not UTF-8 is sent with U+FFFD, which can change the order of metric names.)
  const std::string again = lattice::EncodeMessage(*decoded);
  auto decoded_again = lattice::DecodeMessage(type, again);
  if (!decoded_again.ok()) Fail("decoding a re-encoded message", decoded_again.status().ToString());
  if (lattice::EncodeMessage(*decoded_again) != again) Fail("encoder fixed point", again.substr(0, 300));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] >= 128) {
    CheckEncoder(data + 1, size - 1);
    return 0;
  }
  const auto type = static_cast<lattice::MessageType>(data[0] % 11);
  const std::string payload(reinterpret_cast<const char*>(data + 1), size - 1);
  auto decoded = lattice::DecodeMessage(type, payload);
  if (!decoded.ok()) return 0;
  const lattice::Message& m = *decoded;
  if (lattice::TypeOf(m) != type) Fail("type", "decoded a different message type");

  const std::string encoded = lattice::EncodeMessage(m);
  auto again = lattice::DecodeMessage(type, encoded);
  if (!again.ok()) {
    Fail("re-decode", again.status().ToString() + " for " + encoded.substr(0, 200));
  }
  const std::string reencoded = lattice::EncodeMessage(*again);
  if (reencoded != encoded) {
    Fail("fixed point", encoded.substr(0, 200) + " != " + reencoded.substr(0, 200));
  }

  if (const auto* v = std::get_if<lattice::VectorsMsg>(&m)) {
    const unsigned __int128 floats =
        static_cast<unsigned __int128>(v->rows < 0 ? 0 : v->rows) * (v->dim < 0 ? 0 : v->dim);
    if (v->rows < 0 || v->dim < 0 || floats != v->data.size()) {
      Fail("vectors", std::to_string(v->data.size()) + " floats for " + std::to_string(v->rows) +
                          " x " + std::to_string(v->dim));
    }
    if (!v->metadata.empty() && static_cast<int64_t>(v->metadata.size()) != v->rows) {
      Fail("vectors", "metadata entries != rows");
    }
  }
  if (const auto* c = std::get_if<lattice::CheckpointMsg>(&m)) CheckCheckpoint(*c, data[0]);
  return 0;
}
