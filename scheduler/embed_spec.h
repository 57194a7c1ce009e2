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
//   search:                           # optional: embedding variants, one index each
//     method: grid
//     parameters: {pooling: [mean, last], normalize: [false, true],
//                  encoder.layer: [-2, -3], encoder: [{type: flatten}, {...}]}
//                                     # only pooling, normalize, encoder, encoder.<key>
//   metric:                           # optional: rank the variants by a retrieval metric
//     name: ndcg@10                   # recall@k | hit@k | precision@k | ndcg@k | mrr@k | map@k
//     qrels: judgments.qrels          # store/qrels.h (TREC or JSON); read and checked at
//                                     # submit: every query id is an item of the corpus
//     relevant_at: 3                  # grade counted relevant (binary metrics); default 1
// Shards are handed out as workers free up (dynamic sharding); a finished shard's
// vectors are stored with its completion, so a killed job never redoes it.
//
// Variants: trials = variants x shards, variant-major (trial v * shards + s); each point
// is the variant's params plus {variant: v, shard, begin, end}. Variant v publishes index
// "<index.name>-<label>", the label made of the point ("pooling-mean-normalize-true"), or
// "<index.name>-v<v>" when that is no valid index name (a whole encoder object); the
// names are checked at submit and must differ. The normalised spec gets "variants": [{
// "variant", "index", "params", "embedding": {encoder, pooling, normalize}}] (the
// coordinator builds each variant's index from it). `output` with search or metric is
// refused. A variant's index is built as soon as its shards are done; with `metric` the
// builder then evaluates it (each judged query is an item, searched with its own vector,
// itself left out of its hits, as `lattice index eval --by-item` does) and the variant's
// trials get the value as their objective (sweep metric = metric.name, maximize), so the
// sweep's best trial is a trial of the best variant.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "scheduler/sweep_spec.h"

namespace lattice::scheduler {

// Default corpus rows per shard.
inline constexpr int64_t kDefaultShardSize = 2000;

// Fills out->points ({"shard": i, "begin": b, "end": e}, plus the variant's params and
// "variant" with a search) and out->trial_configs from the job config `base`, reading only
// the corpus file's header (and its ids and the metric's qrels). Validates and normalises
// doc["index"] and doc["metric"] (defaults filled in) and adds doc["variants"].
// InvalidArgument naming the key on bad input.
Status ExpandEmbedSweep(nlohmann::ordered_json* doc, const nlohmann::json& base, SweepSpec* out);

// The user's ids of the rows an embed sweep's index holds (its spec's corpus.ids, read
// again when the index is built: IndexBuilder::ItemIdsFn); empty when it has none.
// Errors as jobs::LoadCorpusItemIds.
StatusOr<std::vector<nlohmann::json>> IndexItemIds(const nlohmann::json& spec);

}  // namespace lattice::scheduler
