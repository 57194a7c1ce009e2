#include "store/state_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/iterator.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "common/disk_space.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr const char* kSweepsCf = "sweeps";
constexpr const char* kTrialsCf = "trials";
constexpr const char* kMetricsCf = "metrics";
constexpr const char* kCheckpointsCf = "checkpoints";
constexpr const char* kIndexesCf = "indexes";
constexpr const char* kItemsCf = "items";
constexpr const char* kEventsCf = "events";
constexpr const char* kMetaCf = "meta";
constexpr const char* kSweepCountsCf = "sweep_counts";
constexpr const char* kAllCfs[] = {kSweepsCf, kTrialsCf, kMetricsCf, kCheckpointsCf, kIndexesCf,
                                   kItemsCf,  kEventsCf, kMetaCf,    kSweepCountsCf};
// Column families that raw Put/Delete may write; the others have invariants (event
// sequence, id counter, record encoding) that only the typed API keeps.
constexpr const char* kRawWritableCfs[] = {kCheckpointsCf, kIndexesCf, kItemsCf};

constexpr const char* kNextSweepIdKey = "next_sweep_id";
// Keys are fixed width so that they sort numerically (see state_store.h).
constexpr int kMaxTrialIndex = 999999;  // TrialId::Key() pads the index to 6 digits
constexpr int kMaxAttempt = 9999;
constexpr int kMaxEpoch = 999999;
constexpr uint64_t kMaxEventSeq = 9999999999999999ull;
// Checkpoint chunks at least this large go to blob files instead of the LSM tree.
constexpr uint64_t kCheckpointMinBlobBytes = 4096;

std::string EventKey(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llu", static_cast<unsigned long long>(seq));
  return buf;
}

std::string MetricsKey(const EpochMetrics& m) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/%04d/%06d", m.attempt, m.epoch);
  return m.trial.Key() + buf;
}

std::optional<uint64_t> ParseDecimal(const std::string& text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

bool StartsWith(const rocksdb::Slice& s, const std::string& prefix) {
  return s.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), s.data());
}

// RocksDB's info log (<path>/LOG; the previous run's is kept as LOG.old). A line that cannot
// be written (disk full) is dropped: RocksDB's own file logger asserts on the line after a
// failed one, which in Debian's build (assertions on) aborts the process.
class TolerantFileLogger final : public rocksdb::Logger {
 public:
  explicit TolerantFileLogger(std::FILE* file)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), file_(file) {}
  ~TolerantFileLogger() override {
    if (file_ != nullptr) std::fclose(file_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    struct timeval now {};
    gettimeofday(&now, nullptr);
    struct tm t {};
    localtime_r(&now.tv_sec, &t);
    std::lock_guard<std::mutex> lock(mu_);
    std::fprintf(file_, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ", t.tm_year + 1900, t.tm_mon + 1,
                 t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long>(now.tv_usec));
    std::vfprintf(file_, format, ap);
    std::fputc('\n', file_);
    std::fflush(file_);
    std::clearerr(file_);  // a lost line is no reason to stop: the next one may fit
  }

 private:
  std::FILE* const file_;
  std::mutex mu_;
};

// Turns RocksDB's automatic recovery from a full disk off: it polls every few seconds and
// only resumes once the disk has more free space than a memtable flush could ever need
// (64 MiB and up), which a small disk may never have, and it resumes through
// DB::Resume(), which is not safe after a failed log write (see ReopenIfFailed).
// StateStore opens the database again before the next write instead.
class NoAutoRecoveryFromNoSpace final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    if (bg_error.IsNoSpace()) *auto_recovery = false;
    bg_error.PermitUncheckedError();
  }
};

