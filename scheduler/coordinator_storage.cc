// Coordinator: disk full and I/O errors — the space reserve, the held commit and what
// /healthz says about the data directory (see coordinator.h and ARCHITECTURE.md,
// "Disk full").
#include <algorithm>
#include <cstdio>

#include "scheduler/coordinator.h"

namespace lattice {

void Coordinator::Hold(Pending p, const Status& error) {
  // Nothing of this iteration may be acted on (it is not durable), and nothing of it may
  // be lost (results, checkpoints). Hold it and commit it again until it goes through.
  std::fprintf(stderr,
               "coordinator: state store commit failed: %s; holding it (%s) and retrying; "
               "changes are refused and no trial is placed until it is written\n",
               error.ToString().c_str(), FormatBytes(p.batch.bytes()).c_str());
  p.batch.AppendEvent("commit_held", {{"error", error.message()}, {"bytes", p.batch.bytes()}});
  held_error_ = error;
  held_since_ms_ = Now();
  held_retry_ms_ = held_since_ms_ + 250;
  held_failures_ = 1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_reason_ = error.message();
    held_bytes_ = p.batch.bytes();
    held_view_since_ms_ = held_since_ms_;
  }
  held_ = std::move(p);
}

void Coordinator::DropHeldCommit() {
  if (!held_) return;
  // Never committed: nothing of it happened (Recover re-queues the trials it assigned or
  // finished); its commands learn that it did not.
  std::fprintf(stderr, "coordinator: stopping with a commit still held (%s): it is dropped\n",
               held_error_.ToString().c_str());
  for (auto& [cmd, result] : held_->replies) {
    cmd->done.set_value(Status::Unavailable(
        "coordinator is shutting down: this change was never committed (" +
        held_error_.message() + ")"));
  }
  held_.reset();
}

bool Coordinator::RetryHeldCommit() {
  // Nothing else changes meanwhile: commands are refused, worker messages wait in the
  // channel (so no worker can be declared lost for it), nothing is placed. Keep-alives
  // still go out: they acknowledge nothing, and workers must not take us for dead.
  RefuseCommands(HeldError());
  std::vector<std::pair<WorkerRank, Message>> keepalives;
  SendKeepAlives(keepalives);
  for (auto& [rank, msg] : keepalives) (void)channel_->Send(rank, msg);
  const int64_t now = Now();
  if (now < held_retry_ms_) return false;
  Status s = CommitPending(*held_);
  if (!s.ok()) {
    ++held_failures_;
    // 250 ms, 500 ms, 1 s, then every 2 s.
    held_retry_ms_ = now + (int64_t{250} << std::min(held_failures_ - 1, 3));
    if (held_failures_ % 30 == 0 || s.code() != held_error_.code()) {
      std::fprintf(stderr, "coordinator: held commit still failing after %lld s: %s\n",
                   static_cast<long long>((now - held_since_ms_) / 1000), s.ToString().c_str());
    }
    held_error_ = s;
    std::lock_guard<std::mutex> lock(mu_);
    held_reason_ = s.message();
    return false;
  }
  std::fprintf(stderr, "coordinator: held commit written after %.1f s (%d tries); carrying on\n",
               static_cast<double>(now - held_since_ms_) / 1000.0, held_failures_ + 1);
  // Worker messages waited in the channel: silence while we did not listen proves nothing.
  for (size_t r = 1; r < slots_.size(); ++r) {
    if (slots_[r].view.state != WorkerState::kLost) slots_[r].view.last_seen_ms = now;
  }
  Pending p = std::move(*held_);
  held_.reset();
  held_error_ = Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_reason_.clear();
    held_bytes_ = 0;
  }
  Act(p);
  UpdateGauges();
  return true;
}

Status Coordinator::HeldError() const {
  const std::string what = "the coordinator could not write a commit of " +
                           FormatBytes(held_ ? held_->batch.bytes() : 0) + " to " +
                           store_->path() + " and accepts no change until it is written: " +
                           held_error_.message();
  if (held_error_.code() == StatusCode::kInsufficientStorage || IsNoSpace(held_error_)) {
    return Status::InsufficientStorage(what);
  }
  return Status::Unavailable(what);
}

void Coordinator::RefuseCommands(const Status& why) {
  std::deque<std::shared_ptr<Command>> cmds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cmds.swap(commands_);
  }
  for (auto& cmd : cmds) cmd->done.set_value(why);
}

Status Coordinator::SpaceCheck() {
  if (space_checked_) return space_;
  space_checked_ = true;
  space_ = CheckFreeSpace(store_->path(), options_.min_free_bytes);
  if (space_.ok() == space_was_low_) {
    space_was_low_ = !space_.ok();
    if (space_was_low_) {
      std::fprintf(stderr, "coordinator: %s: changes are refused (507) and no trial is placed\n",
                   space_.message().c_str());
    } else {
      std::fprintf(stderr, "coordinator: data directory %s has space again: carrying on\n",
                   store_->path().c_str());
    }
  }
  return space_;
}

StorageHealth Coordinator::Storage() const {
  StorageHealth h;
  h.data_dir = store_->path();
  h.min_free_bytes = options_.min_free_bytes;
  if (auto space = GetDiskSpace(h.data_dir); space.ok()) h.free_bytes = space->free_bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    h.commit_held = !held_reason_.empty();
    h.held_bytes = held_bytes_;
    h.held_since_ms = held_view_since_ms_;
    if (h.commit_held) h.reason = "a commit of " + FormatBytes(held_bytes_) + " is held: " + held_reason_;
  }
  if (!h.commit_held) {
    Status space = CheckFreeSpace(h.data_dir, options_.min_free_bytes);
    if (!space.ok()) h.reason = space.message();
  }
  h.degraded = !h.reason.empty();
  return h;
}

}  // namespace lattice
