// Row count of an embed corpus from its file header alone (torch-free; gz-transparent),
// so the scheduler can cut a 10M-row corpus into shards without loading it.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "jobs/embed_config.h"

namespace lattice::jobs {

// Rows the corpus holds after `limit`: idx3 images (magic 2051: the item count) or .npy
// (the first dimension of `shape`). InvalidArgument naming the file for a bad header.
StatusOr<int64_t> CountCorpusRows(const CorpusConfig& corpus);

}  // namespace lattice::jobs