// The info logger of the store at `path`: LOG, after the previous one was renamed LOG.old.
std::shared_ptr<rocksdb::Logger> OpenInfoLog(const std::string& path) {
  std::error_code ec;
  std::filesystem::rename(path + "/LOG", path + "/LOG.old", ec);  // absent the first time
  std::FILE* file = std::fopen((path + "/LOG").c_str(), "a");
  if (file == nullptr) return nullptr;  // RocksDB opens its own (and says why if it cannot)
  return std::make_shared<TolerantFileLogger>(file);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// StateWriteBatch

struct StateWriteBatch::Pending {
  struct Op {
    const char* cf;
    std::string key;
    std::string value;        // kDeleteRange: the range's end (exclusive)
    bool delete_range = false;
  };
  std::vector<Op> ops;
  std::vector<json> events;  // sequence numbers are assigned in StateStore::Commit
  Status error;              // first invalid change; Commit refuses the whole batch
};

StateWriteBatch::StateWriteBatch() : pending_(std::make_unique<Pending>()) {}
StateWriteBatch::~StateWriteBatch() = default;
StateWriteBatch::StateWriteBatch(StateWriteBatch&&) noexcept = default;
StateWriteBatch& StateWriteBatch::operator=(StateWriteBatch&&) noexcept = default;

void StateWriteBatch::PutSweep(const SweepRecord& sweep) {
  pending_->ops.push_back({kSweepsCf, sweep.id.Key(), sweep.ToJson().dump()});
}

void StateWriteBatch::PutTrial(const TrialRecord& trial) {
  if (trial.id.index > static_cast<uint32_t>(kMaxTrialIndex) && pending_->error.ok()) {
    pending_->error = Status::InvalidArgument("trial " + trial.id.ToString() + ": index above " +
                                              std::to_string(kMaxTrialIndex));
  }
  pending_->ops.push_back({kTrialsCf, trial.id.Key(), trial.Dump()});
}

void StateWriteBatch::PutSweepCounts(const SweepCounts& counts) {
  pending_->ops.push_back({kSweepCountsCf, counts.sweep.Key(), counts.ToJson().dump()});
}

void StateWriteBatch::PutRaw(const std::string& column_family, const std::string& key,
                             std::string value) {
  const char* cf = nullptr;
  for (const char* name : kRawWritableCfs) {
    if (column_family == name) cf = name;
  }
  if (cf == nullptr) {
    if (pending_->error.ok()) {
      pending_->error = Status::InvalidArgument("batch put: column family '" + column_family +
                                                "' is not writable raw");
    }
    return;
  }
  pending_->ops.push_back({cf, key, std::move(value)});
}

void StateWriteBatch::DeleteRawRange(const std::string& column_family, const std::string& begin,
                                     const std::string& end) {
  const char* cf = nullptr;
  for (const char* name : kRawWritableCfs) {
    if (column_family == name) cf = name;
  }
  if (cf == nullptr || !(begin < end)) {
    if (pending_->error.ok()) {
      pending_->error = Status::InvalidArgument(
          cf == nullptr ? "batch delete: column family '" + column_family + "' is not writable raw"
                        : "batch delete: empty range in " + column_family);
    }
    return;
  }
  pending_->ops.push_back({cf, begin, end, /*delete_range=*/true});
}

void StateWriteBatch::PutEpochMetrics(const EpochMetrics& metrics) {
  bool bad = metrics.trial.index > static_cast<uint32_t>(kMaxTrialIndex) || metrics.attempt < 0 ||
             metrics.attempt > kMaxAttempt || metrics.epoch < 0 || metrics.epoch > kMaxEpoch;
  if (bad && pending_->error.ok()) {
    pending_->error = Status::InvalidArgument("metrics of trial " + metrics.trial.ToString() +
                                              ": attempt " + std::to_string(metrics.attempt) +
                                              " / epoch " + std::to_string(metrics.epoch) +
                                              " out of range [0, " + std::to_string(kMaxAttempt) +
                                              "] / [0, " + std::to_string(kMaxEpoch) + "]");
  }
  pending_->ops.push_back({kMetricsCf, MetricsKey(metrics), metrics.ToJson().dump()});
}

void StateWriteBatch::AppendEvent(const std::string& type, const nlohmann::json& fields) {
  json event = json::object();
  if (fields.is_object()) {
    event = fields;
  } else if (!fields.is_null()) {
    event["data"] = fields;
  }
  event["ts_ms"] = NowMillis();
  event["type"] = type;
  pending_->events.push_back(std::move(event));
}

bool StateWriteBatch::empty() const { return count() == 0; }
int64_t StateWriteBatch::bytes() const {
  int64_t total = 0;
  for (const auto& op : pending_->ops) total += static_cast<int64_t>(op.key.size() + op.value.size());
  return total;
}
size_t StateWriteBatch::count() const { return pending_->ops.size() + pending_->events.size(); }

// ---------------------------------------------------------------------------------------
// StateStore

struct StateStore::Impl {
  StateStoreOptions options;
  // The database and its column families; replaced by Reopen() (after a failed write)
  // under an exclusive db_mu, used under a shared one. Null only when a reopen failed.
  std::unique_ptr<rocksdb::DB> db;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> cfs;  // owned; freed in CloseDb
  mutable std::shared_mutex db_mu;
  std::shared_ptr<rocksdb::Logger> info_log;  // kept across reopens

  std::mutex commit_mu;         // orders Commits, so event sequence numbers follow commit order
  uint64_t last_event_seq = 0;  // guarded by commit_mu
  std::mutex sweep_id_mu;
  uint64_t next_sweep_id = 1;  // guarded by sweep_id_mu
  // A write failed: RocksDB refuses writes until it is reopened (see ReopenIfFailed).
  std::atomic<bool> write_failed{false};
  mutable std::atomic<uint64_t> trials_decoded{0};  // see StateStore::TrialsDecoded
  std::shared_ptr<rocksdb::Cache> block_cache;  // shared by every column family, kept across reopens

  ~Impl() { CloseDb(); }

  void CloseDb() {
    if (!db) return;
    for (auto& [name, handle] : cfs) (void)db->DestroyColumnFamilyHandle(handle);
    cfs.clear();
    (void)db->Close();
    db.reset();
  }
  Status OpenDb();

  Status Error(const std::string& what, const rocksdb::Status& s) const {
    std::string msg = "state store " + options.path + ": " + what + ": " + s.ToString();
    if (s.IsNotFound()) return Status::NotFound(msg);
    if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
    if (s.IsNoSpace() || (s.IsIOError() && IsNoSpace(Status::IoError(msg)))) {
      auto space = GetDiskSpace(options.path);
      return Status::InsufficientStorage(
          msg + " (the disk of " + options.path + " is full: " +
          (space.ok() ? FormatBytes(space->free_bytes) : std::string("unknown")) +
          " free; free space on that disk: writes resume by themselves)");
    }
    if (s.IsIOError()) return Status::IoError(msg);
    if (s.IsBusy() || s.IsTryAgain()) return Status::Unavailable(msg);
    return Status::Internal(msg);
  }

  // The error of a failed write (see write_failed).
  Status WriteError(const std::string& what, const rocksdb::Status& s) {
    write_failed = true;
    return Error(what, s);
  }

  // Every use of db/cfs holds this (shared) lock and checks Usable().
  std::shared_lock<std::shared_mutex> Use() const { return std::shared_lock<std::shared_mutex>(db_mu); }
  Status Usable() const {
    if (db) return Status::Ok();
    return Status::Unavailable("state store " + options.path +
                               " is closed after a failed write and not yet open again "
                               "(it is reopened with the next write once there is space)");
  }

  // Before a write: refuses it (InsufficientStorage, nothing written) when the disk has
  // less than options.write_floor_bytes + `bytes` free, so that RocksDB rarely meets a full
  // disk itself.
  Status CheckFloor(int64_t bytes) const {
    if (options.write_floor_bytes <= 0) return Status::Ok();
    Status s = CheckFreeSpace(options.path, options.write_floor_bytes, bytes);
    if (s.ok()) return s;
    return Status::InsufficientStorage("state store " + options.path + ": write of " +
                                       FormatBytes(bytes) + " refused: " + s.message());
  }

  // Before a write: after a failed one, close and open the database again. RocksDB stops
  // writes after a failed one (its background error), and DB::Resume() is not enough in
  // 7.8: a write-ahead log whose append failed stays in use when the memtables are empty
  // (nothing to flush), and the next append to it asserts (aborts). Opening again starts a
  // new log; recovery replays the old ones up to the torn record of the failed write, which
  // was never acknowledged (a torn record at a log's end reads as its end). Recovery does
  // not flush (avoid_flush_during_recovery), so opening needs only a few files' worth of
  // space: tried once the disk has 2 MiB free; until then writes get InsufficientStorage.
  // Readers wait for the (short) reopen.
  Status ReopenIfFailed() {
    if (!write_failed.load()) return Status::Ok();
    std::unique_lock<std::shared_mutex> lock(db_mu);
    if (!write_failed.load()) return Status::Ok();
    if (Status space = CheckFreeSpace(options.path, int64_t{2} << 20); !space.ok()) {
      return Status::InsufficientStorage("state store " + options.path +
                                         ": writes stopped after a failed write: " +
                                         space.message());
    }
    CloseDb();
    Status s = OpenDb();
    if (!s.ok()) {
      std::fprintf(stderr, "state store %s: reopen after a failed write: %s\n",
                   options.path.c_str(), s.ToString().c_str());
      return s;
    }
    write_failed = false;
    std::fprintf(stderr, "state store %s: reopened after a failed write: writes resume\n",
                 options.path.c_str());
    return Status::Ok();
  }

  Status Context(const Status& s) const { return s.WithContext("state store " + options.path); }

  StatusOr<rocksdb::ColumnFamilyHandle*> Cf(const std::string& name) const {
    auto it = cfs.find(name);
    if (it == cfs.end()) {
      return Status::InvalidArgument("state store " + options.path + ": unknown column family '" +
                                     name + "'");
    }
    return it->second;
  }

  // The handle of a column family that raw Put/Delete may change.
  StatusOr<rocksdb::ColumnFamilyHandle*> RawWritableCf(const std::string& name) const {
    if (std::none_of(std::begin(kRawWritableCfs), std::end(kRawWritableCfs),
                     [&](const char* cf) { return name == cf; })) {
      return Status::InvalidArgument("state store " + options.path +
                                     ": raw writes to column family '" + name +
                                     "' are not allowed (only checkpoints, indexes, items)");
    }
    return Cf(name);
  }

  rocksdb::WriteOptions WriteOpts(bool sync) const {
    rocksdb::WriteOptions w;
    w.sync = sync;
    return w;
  }

  StatusOr<std::string> GetRaw(const char* cf, const std::string& key) const;
  StatusOr<std::vector<std::pair<std::string, std::string>>> ScanRaw(const std::string& cf,
                                                                     const std::string& prefix,
                                                                     const std::string& start,
                                                                     size_t limit) const;
  Status LoadCounters();
};

StatusOr<std::string> StateStore::Impl::GetRaw(const char* cf, const std::string& key) const {
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle, Cf(cf));
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), handle, key, &value);
  if (!s.ok()) return Error(std::string("get ") + cf + "/" + key, s);
  return value;
}

