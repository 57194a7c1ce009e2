// Builds, evaluates and publishes the vector index of a finished embed sweep.
//
// Protocol (one background thread per build, so the scheduling loop never waits):
//   1. read the sweep's vector blocks from the "items" column family (one block per
//      shard, key VectorBlockKey) and check that they cover rows [0, n) exactly;
//   2. build the index the spec names (index.type / metric / params), ids = corpus rows;
//   3. measure recall@10 and MRR@10 on index.eval.queries corpus rows sampled with a fixed
//      seed, against exact (flat) search;
//   4. if index.require.recall@10 is set and not met, stop: the version is not published;
//   5. publish to the catalog (new version, CURRENT switched atomically).
// The outcome is collected by the coordinator (TakeFinished) which finishes the sweep.
//
// Thread-safety: Start and TakeFinished may be called from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/records.h"
#include "store/state_store.h"

namespace lattice {

// RocksDB key of the vectors of an embed shard: "<sweep key>/<begin, 12 digits>".
std::string VectorBlockKey(SweepId sweep, int64_t begin);
// Value: int64 begin, int64 rows, int32 dim, then rows*dim float32 (little-endian).
// The shard's item metadata, when its corpus has any, is a JSON array of per-row JSON
// object texts under MetadataBlockKey (a separate key range: "<sweep key>#meta/<begin>").
std::string MetadataBlockKey(SweepId sweep, int64_t begin);
std::string EncodeVectorBlock(int64_t begin, int64_t rows, int dim, const std::vector<float>& data);

struct IndexBuildOutcome {
  SweepId sweep;
  Status status;                 // OK: published
  nlohmann::json meta;           // what was measured (also for a failed gate)
  int64_t version = 0;
};

class IndexBuilder {
 public:
  // `store` must outlive the builder; indexes are published under `catalog_root`.
  IndexBuilder(StateStore* store, std::string catalog_root);
  ~IndexBuilder();  // waits for running builds

  void Start(const SweepRecord& sweep);
  std::vector<IndexBuildOutcome> TakeFinished();
  bool Busy() const;

 private:
  IndexBuildOutcome Build(const SweepRecord& sweep);

  StateStore* const store_;
  const std::string catalog_root_;
  mutable std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<IndexBuildOutcome> finished_;
  int running_ = 0;
};

}  // namespace lattice
