// The "embed" job kind: one shard (a row range) of a corpus through an encoder
// (library lattice_jobs; this header is torch-free).
//
// Worker-side half of full-corpus embedding. The coordinator cuts a corpus into shards
// ({"shard": {"begin", "end"}}, see jobs/embed_config.h), sends each shard's config to a
// worker, collects the EmbeddingBlocks and builds the index. Protocol of one shard:
//   1. load the corpus matrix through ctx.cache (DatasetCache::GetFeatures, keyed by the
//      corpus JSON), so the shards of one corpus that a worker runs read the file once;
//   2. load the TorchScript encoder through an EncoderCache (keyed by path + mtime + size:
//      a rewritten file is reloaded), put in eval mode;
//   3. for each batch of batch_size rows: check cancellation, forward the rows in place
//      (no copy: the input tensor aliases the cached corpus) under torch::InferenceMode,
//      pool [B, T, D] -> [B, D], append to the result block (reserved once: no zero-fill),
//      checking for NaN/Inf chunk by chunk while the chunk is in cache (one memory pass);
//      flatten copies the corpus rows (checked the same way, unless the corpus loader
//      found every value finite at load: FeatureMatrix::all_finite);
//   4. L2-normalise rows if asked.
//
// Shapes: encoder input float32 [B, cols] or [B, *input_shape]; output [B, D] or [B, T, D]
// (any floating dtype; converted to float32). Pooling: mean over T, cls = token 0,
// last = token T-1. Flatten: the vectors are the corpus rows (after scale).
//
// Errors (no exception escapes):
//   InvalidArgument  bad config, shard outside the corpus ("shard.end: 70000 is beyond the
//                    corpus rows (60000)"), missing or unloadable files
//                    ("encoder.path: file not found: x.pt"), wrong output shapes, and any
//                    error thrown by the encoder's forward ("encoder enc.pt: rows [0, 256): ...")
//   FailedPrecondition  a NaN/Inf in the output ("encoder enc.pt: row 17: output is NaN"),
//                    no checkpoint for encoder {type: trial} (the lookup returned null)
//   Cancelled        the cancel callback returned true (checked before every batch)
//   Internal         any other exception, with context
//
// Threading: RunEmbed sets the process-wide intra-op thread count to ctx.num_threads
// (at::set_num_threads) and seeds the torch RNG with config.seed, so run one job per
// process at a time. EmbedRows sets neither. A cached module is shared between callers;
// TorchScript allows concurrent forward calls on one module. The encoder must not modify
// its input in place (the input aliases the cached corpus).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "jobs/dataset.h"
#include "jobs/embed_config.h"
#include "jobs/train_job.h"

namespace lattice::jobs {

namespace internal {
struct EncoderCacheAccess;  // defined in embed_job.cc
}  // namespace internal

// Loaded TorchScript encoders, keyed by (path, mtime, size), and decoded train checkpoints
// (encoder {type: trial}), keyed by the checkpoint bytes' shared_ptr (a worker keeps one per
// trial), so the shards of one sweep decode it once per worker. Holds at most `max_entries`
// of each, evicting the least recently used. Thread-safe; loads are serialised.
class EncoderCache {
 public:
  explicit EncoderCache(size_t max_entries = 4);
  ~EncoderCache();
  EncoderCache(const EncoderCache&) = delete;
  EncoderCache& operator=(const EncoderCache&) = delete;

  // Number of torch::jit::load calls and checkpoint decodes so far (successful or not).
  int64_t loads() const;

  // The cache used when JobContext::encoders / EmbedOptions::encoders is null.
  static EncoderCache* ProcessDefault();

 private:
  friend struct internal::EncoderCacheAccess;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct EmbedOptions {
  // Polled before every batch; returning true stops with Cancelled. May be empty.
  std::function<bool()> cancelled;
  // Not owned. Null: EncoderCache::ProcessDefault().
  EncoderCache* encoders = nullptr;
  // Checkpoints for encoder {type: trial}, as JobContext::checkpoint. May be empty.
  std::function<std::shared_ptr<const std::string>(const std::string& trial)> checkpoint;
  // Where the encoder runs (JobContext::device); vectors always come back on the CPU.
  // Encoders are cached per process, so one process uses one device. Default: "cpu".
  std::string device = "cpu";
};

// Embeds rows [begin, end) of `corpus` with config.encoder / pooling / normalize /
// batch_size (config.shard_* and config.corpus are ignored: the caller picked the rows).
// Requires 0 <= begin < end <= corpus.rows. Does not set threads or seeds.
// `corpus` is only read and must outlive the call.
StatusOr<EmbeddingBlock> EmbedRows(const EmbedConfig& config, const FeatureMatrix& corpus,
                                   int64_t begin, int64_t end, const EmbedOptions& options = {});

// The whole job (what RunJob runs for kind "embed"): loads the corpus (through ctx.cache),
// resolves the shard (end defaults to the corpus rows), sets threads and seed, runs
// EmbedRows. Result: embeddings set; metrics rows, dim, embed_s (seconds in EmbedRows:
// corpus loading excluded, encoder loading included when it was not cached yet) and
// items_per_s (rows / embed_s).
StatusOr<JobResult> RunEmbed(const EmbedConfig& config, JobContext& ctx);

}  // namespace lattice::jobs