// Pairs whose key starts with `prefix`, from the first key >= max(prefix, start), at most
// `limit`, ascending.
StatusOr<std::vector<std::pair<std::string, std::string>>> StateStore::Impl::ScanRaw(
    const std::string& cf, const std::string& prefix, const std::string& start,
    size_t limit) const {
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle, Cf(cf));
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handle));
  std::vector<std::pair<std::string, std::string>> out;
  for (it->Seek(std::max(prefix, start)); it->Valid() && out.size() < limit; it->Next()) {
    if (!StartsWith(it->key(), prefix)) break;
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  if (!it->status().ok()) return Error("scan " + cf + "/" + prefix + "*", it->status());
  return out;
}

// Loads the last event sequence and the next sweep id. The sweep counter also stays above
// every stored sweep, so a lost or stale counter can never hand out a used id.
Status StateStore::Impl::LoadCounters() {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cfs[kEventsCf]));
  it->SeekToLast();
  if (it->Valid()) {
    auto seq = ParseDecimal(it->key().ToString());
    if (!seq) return Context(Status::Internal("events: corrupt key " + it->key().ToString()));
    last_event_seq = *seq;
  }
  if (!it->status().ok()) return Error("read last event", it->status());

  auto counter = GetRaw(kMetaCf, kNextSweepIdKey);
  if (counter.ok()) {
    auto v = ParseDecimal(*counter);
    if (!v) return Context(Status::Internal("meta/next_sweep_id: corrupt value " + *counter));
    next_sweep_id = std::max<uint64_t>(*v, 1);
  } else if (counter.status().code() != StatusCode::kNotFound) {
    return counter.status();
  }
  std::unique_ptr<rocksdb::Iterator> sit(db->NewIterator(rocksdb::ReadOptions(), cfs[kSweepsCf]));
  sit->SeekToLast();
  if (sit->Valid()) {
    auto last = ParseDecimal(sit->key().ToString());
    if (last) next_sweep_id = std::max(next_sweep_id, *last + 1);
  }
  if (!sit->status().ok()) return Error("read last sweep", sit->status());
  return Status::Ok();
}

