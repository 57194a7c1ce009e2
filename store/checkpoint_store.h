// CheckpointStore: the stored weights of train trials, in the state store's
// "checkpoints" column family (BlobDB: large values live in blob files).
//
// Key layout (owned here, nobody else builds these keys; format: jobs/checkpoint.h):
//   "<TrialId::Key()>/final"              the final checkpoint of a completed trial
//   "<TrialId::Key()>/step/<12 digits>"   a step checkpoint (after that many optimizer steps)
// Keys sort by sweep, trial, then step.
//
// A final checkpoint is written in the same StateWriteBatch as the trial's completion, so a
// trial that reads "completed" has its checkpoint. A step checkpoint is written with the
// deletions that retention decides in the same batch, so no pruned checkpoint survives
// half-deleted. One RocksDB value per checkpoint (BlobDB keeps large ones out of the LSM
// tree); chunking of multi-GB checkpoints is not done yet.
//
// Thread-safety: as StateStore (reads from any thread; the coordinator thread writes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "store/state_store.h"

namespace lattice {

class CheckpointStore {
 public:
  // `store` must outlive this object.
  explicit CheckpointStore(const StateStore* store) : store_(store) {}

  // Adds the final checkpoint of `trial` to `batch`.
  static void PutFinal(StateWriteBatch& batch, const TrialId& trial, std::string bytes);
  // The final checkpoint of `trial`; NotFound when it has none.
  StatusOr<std::string> GetFinal(const TrialId& trial) const;

  // Step checkpoints.
  static void PutStep(StateWriteBatch& batch, const TrialId& trial, int64_t step, std::string bytes);
  static void DeleteStep(StateWriteBatch& batch, const TrialId& trial, int64_t step);
  // The steps stored for `trial`, ascending (keys only: no checkpoint is read).
  StatusOr<std::vector<int64_t>> ListSteps(const TrialId& trial) const;
  // The stored step checkpoints of `trial` with their bytes, ascending, in one scan.
  StatusOr<std::vector<std::pair<int64_t, std::string>>> ReadSteps(const TrialId& trial) const;
  // NotFound when that step is not stored (never written, or pruned).
  StatusOr<std::string> GetStep(const TrialId& trial, int64_t step) const;

  // Where the final checkpoint of `trial` lives ("<trial key>/final"): shown to users as
  // lineage (an index's built_from.checkpoint.key); not for building lookups.
  static std::string FinalKey(const TrialId& trial);

 private:
  const StateStore* const store_;
};

}  // namespace lattice
