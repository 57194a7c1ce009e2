// CheckpointStore: trial checkpoints in the state store's "checkpoints" column family,
// stored in chunks so that no RocksDB value (and no control message) holds a whole
// multi-GB model.
//
// Key layout (owned here, nobody else builds these keys; checkpoint format: jobs/checkpoint.h):
//   "<TrialId::Key()>/final"                          manifest of the final checkpoint
//   "<TrialId::Key()>/step/<12 digits>"               manifest of a step checkpoint (after
//                                                     that many optimizer steps)
//   "<TrialId::Key()>/chunk/<12 digits>/<6 digits>"   chunk i of the checkpoint of that step
//                                                     (step 0 = the final checkpoint)
//   "<TrialId::Key()>/pruned/<12 digits>"             a step checkpoint retention deleted:
//                                                     JSON the caller chose (e.g. its epoch
//                                                     and metrics), for listings
// Keys sort by sweep, trial, then step; listings read manifests only.
//
// A manifest is "lattice-checkpoint-manifest/1\n" + JSON
//   {"bytes": N, "chunks": [{"bytes": n, "crc32": c}, ...], "header": "<first line>"}
// where "header" is the checkpoint's first line (its JSON header) so that listings and
// retention never read the chunks. A value at a manifest key without that prefix is a whole
// checkpoint written before chunking existed, and reads as one.
//
// Consistency: chunks are written first (a transfer may span several batches); the manifest
// is written in the same batch as the last chunk, so a manifest never points at a chunk
// that is not there. Delete() removes a manifest and all its chunks in one batch, so a
// process that dies while pruning leaves each checkpoint either whole or gone. Chunks of a
// transfer that never finished (the process died, the attempt was abandoned) have no
// manifest: Writer::Abandon and DeleteOrphanChunks remove them.
//
// Thread-safety: as StateStore (reads from any thread; the coordinator thread writes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/status.h"
#include "store/state_store.h"

namespace lattice {

// What a listing needs to know about one stored checkpoint (read from its manifest).
struct CheckpointInfo {
  int64_t step = 0;    // 0: the final checkpoint
  int64_t bytes = 0;   // the whole checkpoint
  int64_t chunks = 0;
  std::string header;  // the checkpoint's first line (without the '\n')
};

class CheckpointStore {
 public:
  // The step of the final checkpoint of a trial.
  static constexpr int64_t kFinal = 0;
  // Bytes per chunk (and per control message) unless a caller chooses otherwise: 16 MiB.
  static constexpr int64_t kChunkBytes = int64_t{16} << 20;

  // `store` must outlive this object.
  explicit CheckpointStore(const StateStore* store) : store_(store) {}

  // Streams one checkpoint of `total_bytes` into the store, piece by piece, in order; each
  // piece becomes one chunk. Finish() adds the manifest: call it in the batch of the last
  // piece.
  class Writer {
   public:
    Writer(TrialId trial, int64_t step, int64_t total_bytes);

    // Adds the piece that starts at `offset`. InvalidArgument (nothing added) when it does
    // not continue the checkpoint (offset != bytes received so far, or past total_bytes).
    Status Add(StateWriteBatch& batch, int64_t offset, std::string piece);
    bool complete() const { return received_ == total_; }
    // Adds the manifest. Requires complete().
    void Finish(StateWriteBatch& batch) const;
    // Deletes the chunks added so far (a transfer that will never finish).
    void Abandon(StateWriteBatch& batch) const;

    int64_t step() const { return step_; }
    int64_t total() const { return total_; }
    // The checkpoint's first line, once the first piece has arrived.
    const std::string& header() const { return header_; }

   private:
    TrialId trial_;
    int64_t step_ = 0;
    int64_t total_ = 0;
    int64_t received_ = 0;
    std::string header_;
    std::vector<std::pair<int64_t, uint32_t>> chunks_;  // bytes, CRC-32
  };

  // Adds a whole checkpoint (chunks + manifest) to `batch`.
  static void Put(StateWriteBatch& batch, const TrialId& trial, int64_t step,
                  std::string_view bytes, int64_t chunk_bytes = kChunkBytes);
  // Deletes a checkpoint's manifest and all its chunks in `batch`.
  static void Delete(StateWriteBatch& batch, const TrialId& trial, int64_t step);
  // Delete, plus a record that step checkpoint `step` existed: `summary` (ListPruned).
  static void Prune(StateWriteBatch& batch, const TrialId& trial, int64_t step,
                    const nlohmann::json& summary);

  // The checkpoint's bytes, each chunk checked against the manifest. NotFound when there is
  // no such checkpoint; DataLoss naming the trial, step and chunk when a chunk is missing,
  // has the wrong size or fails its CRC-32.
  StatusOr<std::string> Read(const TrialId& trial, int64_t step) const;
  // The manifest of one checkpoint. NotFound when absent.
  StatusOr<CheckpointInfo> Info(const TrialId& trial, int64_t step) const;
  // The step checkpoints (step > 0) of `trial`, ascending; manifests only.
  StatusOr<std::vector<CheckpointInfo>> ListSteps(const TrialId& trial) const;
  // The records Prune left for `trial`, ascending by step: (step, summary).
  StatusOr<std::vector<std::pair<int64_t, nlohmann::json>>> ListPruned(const TrialId& trial) const;
  // Deletes, in `batch`, the chunks of `trial` that no manifest accounts for (a transfer
  // the process died in). Returns how many chunks that is.
  StatusOr<int64_t> DeleteOrphanChunks(StateWriteBatch& batch, const TrialId& trial) const;

  // Where the final checkpoint of `trial` lives ("<trial key>/final"): shown to users as
  // lineage (an index's built_from.checkpoint.key); not for building lookups.
  static std::string FinalKey(const TrialId& trial);

 private:
  const StateStore* const store_;
};

}  // namespace lattice