namespace {

// Existing column families (a store created by a newer version may have more) plus ours,
// all with one table factory over `cache`.
std::vector<rocksdb::ColumnFamilyDescriptor> Descriptors(const StateStoreOptions& options,
                                                         std::shared_ptr<rocksdb::Cache> cache) {
  const std::string& path = options.path;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = std::move(cache);
  table.cache_index_and_filter_blocks = true;  // else they live outside any bound
  std::shared_ptr<rocksdb::TableFactory> table_factory(rocksdb::NewBlockBasedTableFactory(table));
  std::vector<std::string> names;
  rocksdb::DBOptions probe;
  if (!rocksdb::DB::ListColumnFamilies(probe, path, &names).ok()) names.clear();
  names.push_back(rocksdb::kDefaultColumnFamilyName);
  for (const char* cf : kAllCfs) names.push_back(cf);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());

  std::vector<rocksdb::ColumnFamilyDescriptor> out;
  for (const auto& name : names) {
    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.table_factory = table_factory;
    cf_options.write_buffer_size = std::max<size_t>(options.write_buffer_bytes / 4, 1 << 20);
    if (name == kCheckpointsCf) {
      cf_options.enable_blob_files = true;
      cf_options.min_blob_size = kCheckpointMinBlobBytes;
      cf_options.enable_blob_garbage_collection = true;
    }
    out.emplace_back(name, cf_options);
  }
  return out;
}

}  // namespace

