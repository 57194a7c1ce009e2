// A train trial's checkpoint as an embed encoder (encoder {type: trial, trial: s3-t4,
// layer: -2}; format in jobs/checkpoint.h; storage in store/checkpoint_store.h).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/status.h"
#include "jobs/checkpoint.h"
#include "store/state_store.h"

namespace lattice {

// A checkpoint an embed sweep's encoder refers to, checked against the store.
struct TrialEncoder {
  TrialId trial;
  jobs::CheckpointHeader header;
  int64_t bytes = 0;
  int64_t layer = 0;  // resolved, >= 0
  nlohmann::json params;  // the trial's grid / random point
};

// Resolves `encoder` ({type: trial, trial, layer}) for an embed sweep at submit time.
// `trial` is a trial id ("s3-t4"), or a finished sweep's id ("s3") or name (the newest
// finished sweep of that name): then the sweep's completed trial with the best objective
// (by its metric and goal) that has a checkpoint.
// Errors name the key: InvalidArgument "encoder.trial: no trial s9-t0",
// "encoder.trial: s3-t1 is failed; only a completed train or distill trial has a checkpoint",
// "encoder.trial: s3-t1 has no checkpoint (kind noop, or train.checkpoint: false)",
// "encoder.trial: sweep s3 is still running; ...", "encoder.layer: 5 is out of range ...".
// `key` names the spec section in errors: "encoder" (embed) or "teacher" (distill).
StatusOr<TrialEncoder> ResolveTrialEncoder(const StateStore& store, const nlohmann::json& encoder,
                                           const std::string& key = "encoder");

// What an index records about the checkpoint it was embedded with ("built_from.checkpoint"):
// {"trial", "sweep", "key", "layer", "epochs", "bytes", "params", "metrics"}.
nlohmann::json CheckpointLineage(const TrialEncoder& encoder);

// The lineage an embed sweep's index records beyond its encoder (IndexBuilder::LineageFn):
// {"checkpoint": CheckpointLineage(...)} for encoder {type: trial} ({"checkpoint":
// {"trial", "error"}} when it no longer resolves), else {}.
nlohmann::json EncoderLineage(const StateStore& store, const SweepRecord& sweep);

}  // namespace lattice
