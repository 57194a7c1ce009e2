// VectorBlockStore: the vectors (and item metadata) that embed shards produced, held in
// the state store's "items" column family until the sweep's index is published.
//
// Key layout and encoding (owned here). An embed sweep that sweeps its embedding (spec
// `search`, scheduler/embed_spec.h) has one set of blocks per variant; variant 0 keeps the
// layout of a sweep without variants:
//   "<SweepId::Key()>/<begin, 12 digits>"      int64 begin, int64 rows, int32 dim, then
//                                              rows*dim float32 (host byte order, little-endian)
//   "<SweepId::Key()>#meta/<begin, 12 digits>" JSON array of per-row JSON object texts
//                                              (only when the corpus has item metadata)
//   variant v >= 1: the same two keys with "-v<v, 6 digits>" after the sweep key:
//   "<SweepId::Key()>-v<v>/<begin>" and "<SweepId::Key()>-v<v>#meta/<begin>"
// Every key of a sweep, of every variant, lies in [<sweep key>#, <sweep key>0) ('#' < '-' <
// '/' < '0'), so a sweep's blocks go with one range deletion.
//
// Life cycle: Put in the same batch as the shard's completion; ReadAll / ReadMetadata by
// the index builder; Delete in the same batch as the sweep's completion (the published
// index holds the vectors from then on), then Compact to give the disk space back.
//
// Thread-safety: as StateStore.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "store/retrieval_metrics.h"
#include "store/state_store.h"

namespace lattice {

struct VectorBlock {
  int64_t begin = 0;                  // corpus row of the first vector
  int64_t rows = 0;
  int dim = 0;
  std::vector<float> data;            // rows * dim, row-major
  std::vector<std::string> metadata;  // per row JSON object text; empty: none
};

class VectorBlockStore {
 public:
  // `store` must outlive this object.
  explicit VectorBlockStore(StateStore* store) : store_(store) {}

  // Adds the block of one shard of `sweep` (of its variant `variant`, >= 0) to `batch`.
  static void Put(StateWriteBatch& batch, SweepId sweep, const VectorBlock& block,
                  int variant = 0);
  // Adds the deletion of every block of `sweep` (every variant's) to `batch`.
  static void Delete(StateWriteBatch& batch, SweepId sweep);

  // All vectors of `sweep`, rows [0, n) in order. Internal when a block is corrupt or rows
  // are missing; FailedPrecondition when there are none or the dimension changes.
  // `variant`: as for Put; only that variant's blocks are read.
  StatusOr<store::FloatMatrix> ReadAll(SweepId sweep, int variant = 0) const;
  // Item metadata of `sweep`'s `variant` (row -> JSON object text); empty when the corpus
  // has none.
  StatusOr<std::unordered_map<int64_t, std::string>> ReadMetadata(SweepId sweep,
                                                                  int variant = 0) const;
  // Compacts the key range of `sweep` (after Delete was committed): frees the disk space.
  Status Compact(SweepId sweep);

 private:
  StateStore* const store_;
};

}  // namespace lattice