Status StateStore::Impl::OpenDb() {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  // Bound the write-ahead log: past this, the column families holding the oldest log are
  // flushed (embed shards write hundreds of MB of vectors through it).
  db_options.max_total_wal_size = 256ull << 20;
  // Disk full: see the header (RocksDB's recovery off, our info logger).
  db_options.listeners.push_back(std::make_shared<NoAutoRecoveryFromNoSpace>());
  db_options.info_log = info_log;
  // Opening replays the write-ahead logs into memtables without flushing them to tables
  // (they are flushed in the normal course), so that opening again after a failed write
  // (ReopenIfFailed), or starting, on a nearly full disk needs only a few small files.
  db_options.avoid_flush_during_recovery = true;
  // Memory bounds (StateStoreOptions): without them each column family has its own 32 MiB
  // block cache, index blocks outside it, and 2 x 64 MiB of memtables.
  db_options.db_write_buffer_size = options.write_buffer_bytes;
  if (!block_cache) block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = Descriptors(options, block_cache);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw);
  if (!s.ok()) return Error("open", s);
  db.reset(raw);
  for (size_t i = 0; i < handles.size(); ++i) cfs[descriptors[i].name] = handles[i];
  return Status::Ok();
}

StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const StateStoreOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("state store: path is empty");
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) return Status::IoError("state store " + options.path + ": create: " + ec.message());

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->info_log = OpenInfoLog(options.path);
  LATTICE_RETURN_IF_ERROR(impl->OpenDb());
  LATTICE_RETURN_IF_ERROR(impl->LoadCounters());

  std::unique_ptr<StateStore> store(new StateStore());
  store->impl_ = std::move(impl);
  return store;
}

StateStore::~StateStore() = default;

