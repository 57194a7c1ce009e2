#include "store/checkpoint_store.h"

namespace lattice {
namespace {
constexpr const char* kCheckpointsCf = "checkpoints";
}  // namespace

std::string CheckpointStore::FinalKey(const TrialId& trial) { return trial.Key() + "/final"; }

void CheckpointStore::PutFinal(StateWriteBatch& batch, const TrialId& trial, std::string bytes) {
  batch.PutRaw(kCheckpointsCf, FinalKey(trial), std::move(bytes));
}

StatusOr<std::string> CheckpointStore::GetFinal(const TrialId& trial) const {
  return store_->Get(kCheckpointsCf, FinalKey(trial));
}

}  // namespace lattice
