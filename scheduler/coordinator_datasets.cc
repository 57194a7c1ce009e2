// Coordinator: activation datasets — embed sweeps with `output: {dataset}` and the train
// trials that read them (jobs/activation_dataset.h has the life cycle).
#include <cstdio>

#include "jobs/activation_dataset.h"
#include "scheduler/coordinator.h"
#include "store/activation_dataset_store.h"
#include "store/vector_block_store.h"

namespace lattice {
namespace {

// The output dataset's name of an embed sweep's spec, or "".
std::string OutputDataset(const nlohmann::json& spec) {
  if (!spec.contains("output") || !spec["output"].is_object()) return "";
  return spec["output"].value("dataset", "");
}

// The activation dataset a train config reads, or "".
std::string InputDataset(const nlohmann::json& config) {
  if (!config.contains("dataset") || !config["dataset"].is_object()) return "";
  const nlohmann::json& d = config["dataset"];
  return d.contains("activations") && d["activations"].is_string()
             ? d["activations"].get<std::string>()
             : "";
}

}  // namespace

Status Coordinator::ResolveActivationDatasets(scheduler::SweepSpec& spec) {
  ActivationDatasetStore datasets(store_);
  if (spec.kind == JobKind::kEmbed) {
    const std::string name = OutputDataset(spec.spec);
    if (name.empty()) return Status::Ok();
    auto existing = datasets.Get(name);
    if (existing.ok() && existing->state != DatasetState::kFailed) {
      return Status::AlreadyExists("output.dataset: a dataset named \"" + name + "\" is " +
                                   DatasetStateName(existing->state) + " (sweep " +
                                   existing->sweep.ToString() + "); pick another name");
    }
    if (!existing.ok() && existing.status().code() != StatusCode::kNotFound) {
      return existing.status();
    }
    return Status::Ok();
  }
  const std::string name = InputDataset(spec.spec);
  if (name.empty()) return Status::Ok();
  auto record = datasets.Get(name);
  if (!record.ok()) {
    if (record.status().code() == StatusCode::kNotFound) {
      return Status::InvalidArgument("dataset.activations: no activation dataset named \"" +
                                     name + "\" (lattice datasets lists them)");
    }
    return record.status();
  }
  if (record->state == DatasetState::kWriting) {
    return Status::FailedPrecondition("dataset.activations: \"" + name +
                                      "\" is still being written by sweep " +
                                      record->sweep.ToString() + "; submit when it is ready");
  }
  if (record->state == DatasetState::kFailed) {
    return Status::FailedPrecondition("dataset.activations: \"" + name + "\" failed (sweep " +
                                      record->sweep.ToString() + ": " + record->message + ")");
  }
  const std::string source = record->sweep.ToString();
  spec.spec["dataset"]["source"] = source;
  for (nlohmann::json& config : spec.trial_configs) config["dataset"]["source"] = source;
  return Status::Ok();
}

void Coordinator::RecordDatasetSweep(const SweepRecord& sweep, Pending& p) {
  const std::string name = OutputDataset(sweep.spec);
  if (sweep.kind != JobKind::kEmbed || name.empty()) return;
  ActivationDatasetRecord r;
  r.name = name;
  r.sweep = sweep.id;
  r.source = {{"encoder", sweep.spec.value("encoder", nlohmann::json())},
              {"corpus", sweep.spec.value("corpus", nlohmann::json())}};
  r.created_ms = sweep.created_ms;
  ActivationDatasetStore::Put(p.batch, r);
}

bool Coordinator::FinishDatasetSweep(SweepRecord& sweep, Pending& p) {
  const std::string name = OutputDataset(sweep.spec);
  if (name.empty()) return false;
  if (sweep.state == SweepState::kCompleted) {
    // The last shard's block is in this iteration's batch: the rows are checked once it is
    // committed (VerifyDatasets, next iteration).
    sweep.message = "dataset " + name + ": checking its rows";
    datasets_to_verify_.push_back(sweep.id);
    return true;
  }
  auto record = ActivationDatasetStore(store_).Get(name);
  if (!record.ok() || record->sweep != sweep.id) return false;  // written with the submit
  record->state = DatasetState::kFailed;
  record->finished_ms = Now();
  record->message = sweep.message.empty() ? SweepStateName(sweep.state) : sweep.message;
  ActivationDatasetStore::Put(p.batch, *record);
  p.batch.AppendEvent("dataset_failed", {{"sweep", sweep.id.ToString()}, {"dataset", name},
                                         {"error", record->message}});
  return false;
}

bool Coordinator::VerifyDatasets(Pending& p) {
  if (datasets_to_verify_.empty()) return false;
  std::vector<SweepId> ids;
  ids.swap(datasets_to_verify_);
  for (SweepId id : ids) {
    auto sweep = store_->GetSweep(id);
    if (!sweep.ok()) continue;
    const std::string name = OutputDataset(sweep->spec);
    auto record = ActivationDatasetStore(store_).Get(name);
    if (!record.ok() || record->sweep != id || record->state != DatasetState::kWriting) continue;
    ActivationDatasetRecord& r = *record;
    r.finished_ms = Now();
    // Read whole once: ReadAll fails on a gap or an overlap, so every row is there exactly
    // once; it also gives the shape.
    VectorBlockStore blocks(store_);
    auto vectors = blocks.ReadAll(id);
    auto metadata = vectors.ok() ? blocks.ReadMetadata(id)
                                 : StatusOr<std::unordered_map<int64_t, std::string>>(
                                       vectors.status());
    if (vectors.ok() && metadata.ok()) {
      r.state = DatasetState::kReady;
      r.rows = vectors->rows;
      r.dim = vectors->dim;
      r.labels = static_cast<int64_t>(metadata->size()) == vectors->rows;
      sweep->message = "dataset " + name + ": " + std::to_string(r.rows) + " rows x " +
                       std::to_string(r.dim) + (r.labels ? ", labelled" : "");
    } else {
      const Status& s = vectors.ok() ? metadata.status() : vectors.status();
      sweep->state = SweepState::kFailed;
      sweep->message = "dataset " + name + ": " + s.message();
      r.state = DatasetState::kFailed;
      r.message = s.message();
      VectorBlockStore::Delete(p.batch, id);
      p.reclaim_blocks.push_back(id);
    }
    p.batch.PutSweep(*sweep);
    ActivationDatasetStore::Put(p.batch, r);
    p.batch.AppendEvent(r.state == DatasetState::kReady ? "dataset_ready" : "dataset_failed",
                        {{"sweep", id.ToString()}, {"dataset", name}, {"rows", r.rows},
                         {"dim", r.dim}, {"error", r.message}});
    std::fprintf(stderr, "coordinator: sweep %s: %s\n", id.ToString().c_str(),
                 sweep->message.c_str());
  }
  return true;
}

void Coordinator::SendDatasetIfNeeded(WorkerRank rank, const TrialRecord& t, Pending& p) {
  const std::string name = InputDataset(t.config);
  if (name.empty()) return;
  auto source = SweepId::Parse(t.config["dataset"].value("source", ""));
  if (!source) return;  // the job fails: "not received from the coordinator"
  const TrialId blob_id = jobs::ActivationsBlobId(*source);
  if (slot(rank).checkpoints_sent.count(blob_id)) return;
  VectorBlockStore blocks(store_);
  auto vectors = blocks.ReadAll(*source);
  auto metadata = vectors.ok() ? blocks.ReadMetadata(*source)
                               : StatusOr<std::unordered_map<int64_t, std::string>>(
                                     vectors.status());
  if (!vectors.ok() || !metadata.ok()) {  // the worker fails the trial: "not received ..."
    std::fprintf(stderr, "coordinator: dataset %s for %s: %s\n", name.c_str(),
                 t.id.ToString().c_str(),
                 (vectors.ok() ? metadata.status() : vectors.status()).ToString().c_str());
    return;
  }
  jobs::ActivationData data;
  data.name = name;
  data.features.rows = vectors->rows;
  data.features.cols = vectors->dim;
  data.features.data = std::move(vectors->data);
  if (static_cast<int64_t>(metadata->size()) == vectors->rows) {
    std::vector<std::string> rows(static_cast<size_t>(vectors->rows));
    for (auto& [row, text] : *metadata) {
      if (row >= 0 && row < vectors->rows) rows[static_cast<size_t>(row)] = std::move(text);
    }
    data.labels = jobs::LabelsFromMetadata(rows);
  }
  slot(rank).checkpoints_sent.insert(blob_id);
  for (auto& piece :
       SplitCheckpoint(blob_id, 0, CheckpointStore::kFinal, jobs::EncodeActivations(data))) {
    p.sends.emplace_back(rank, std::move(piece));
  }
}

}  // namespace lattice
