// Embed sweeps: a corpus cut into shards (one trial per shard) and the index to build.
//
// Spec (kind: embed):
//   name: fmnist
//   kind: embed
//   encoder: {type: flatten} | {type: torchscript, path: enc.pt, input_shape: [1, 28, 28]}
//          | {type: trial, trial: s3-t4 | s3 | <sweep name>, layer: -2}   (a train trial's
//            checkpoint; checked and resolved to one trial id at submit: scheduler/checkpoints.h)
//   corpus: {format: idx, images: train-images-idx3-ubyte.gz} | {format: npy, features: x.npy}
//           ids: ids.txt              # optional: the user's id of every row (jobs/item_ids.h),
//                                     # read and checked at submit, served by the index
//   pooling: mean | cls | last        normalize: false        batch_size: 256
//   shard_size: 2000                  # corpus rows per shard (trial); default 2000
//   index:
//     name: fmnist                    # default: the sweep name
//     type: hnsw                      # flat | ivf_flat | ivf_pq | hnsw
//     metric: l2                      # l2 | ip
//     params: {M: 16, ef_construction: 100, ef_search: 64}
//     require: {recall@10: 0.95}      # gate: below it the version is not made current
//     eval: {queries: 500, k: 10}     # recall measured on sampled corpus rows vs exact search
//     keep_versions: 3
// Shards are handed out as workers free up (dynamic sharding); a finished shard's
// vectors are stored with its completion, so a killed job never redoes it.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "scheduler/sweep_spec.h"

namespace lattice::scheduler {

// Default corpus rows per shard.
inline constexpr int64_t kDefaultShardSize = 2000;

// Fills out->points ({"shard": i, "begin": b, "end": e}) and out->trial_configs from the
// job config `base`, reading only the corpus file's header. Validates and normalises
// doc["index"] (defaults filled in). InvalidArgument naming the key on bad input.
Status ExpandEmbedSweep(nlohmann::ordered_json* doc, const nlohmann::json& base, SweepSpec* out);

// The user's ids of the rows an embed sweep's index holds (its spec's corpus.ids, read
// again when the index is built: IndexBuilder::ItemIdsFn); empty when it has none.
// Errors as jobs::LoadCorpusItemIds.
StatusOr<std::vector<nlohmann::json>> IndexItemIds(const nlohmann::json& spec);

}  // namespace lattice::scheduler