const std::string& StateStore::path() const { return impl_->options.path; }

// Protocol:
//  1. Refuse the batch if a change in it was invalid (nothing is written).
//  2. Under commit_mu, number its events last_event_seq+1, +2, ... in append order.
//  3. Write everything as one rocksdb::WriteBatch (sync per options.sync_writes).
//  4. Only on success advance last_event_seq and clear `batch`; on failure the batch is
//     left as it was and no sequence number is consumed, so the caller may retry.
Status StateStore::Commit(StateWriteBatch& batch) { return Commit(batch, impl_->options.sync_writes); }

Status StateStore::Commit(StateWriteBatch& batch, bool sync) {
  StateWriteBatch::Pending& p = *batch.pending_;
  if (!p.error.ok()) return impl_->Context(p.error);
  if (batch.empty()) return Status::Ok();

  std::lock_guard<std::mutex> lock(impl_->commit_mu);
  LATTICE_RETURN_IF_ERROR(impl_->ReopenIfFailed());
  LATTICE_RETURN_IF_ERROR(impl_->CheckFloor(batch.bytes()));
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  if (impl_->last_event_seq + p.events.size() > kMaxEventSeq) {
    return impl_->Context(Status::Internal("events: sequence space exhausted"));
  }
  rocksdb::WriteBatch wb;
  for (const auto& op : p.ops) {
    rocksdb::Status s = op.delete_range ? wb.DeleteRange(impl_->cfs.at(op.cf), op.key, op.value)
                                        : wb.Put(impl_->cfs.at(op.cf), op.key, op.value);
    if (!s.ok()) return impl_->Error(std::string("batch write ") + op.cf + "/" + op.key, s);
  }
  uint64_t seq = impl_->last_event_seq;
  for (const auto& event : p.events) {
    json stored = event;
    stored["seq"] = ++seq;
    rocksdb::Status s = wb.Put(impl_->cfs.at(kEventsCf), EventKey(seq), stored.dump());
    if (!s.ok()) return impl_->Error("batch put event", s);
  }
  rocksdb::Status s = impl_->db->Write(impl_->WriteOpts(sync && impl_->options.sync_writes), &wb);
  if (!s.ok()) {
    return impl_->WriteError("commit " + std::to_string(batch.count()) + " changes (" +
                                 FormatBytes(batch.bytes()) + ")",
                             s);
  }
  impl_->last_event_seq = seq;
  p.ops.clear();
  p.events.clear();
  return Status::Ok();
}

StatusOr<SweepId> StateStore::AllocateSweepId() {
  std::lock_guard<std::mutex> lock(impl_->sweep_id_mu);
  LATTICE_RETURN_IF_ERROR(impl_->ReopenIfFailed());
  LATTICE_RETURN_IF_ERROR(impl_->CheckFloor(0));
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  uint64_t id = impl_->next_sweep_id;
  // Always synced: the counter must be on disk before the id is used anywhere.
  rocksdb::Status s = impl_->db->Put(impl_->WriteOpts(true), impl_->cfs.at(kMetaCf),
                                     kNextSweepIdKey, std::to_string(id + 1));
  if (!s.ok()) return impl_->WriteError("allocate sweep id", s);
  impl_->next_sweep_id = id + 1;
  return SweepId{id};
}

namespace {

template <typename Record>
StatusOr<Record> Decode(const std::string& what, const std::string& value) {
  json j = json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Internal(what + ": corrupt record: not valid JSON");
  auto r = Record::FromJson(j);
  if (!r.ok()) return Status::Internal(what + ": corrupt record: " + r.status().message());
  return r;
}

template <typename Record>
StatusOr<std::vector<Record>> DecodeAll(
    const std::string& cf, const std::vector<std::pair<std::string, std::string>>& rows) {
  std::vector<Record> out;
  out.reserve(rows.size());
  for (const auto& [key, value] : rows) {
    LATTICE_ASSIGN_OR_RETURN(Record r, Decode<Record>(cf + "/" + key, value));
    out.push_back(std::move(r));
  }
  return out;
}

constexpr size_t kNoLimit = static_cast<size_t>(-1);

}  // namespace

