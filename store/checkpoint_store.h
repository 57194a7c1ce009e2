// CheckpointStore: the stored weights of train trials, in the state store's
// "checkpoints" column family (BlobDB: large values live in blob files).
//
// Key layout (owned here, nobody else builds these keys): "<TrialId::Key()>/final" holds
// the final checkpoint of a completed trial (format: jobs/checkpoint.h). Keys sort by
// sweep, then trial.
//
// A checkpoint is written in the same StateWriteBatch as the trial's completion, so a
// trial that reads "completed" has its checkpoint.
//
// Thread-safety: as StateStore (reads from any thread; the coordinator thread writes).
#pragma once

#include <string>

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

  // Where the final checkpoint of `trial` lives ("<trial key>/final"): shown to users as
  // lineage (an index's built_from.checkpoint.key); not for building lookups.
  static std::string FinalKey(const TrialId& trial);

 private:
  const StateStore* const store_;
};

}  // namespace lattice
