#include "scheduler/checkpoints.h"

#include <algorithm>
#include <optional>

#include "jobs/train_config.h"
#include "store/checkpoint_store.h"
#include "scheduler/trial_state_machine.h"

namespace lattice {

namespace {

// The completed trial of `sweep` with the best objective (ties: the lowest index).
StatusOr<TrialId> BestTrial(const StateStore& store, SweepId sweep, const std::string& key) {
  auto record = store.GetSweep(sweep);
  if (!record.ok()) {
    if (record.status().code() == StatusCode::kNotFound) {
      return Status::InvalidArgument(key + ".trial: no sweep " + sweep.ToString());
    }
    return record.status();
  }
  if (record->state == SweepState::kRunning) {
    return Status::InvalidArgument(key + ".trial: sweep " + sweep.ToString() +
                                   " is still running; its best trial is not known yet");
  }
  LATTICE_ASSIGN_OR_RETURN(std::vector<TrialRecord> trials, store.ListTrials(sweep));
  trials.erase(std::remove_if(trials.begin(), trials.end(),
                              [](const TrialRecord& t) { return t.checkpoint_bytes == 0; }),
               trials.end());
  std::optional<size_t> best = scheduler::BestTrial(trials, record->maximize);
  if (!best) {
    return Status::InvalidArgument(key + ".trial: sweep " + sweep.ToString() +
                                   " has no completed trial with a checkpoint and a " +
                                   record->metric + " value");
  }
  return trials[*best].id;
}

}  // namespace

StatusOr<TrialEncoder> ResolveTrialEncoder(const StateStore& store, const nlohmann::json& encoder,
                                           const std::string& key) {
  std::string text = encoder.value("trial", "");
  std::optional<TrialId> id = TrialId::Parse(text);
  if (!id) {
    std::optional<SweepId> sweep = SweepId::Parse(text);
    if (!sweep) {
      LATTICE_ASSIGN_OR_RETURN(std::vector<SweepRecord> sweeps, store.ListSweeps());
      for (const SweepRecord& r : sweeps) {  // ascending: the last match is the newest
        if (r.name == text && r.state != SweepState::kRunning) sweep = r.id;
      }
      if (!sweep) {
        return Status::InvalidArgument(key + ".trial: \"" + text + "\" is neither a trial id "
                                       "(s3-t4), a sweep id (s3) nor the name of a finished sweep");
      }
    }
    LATTICE_ASSIGN_OR_RETURN(id, BestTrial(store, *sweep, key));
    text = id->ToString();
  }
  auto trial = store.GetTrial(*id);
  if (!trial.ok()) {
    if (trial.status().code() == StatusCode::kNotFound) {
      return Status::InvalidArgument(key + ".trial: no trial " + text);
    }
    return trial.status();
  }
  if (trial->state != TrialState::kCompleted) {
    return Status::InvalidArgument(key + ".trial: " + text + " is " + TrialStateName(trial->state) +
                                   "; only a completed train trial has a checkpoint");
  }
  auto info = CheckpointStore(&store).Info(*id, CheckpointStore::kFinal);
  if (!info.ok()) {
    if (info.status().code() == StatusCode::kNotFound) {
      return Status::InvalidArgument(key + ".trial: " + text + " has no checkpoint (kind " +
                                     trial->config.value("kind", "?") +
                                     ", or train.checkpoint: false)");
    }
    return info.status();
  }
  TrialEncoder out;
  out.trial = *id;
  out.bytes = info->bytes;
  out.params = trial->params;
  auto header = jobs::ParseCheckpointHeaderLine(info->header);
  if (!header.ok()) return header.status().WithContext(key + ".trial: " + text);
  out.header = std::move(header).value();
  auto config = jobs::ParseJobConfig(out.header.config);
  if (!config.ok()) return config.status().WithContext(key + ".trial: " + text + ": checkpoint");
  LATTICE_ASSIGN_OR_RETURN(out.layer, jobs::ResolveLayer(encoder.value("layer", int64_t{-2}),
                                                         config->model.HiddenLayers(),
                                                         key + ".layer"));
  return out;
}

nlohmann::json CheckpointLineage(const TrialEncoder& encoder) {
  return {{"trial", encoder.trial.ToString()}, {"sweep", encoder.trial.sweep.ToString()},
          {"key", CheckpointStore::FinalKey(encoder.trial)}, {"layer", encoder.layer},
          {"epochs", encoder.header.epochs},    {"bytes", encoder.bytes},
          {"params", encoder.params},                   {"metrics", encoder.header.metrics}};
}

nlohmann::json EncoderLineage(const StateStore& store, const SweepRecord& sweep) {
  const nlohmann::json encoder = sweep.spec.value("encoder", nlohmann::json());
  if (!encoder.is_object() || encoder.value("type", "") != "trial") return nlohmann::json::object();
  auto resolved = ResolveTrialEncoder(store, encoder);
  return {{"checkpoint", resolved.ok() ? CheckpointLineage(*resolved)
                                       : nlohmann::json{{"trial", encoder.value("trial", "")},
                                                        {"error", resolved.status().message()}}}};
}

}  // namespace lattice
