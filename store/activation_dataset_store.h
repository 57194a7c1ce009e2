// ActivationDatasetStore: the catalog of activation datasets, the outputs of embed sweeps
// with `output: {dataset: <name>}` (jobs/activation_dataset.h has the life cycle).
//
// The rows themselves are the sweep's vector blocks (store/vector_block_store.h), kept
// after the sweep completes. This catalog holds one record per name in the state store's
// "items" column family under "dataset/<name>" (sweep keys are digits, so no sweep's block
// range contains it). Records are written in the coordinator's batches: "writing" with
// the submit, "ready" or "failed" with the sweep's end.
//
// Thread-safety: as StateStore.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/status.h"
#include "store/state_store.h"

namespace lattice {

enum class DatasetState { kWriting, kReady, kFailed };
const char* DatasetStateName(DatasetState state);

struct ActivationDatasetRecord {
  std::string name;
  SweepId sweep;  // the embed sweep that writes it
  DatasetState state = DatasetState::kWriting;
  int64_t rows = 0;     // set when ready
  int dim = 0;          // set when ready
  bool labels = false;  // every row carries a label (the corpus had them)
  nlohmann::json source = nlohmann::json::object();  // the embed spec's encoder and corpus
  int64_t created_ms = 0;
  int64_t finished_ms = 0;
  std::string message;  // why it failed

  nlohmann::json ToJson() const;
  static StatusOr<ActivationDatasetRecord> FromJson(const nlohmann::json& j);
};

class ActivationDatasetStore {
 public:
  // `store` must outlive this object.
  explicit ActivationDatasetStore(const StateStore* store) : store_(store) {}

  static void Put(StateWriteBatch& batch, const ActivationDatasetRecord& record);

  // NotFound "no activation dataset named X" when absent.
  StatusOr<ActivationDatasetRecord> Get(const std::string& name) const;
  // Every record, by name.
  StatusOr<std::vector<ActivationDatasetRecord>> List() const;

 private:
  const StateStore* const store_;
};

}  // namespace lattice
