// Builds, evaluates and publishes the vector index of a finished embed sweep.
//
// Protocol (one background thread per build, so the scheduling loop never waits):
//   1. read the sweep's vector blocks (store/vector_block_store.h; one block per shard)
//      and check that they cover rows [0, n) exactly;
//   2. build the index the spec names (index.type / metric / params), ids = corpus rows;
//      the user's ids of those rows, when the corpus has them (ItemIdsFn), are published
//      with the version (store/index_catalog.h, ids.json) and name the hits;
//   3. measure recall@10 and MRR@10 on index.eval.queries corpus rows sampled with a fixed
//      seed, against exact (flat) search;
//   4. if index.require.recall@10 is set and not met, stop: the version is not published;
//   5. when the spec has `metric` ({name, qrels, relevant_at}: scheduler/embed_spec.h),
//      measure it against the judgments: each judged query id is an item of the index (a
//      user id from ItemIdsFn, else a row number), searched with its own stored vector for
//      the top k + 1, itself left out (as a search by item, `lattice index eval --by-item`);
//      store/relevance_metrics.h computes the means. meta["retrieval"] = {"metric": name,
//      "value": v, "queries", "evaluated", <every metric of that cutoff>}. A judgments
//      file that cannot be read or has no evaluable query fails the build;
//   6. publish to the catalog (new version, CURRENT switched atomically).
// An embed sweep over variants builds one index per variant: Start gets the variant's
// number (its vector blocks, store/vector_block_store.h) and a SweepRecord whose spec is the
// variant's view (index.name the variant's index, encoder / pooling / normalize its own).
// A build that cannot publish for lack of disk space (less than `min_free_bytes` plus room
// for the index files free — not checked when it is 0 —, or the disk filled up while
// writing) ends InsufficientStorage and leaves nothing behind; the coordinator starts it
// again once there is space.
// The outcome is collected by the coordinator (TakeFinished) which finishes the sweep and
// deletes the sweep's vector blocks (the published index holds them from then on).
//
// Thread-safety: Start, ReclaimBlocks and TakeFinished may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/disk_space.h"
#include "store/records.h"
#include "store/state_store.h"

namespace lattice {

struct IndexBuildOutcome {
  SweepId sweep;
  Status status;                 // OK: published
  nlohmann::json meta;           // what was measured (also for a failed gate)
  int64_t version = 0;
  int variant = 0;               // of an embed sweep over variants; 0 otherwise
};

class IndexBuilder {
 public:
  // What the index records about where its vectors came from, beyond the sweep, its name
  // and its encoder (e.g. {"checkpoint": {...}} for an encoder that is a train trial).
  // Called on the build thread.
  using LineageFn = std::function<nlohmann::json(const SweepRecord&)>;

  // The user's ids of the sweep's corpus rows (one per vector, in row order), or an empty
  // vector when the corpus has none. Called on the build thread.
  using ItemIdsFn =
      std::function<StatusOr<std::vector<nlohmann::json>>(const SweepRecord&)>;

  // `store` must outlive the builder; indexes are published under `catalog_root`.
  // `lineage` and `item_ids` may be empty. `min_free_bytes`: the disk space reserve (see
  // above).
  IndexBuilder(StateStore* store, std::string catalog_root, LineageFn lineage = {},
               int64_t min_free_bytes = kDefaultMinFreeBytes, ItemIdsFn item_ids = {});
  ~IndexBuilder();  // waits for running builds

  // Builds the index of `sweep`'s `variant` (0 for a sweep without variants) in the
  // background: sweep.spec["index"] names it.
  void Start(const SweepRecord& sweep, int variant = 0);
  // After the deletion of a finished sweep's vector blocks was committed: compacts their
  // key range in the background so that the disk space is given back (errors are logged).
  void ReclaimBlocks(SweepId sweep);
  std::vector<IndexBuildOutcome> TakeFinished();
  bool Busy() const;

 private:
  IndexBuildOutcome Build(const SweepRecord& sweep, int variant);
  // "built_from" of the published version: sweep, name, encoder, plus lineage_.
  nlohmann::json BuiltFrom(const SweepRecord& sweep) const;

  StateStore* const store_;
  const std::string catalog_root_;
  const LineageFn lineage_;
  const ItemIdsFn item_ids_;
  const int64_t min_free_bytes_;
  mutable std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<IndexBuildOutcome> finished_;
  int running_ = 0;
};

}  // namespace lattice