StatusOr<SweepRecord> StateStore::GetSweep(SweepId id) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  auto value = impl_->GetRaw(kSweepsCf, id.Key());
  if (value.status().code() == StatusCode::kNotFound) {
    return Status::NotFound("sweep " + id.ToString() + " not found");
  }
  if (!value.ok()) return value.status();
  auto r = Decode<SweepRecord>(std::string(kSweepsCf) + "/" + id.Key(), *value);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<std::vector<SweepRecord>> StateStore::ListSweeps() const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(auto rows, impl_->ScanRaw(kSweepsCf, "", "", kNoLimit));
  auto r = DecodeAll<SweepRecord>(kSweepsCf, rows);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<TrialRecord> StateStore::GetTrial(const TrialId& id) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  auto value = impl_->GetRaw(kTrialsCf, id.Key());
  if (value.status().code() == StatusCode::kNotFound) {
    return Status::NotFound("trial " + id.ToString() + " not found");
  }
  if (!value.ok()) return value.status();
  ++impl_->trials_decoded;
  auto r = Decode<TrialRecord>(std::string(kTrialsCf) + "/" + id.Key(), *value);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<std::vector<TrialRecord>> StateStore::ListTrials(SweepId sweep) const {
  return ListTrials(sweep, 0, kNoLimit);
}

StatusOr<std::vector<TrialRecord>> StateStore::ListTrials(SweepId sweep, uint32_t first_index,
                                                          size_t limit) const {
  if (limit == 0) return std::vector<TrialRecord>{};
  const std::string prefix = sweep.Key() + "/";
  // Past the largest index a key can hold, nothing is left (TrialId::Key() pads to 6 digits).
  if (first_index > static_cast<uint32_t>(kMaxTrialIndex)) return std::vector<TrialRecord>{};
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(
      auto rows, impl_->ScanRaw(kTrialsCf, prefix, TrialId{sweep, first_index}.Key(), limit));
  impl_->trials_decoded += rows.size();
  auto r = DecodeAll<TrialRecord>(kTrialsCf, rows);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<std::vector<TrialRecord>> StateStore::ListAllTrials() const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(auto rows, impl_->ScanRaw(kTrialsCf, "", "", kNoLimit));
  impl_->trials_decoded += rows.size();
  auto r = DecodeAll<TrialRecord>(kTrialsCf, rows);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

uint64_t StateStore::TrialsDecoded() const { return impl_->trials_decoded.load(); }

StatusOr<SweepCounts> StateStore::GetSweepCounts(SweepId id) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  auto value = impl_->GetRaw(kSweepCountsCf, id.Key());
  if (value.status().code() == StatusCode::kNotFound) {
    return Status::NotFound("sweep " + id.ToString() + " has no stored counts");
  }
  if (!value.ok()) return value.status();
  auto r = Decode<SweepCounts>(std::string(kSweepCountsCf) + "/" + id.Key(), *value);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<std::vector<SweepCounts>> StateStore::ListSweepCounts() const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(auto rows, impl_->ScanRaw(kSweepCountsCf, "", "", kNoLimit));
  auto r = DecodeAll<SweepCounts>(kSweepCountsCf, rows);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<std::vector<EpochMetrics>> StateStore::GetEpochMetrics(const TrialId& id) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(auto rows, impl_->ScanRaw(kMetricsCf, id.Key() + "/", "", kNoLimit));
  auto r = DecodeAll<EpochMetrics>(kMetricsCf, rows);
  if (!r.ok()) return impl_->Context(r.status());
  return r;
}

StatusOr<std::vector<nlohmann::json>> StateStore::ListEvents(uint64_t after_seq,
                                                             size_t limit) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  std::vector<nlohmann::json> out;
  if (limit == 0 || after_seq >= kMaxEventSeq) return out;
  LATTICE_ASSIGN_OR_RETURN(auto rows,
                           impl_->ScanRaw(kEventsCf, "", EventKey(after_seq + 1), limit));
  out.reserve(rows.size());
  for (const auto& [key, value] : rows) {
    json j = json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      return impl_->Context(Status::Internal("events/" + key + ": corrupt record"));
    }
    out.push_back(std::move(j));
  }
  return out;
}

