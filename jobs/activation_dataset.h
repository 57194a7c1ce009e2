// Activation datasets: what an embed sweep with `output: {dataset: <name>}` leaves behind,
// and how a train job with `dataset: {activations: <name>}` receives it (torch-free;
// library lattice_jobs_config).
//
// Life cycle:
//   1. The embed sweep's shards store their vectors (and per-row metadata, {"label": 3}
//      when the corpus has labels) as vector blocks in the state store, in the batch that
//      completes each shard (store/vector_block_store.h): a shard killed mid-way runs
//      again and its block is written once, so rows are neither lost nor duplicated.
//   2. When every shard is done the sweep completes with the dataset "ready"; its blocks
//      stay (an index sweep would delete them after publishing). `lattice datasets` /
//      GET /v1/datasets list them.
//   3. A train sweep naming the dataset is checked at submit (unknown name: 400; a sweep
//      still writing it: 409) and every trial's config gets dataset.source = the embed
//      sweep's id. Before a trial's first assignment to a worker the coordinator reads the
//      blocks and sends them as one blob (EncodeActivations) over the checkpoint channel,
//      under the pseudo trial id ActivationsBlobId(sweep); the job finds it through
//      JobContext::checkpoint and decodes it here.
//
// Blob: "lattice-activations/1" '\n' <header JSON line: {"name", "rows", "dim", "labels"}>
// '\n' <rows*dim float32, little-endian> [<rows int64 labels, little-endian>].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "jobs/dataset.h"

namespace lattice::jobs {

inline constexpr char kActivationsFormat[] = "lattice-activations/1";
// The index of the pseudo trial id that carries an activation dataset to workers.
inline constexpr uint32_t kActivationsBlobIndex = 0xFFFFFFFFu;

inline TrialId ActivationsBlobId(SweepId sweep) { return TrialId{sweep, kActivationsBlobIndex}; }

// An activation dataset in memory: features [rows, dim]; labels one per row or empty.
struct ActivationData {
  std::string name;
  FeatureMatrix features;
  std::vector<int64_t> labels;  // empty: the corpus had none
};

// The blob of `data` (labels empty or one per row).
std::string EncodeActivations(const ActivationData& data);

// Decodes a blob. Errors: InvalidArgument for a malformed blob, FailedPrecondition for a
// non-finite value ("dataset.activations fmnist-act: row 17, column 3 is NaN").
StatusOr<ActivationData> DecodeActivations(const std::string& blob);

// Labels from per-row metadata (JSON object texts with an integer "label"), or an empty
// vector when any row has none.
std::vector<int64_t> LabelsFromMetadata(const std::vector<std::string>& metadata);

}  // namespace lattice::jobs
