// FakeChannel: an in-memory ControlChannel for driving the coordinator (or a worker loop)
// without MPI. The test plays the other ranks: Deliver() queues a message "from" a rank
// for the next Poll(); every Send() is recorded for the test to inspect (TakeSent).
// Every message crosses the real wire encoding (EncodeMessage / DecodeMessage) both
// ways, so a message that would not survive MPI does not survive here either.
//
// Header-only: link lattice_control. Not thread-safe (one owner thread, like the MPI one).
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "control/channel.h"

namespace lattice::testutil {

class FakeChannel final : public ControlChannel {
 public:
  // `size` ranks (coordinator + size-1 workers); this end is `self`.
  explicit FakeChannel(int size, WorkerRank self = kCoordinatorRank) : size_(size), self_(self) {}

  WorkerRank rank() const override { return self_; }
  int size() const override { return size_; }

  Status Send(WorkerRank dest, const Message& m) override {
    if (dest.value < 0 || dest.value >= size_) {
      return Status::InvalidArgument("send to rank " + std::to_string(dest.value) + " of " +
                                     std::to_string(size_));
    }
    if (fail_sends) return Status::Unavailable("fake send failure");
    auto decoded = DecodeMessage(TypeOf(m), EncodeMessage(m));
    if (!decoded.ok()) return decoded.status().WithContext("fake channel: message does not round-trip");
    sent_.emplace_back(dest, std::move(decoded).value());
    return Status::Ok();
  }

  std::optional<StatusOr<Envelope>> Poll() override {
    if (inbox_.empty()) return std::nullopt;
    auto [from, type, payload] = std::move(inbox_.front());
    inbox_.pop_front();
    auto decoded = DecodeMessage(type, payload);
    if (!decoded.ok()) return StatusOr<Envelope>(decoded.status());
    return StatusOr<Envelope>(Envelope{from, std::move(decoded).value()});
  }

  // --- the test's side ---------------------------------------------------------------
  // Queues `m` from rank `from` for the next Poll.
  void Deliver(WorkerRank from, const Message& m) {
    inbox_.push_back({from, TypeOf(m), EncodeMessage(m)});
  }
  // Queues raw bytes (e.g. a malformed payload) from `from`.
  void DeliverRaw(WorkerRank from, MessageType type, std::string payload) {
    inbox_.push_back({from, type, std::move(payload)});
  }
  size_t pending() const { return inbox_.size(); }

  // Everything sent since the last call, in order.
  std::vector<std::pair<WorkerRank, Message>> TakeSent() {
    std::vector<std::pair<WorkerRank, Message>> out;
    out.swap(sent_);
    return out;
  }
  // The messages of type T sent since the last TakeSent (others stay recorded).
  template <typename T>
  std::vector<std::pair<WorkerRank, T>> TakeSentOf() {
    std::vector<std::pair<WorkerRank, T>> out;
    std::vector<std::pair<WorkerRank, Message>> rest;
    for (auto& [rank, m] : sent_) {
      if (auto* t = std::get_if<T>(&m)) {
        out.emplace_back(rank, std::move(*t));
      } else {
        rest.emplace_back(rank, std::move(m));
      }
    }
    sent_.swap(rest);
    return out;
  }

  // When true, Send fails with Unavailable (a broken transport).
  bool fail_sends = false;

 private:
  struct Raw {
    WorkerRank from;
    MessageType type;
    std::string payload;
  };
  const int size_;
  const WorkerRank self_;
  std::deque<Raw> inbox_;
  std::vector<std::pair<WorkerRank, Message>> sent_;
};

}  // namespace lattice::testutil
