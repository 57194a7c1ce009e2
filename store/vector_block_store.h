// VectorBlockStore: the vectors (and item metadata) that embed shards produced, held in
// the state store's "items" column family until the sweep's index is published.
//
// Key layout and encoding (owned here):
//   "<SweepId::Key()>/<begin, 12 digits>"      int64 begin, int64 rows, int32 dim, then
//                                              rows*dim float32 (host byte order, little-endian)
//   "<SweepId::Key()>#meta/<begin, 12 digits>" JSON array of per-row JSON object texts
//                                              (only when the corpus has item metadata)
// Every key of a sweep lies in [<sweep key>#, <sweep key>0), so a sweep's blocks go with
// one range deletion.
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

  // Adds the block of one shard of `sweep` to `batch`.
  static void Put(StateWriteBatch& batch, SweepId sweep, const VectorBlock& block);
  // Adds the deletion of every block of `sweep` to `batch`.
  static void Delete(StateWriteBatch& batch, SweepId sweep);

  // All vectors of `sweep`, rows [0, n) in order. Internal when a block is corrupt or rows
  // are missing; FailedPrecondition when there are none or the dimension changes.
  StatusOr<store::FloatMatrix> ReadAll(SweepId sweep) const;
  // Item metadata of `sweep` (row -> JSON object text); empty when the corpus has none.
  StatusOr<std::unordered_map<int64_t, std::string>> ReadMetadata(SweepId sweep) const;
  // Compacts the key range of `sweep` (after Delete was committed): frees the disk space.
  Status Compact(SweepId sweep);

 private:
  StateStore* const store_;
};

}  // namespace lattice
