// StateStore: the coordinator's durable state in RocksDB.
//
// Column families (see ARCHITECTURE.md): "sweeps" (key SweepId::Key()), "trials"
// (key TrialId::Key()), "metrics" (key "<TrialId::Key()>/<attempt 4 digits>/<epoch 6 digits>"),
// "events" (key 16-digit sequence, append-only JSON audit log), "meta" (counters),
// "sweep_counts" (key SweepId::Key(): a SweepCounts per sweep, what listings read instead of
// the trials), plus "checkpoints", "indexes", "items" created empty for the later subsystems.
//
// Durability: every Commit() is one atomic RocksDB WriteBatch written with
// WriteOptions::sync = true, so a change is on disk before the caller acts on it.
// Group commit: callers collect several changes in one StateWriteBatch.
//
// Disk full / I/O errors: a write is refused (InsufficientStorage, nothing written) unless
// the disk has StateStoreOptions::write_floor_bytes plus its size free, so RocksDB rarely
// meets a full disk itself. A write that fails anyway leaves nothing applied and returns
// the error (InsufficientStorage when the disk is full, IoError otherwise); the batch of a
// failed Commit is left as it was, so the caller may commit it again. RocksDB then refuses
// writes while reads go on; the next write closes and opens the database again (once the
// disk has room for that), so writes work again by themselves once space is back (why not
// DB::Resume(): state_store.cc, ReopenIfFailed). RocksDB's own recovery from a full disk is
// switched off, and its info log (LOG) is written by a logger that drops what it cannot
// write: RocksDB's file logger aborts the process (an assertion Debian's build keeps) on the
// line after a failed one. See ARCHITECTURE.md, "Disk full".
//
// Thread-safety: all methods are safe to call concurrently (RocksDB is; a reopen after a
// failed write waits for the calls in progress and holds back new ones); the coordinator's
// scheduler thread is the only writer, HTTP threads read.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "store/records.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace lattice {

struct StateStoreOptions {
  std::string path;            // RocksDB directory, created if missing. Required.
  bool sync_writes = true;     // WAL fsync on every Commit. Default: true. Tests/bench only set false.
  // Free bytes a write must leave on the disk (on top of its own size), else it is refused
  // with InsufficientStorage before RocksDB sees it. 0: no check. Default: 1 MiB.
  int64_t write_floor_bytes = int64_t{1} << 20;
  // RocksDB's memory, bounded whatever the data: one block cache that every column family
  // shares, index and filter blocks included, in bytes. Default: 64 MiB.
  size_t block_cache_bytes = 64ull << 20;
  // Memtables of all column families together, in bytes; past it the largest is flushed
  // (each column family's own is at most a quarter of it). Default: 128 MiB.
  size_t write_buffer_bytes = 128ull << 20;
};

// A set of changes committed atomically by StateStore::Commit.
class StateWriteBatch {
 public:
  StateWriteBatch();
  ~StateWriteBatch();
  StateWriteBatch(StateWriteBatch&&) noexcept;
  StateWriteBatch& operator=(StateWriteBatch&&) noexcept;

  void PutSweep(const SweepRecord& sweep);
  void PutTrial(const TrialRecord& trial);
  // The sweep's counts; whoever changes a trial's state puts its sweep's new counts in the
  // same batch (the coordinator does, once per sweep and commit).
  void PutSweepCounts(const SweepCounts& counts);
  void PutEpochMetrics(const EpochMetrics& metrics);
  // A raw value in "checkpoints", "indexes" or "items" (others make Commit fail).
  void PutRaw(const std::string& column_family, const std::string& key, std::string value);
  // Deletes the keys in [begin, end) of "checkpoints", "indexes" or "items".
  void DeleteRawRange(const std::string& column_family, const std::string& begin,
                      const std::string& end);
  // Appends {"ts_ms":..., "type": type, ...fields} to the events log.
  void AppendEvent(const std::string& type, const nlohmann::json& fields);

  bool empty() const;
  size_t count() const;
  // Bytes of the keys and values (events not counted): about what a Commit writes.
  int64_t bytes() const;

 private:
  friend class StateStore;
  struct Pending;
  std::unique_ptr<Pending> pending_;
};

class StateStore {
 public:
  static StatusOr<std::unique_ptr<StateStore>> Open(const StateStoreOptions& options);
  ~StateStore();

  // Atomically and durably applies `batch` (WAL synced when options.sync_writes).
  Status Commit(StateWriteBatch& batch);
  // The same, but `sync` = false skips the WAL fsync (the write is still in the WAL and
  // becomes durable with the next synced commit). For data that may be lost in a crash
  // without harm, e.g. per-epoch metrics that a re-run attempt writes again.
  Status Commit(StateWriteBatch& batch, bool sync);

  // The RocksDB directory (StateStoreOptions::path).
  const std::string& path() const;

  // Allocates the next sweep id (durable counter in "meta"; never reused, also after restart).
  StatusOr<SweepId> AllocateSweepId();

  StatusOr<SweepRecord> GetSweep(SweepId id) const;             // NotFound if absent
  StatusOr<std::vector<SweepRecord>> ListSweeps() const;        // ascending id
  StatusOr<TrialRecord> GetTrial(const TrialId& id) const;      // NotFound if absent
  StatusOr<std::vector<TrialRecord>> ListTrials(SweepId sweep) const;  // ascending index
  // One page: the sweep's trials with index >= first_index, at most `limit`, ascending.
  StatusOr<std::vector<TrialRecord>> ListTrials(SweepId sweep, uint32_t first_index,
                                                size_t limit) const;
  StatusOr<std::vector<TrialRecord>> ListAllTrials() const;
  // A sweep's stored counts (NotFound: none were stored, e.g. a data directory written before
  // they existed, until the coordinator's Recover counts it); all of them, ascending sweep id.
  StatusOr<SweepCounts> GetSweepCounts(SweepId id) const;
  StatusOr<std::vector<SweepCounts>> ListSweepCounts() const;
  // How many trial records the reads above have decoded since Open: listings must not
  // decode trials, and tests and benchmarks hold them to it with this.
  uint64_t TrialsDecoded() const;
  // Per-epoch metrics of a trial, all attempts, ascending (attempt, epoch).
  StatusOr<std::vector<EpochMetrics>> GetEpochMetrics(const TrialId& id) const;
  // Events with sequence > after_seq, at most `limit`, ascending.
  StatusOr<std::vector<nlohmann::json>> ListEvents(uint64_t after_seq, size_t limit) const;

  // Raw access for the other subsystems (checkpoints, indexes, items column families).
  Status Put(const std::string& column_family, const std::string& key, const std::string& value);
  StatusOr<std::string> Get(const std::string& column_family, const std::string& key) const;
  Status Delete(const std::string& column_family, const std::string& key);
  // Compacts [begin, end) of a raw column family down to the last level and flushes every
  // column family, so that the space of deleted keys (their SST and blob files, and the
  // write-ahead log files that held them) is given back. Blocks while it runs.
  Status CompactRaw(const std::string& column_family, const std::string& begin,
                    const std::string& end);
  // Bytes of live SST and blob files over all column families (what RocksDB reports).
  StatusOr<int64_t> DiskBytes() const;
  // The keys that start with prefix, ascending (values are not copied out).
  StatusOr<std::vector<std::string>> ScanKeys(const std::string& column_family,
                                              const std::string& prefix) const;
  // All (key, value) pairs whose key starts with prefix, ascending.
  StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      const std::string& column_family, const std::string& prefix) const;

 private:
  StateStore() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lattice
