#include "store/checkpoint_store.h"

#include <cstdio>
#include <cstdlib>

namespace lattice {
namespace {
constexpr const char* kCheckpointsCf = "checkpoints";
}  // namespace

std::string CheckpointStore::FinalKey(const TrialId& trial) { return trial.Key() + "/final"; }

namespace {
std::string StepPrefix(const TrialId& trial) { return trial.Key() + "/step/"; }
std::string StepKey(const TrialId& trial, int64_t step) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%012lld", static_cast<long long>(step));
  return StepPrefix(trial) + digits;
}
}  // namespace

void CheckpointStore::PutStep(StateWriteBatch& batch, const TrialId& trial, int64_t step,
                              std::string bytes) {
  batch.PutRaw(kCheckpointsCf, StepKey(trial, step), std::move(bytes));
}

void CheckpointStore::DeleteStep(StateWriteBatch& batch, const TrialId& trial, int64_t step) {
  const std::string key = StepKey(trial, step);
  batch.DeleteRawRange(kCheckpointsCf, key, key + '\0');
}

StatusOr<std::vector<int64_t>> CheckpointStore::ListSteps(const TrialId& trial) const {
  LATTICE_ASSIGN_OR_RETURN(auto keys, store_->ScanKeys(kCheckpointsCf, StepPrefix(trial)));
  std::vector<int64_t> steps;
  const size_t prefix = StepPrefix(trial).size();
  for (const auto& key : keys) steps.push_back(std::strtoll(key.c_str() + prefix, nullptr, 10));
  return steps;
}

StatusOr<std::vector<std::pair<int64_t, std::string>>> CheckpointStore::ReadSteps(
    const TrialId& trial) const {
  LATTICE_ASSIGN_OR_RETURN(auto rows, store_->Scan(kCheckpointsCf, StepPrefix(trial)));
  std::vector<std::pair<int64_t, std::string>> steps;
  const size_t prefix = StepPrefix(trial).size();
  for (auto& [key, value] : rows) {
    steps.emplace_back(std::strtoll(key.c_str() + prefix, nullptr, 10), std::move(value));
  }
  return steps;
}

StatusOr<std::string> CheckpointStore::GetStep(const TrialId& trial, int64_t step) const {
  return store_->Get(kCheckpointsCf, StepKey(trial, step));
}

void CheckpointStore::PutFinal(StateWriteBatch& batch, const TrialId& trial, std::string bytes) {
  batch.PutRaw(kCheckpointsCf, FinalKey(trial), std::move(bytes));
}

StatusOr<std::string> CheckpointStore::GetFinal(const TrialId& trial) const {
  return store_->Get(kCheckpointsCf, FinalKey(trial));
}

}  // namespace lattice