Status StateStore::Put(const std::string& column_family, const std::string& key,
                       const std::string& value) {
  LATTICE_RETURN_IF_ERROR(impl_->ReopenIfFailed());
  LATTICE_RETURN_IF_ERROR(impl_->CheckFloor(static_cast<int64_t>(key.size() + value.size())));
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle,
                           impl_->RawWritableCf(column_family));
  rocksdb::Status s =
      impl_->db->Put(impl_->WriteOpts(impl_->options.sync_writes), handle, key, value);
  if (!s.ok()) return impl_->WriteError("put " + column_family + "/" + key, s);
  return Status::Ok();
}

StatusOr<std::string> StateStore::Get(const std::string& column_family,
                                      const std::string& key) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle, impl_->Cf(column_family));
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), handle, key, &value);
  if (!s.ok()) return impl_->Error("get " + column_family + "/" + key, s);
  return value;
}

Status StateStore::Delete(const std::string& column_family, const std::string& key) {
  LATTICE_RETURN_IF_ERROR(impl_->ReopenIfFailed());
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle,
                           impl_->RawWritableCf(column_family));
  rocksdb::Status s = impl_->db->Delete(impl_->WriteOpts(impl_->options.sync_writes), handle, key);
  if (!s.ok()) return impl_->WriteError("delete " + column_family + "/" + key, s);
  return Status::Ok();
}

Status StateStore::CompactRaw(const std::string& column_family, const std::string& begin,
                              const std::string& end) {
  LATTICE_RETURN_IF_ERROR(impl_->ReopenIfFailed());
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle,
                           impl_->RawWritableCf(column_family));
  rocksdb::Slice b(begin), e(end);
  rocksdb::CompactRangeOptions options;
  // Rewrite the bottom level too, so that deleted ranges (and their blobs) really go.
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  rocksdb::Status s = impl_->db->CompactRange(options, handle, &b, &e);
  if (!s.ok()) {
    return impl_->WriteError("compact " + column_family + " [" + begin + ", " + end + ")", s);
  }
  // The range's writes are also in write-ahead log files, which stay as long as any column
  // family still has unflushed data in them: flush them all so that those files go too.
  std::vector<rocksdb::ColumnFamilyHandle*> all;
  for (const auto& [name, h] : impl_->cfs) all.push_back(h);
  s = impl_->db->Flush(rocksdb::FlushOptions(), all);
  if (!s.ok()) return impl_->WriteError("flush after compacting " + column_family, s);
  return Status::Ok();
}

StatusOr<int64_t> StateStore::DiskBytes() const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  int64_t total = 0;
  for (const auto& [name, handle] : impl_->cfs) {
    for (const char* property : {"rocksdb.total-sst-files-size", "rocksdb.total-blob-file-size"}) {
      uint64_t v = 0;
      if (impl_->db->GetIntProperty(handle, property, &v)) total += static_cast<int64_t>(v);
    }
  }
  return total;
}

StatusOr<std::vector<std::string>> StateStore::ScanKeys(const std::string& column_family,
                                                        const std::string& prefix) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  LATTICE_ASSIGN_OR_RETURN(rocksdb::ColumnFamilyHandle * handle, impl_->Cf(column_family));
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), handle));
  std::vector<std::string> keys;
  for (it->Seek(prefix); it->Valid() && StartsWith(it->key(), prefix); it->Next()) {
    keys.push_back(it->key().ToString());
  }
  if (!it->status().ok()) {
    return impl_->Error("scan keys " + column_family + "/" + prefix + "*", it->status());
  }
  return keys;
}

StatusOr<std::vector<std::pair<std::string, std::string>>> StateStore::Scan(
    const std::string& column_family, const std::string& prefix) const {
  auto use = impl_->Use();
  LATTICE_RETURN_IF_ERROR(impl_->Usable());
  return impl_->ScanRaw(column_family, prefix, "", kNoLimit);
}

}  // namespace lattice
