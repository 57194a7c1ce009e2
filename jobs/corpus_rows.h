// Row count of an embed corpus from its file header alone, or from a folder listing for an
// images corpus (torch-free; gz-transparent), so the scheduler can cut a 10M-row corpus
// into shards without loading it.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "jobs/embed_config.h"

namespace lattice::jobs {

// Rows the corpus holds after `limit`: idx3 images (magic 2051: the item count), .npy
// (the first dimension of `shape`) or an images folder (its image files: the folder is
// listed, nothing decoded; an empty folder gives 0). InvalidArgument naming the file for a
// bad header, "corpus.dir: not a directory: x" for a missing folder.
StatusOr<int64_t> CountCorpusRows(const CorpusConfig& corpus);

}  // namespace lattice::jobs
