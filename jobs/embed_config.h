// Config of an "embed" job — one shard of a corpus run through an encoder — and the
// loading of its corpus. Torch-free (library lattice_jobs_config).
//
// Schema of one shard's job config (every key optional unless marked):
//   {"kind": "embed",                                   (required)
//    "seed": int >= 0 = 0,  "name": string (ignored),
//    "encoder": {"type": "flatten"}                       (required) the raw features are the
//                                                         vectors (dim = corpus columns)
//             | {"type": "torchscript", "path": "enc.pt", "input_shape": [1, 28, 28]},
//                 module input: float32 [B, cols], or [B, *input_shape] when given (the
//                 product of input_shape must equal cols); output: [B, D] or [B, T, D]
//    "corpus": {"format": "idx", "images": "train-images-idx3-ubyte.gz"}   (required)
//            | {"format": "npy", "features": "x.npy"}     (format defaults to npy)
//              plus "scale": number (features *= scale), "limit": int >= 1 (first N rows)
//    "pooling": "mean" | "cls" | "last" = "mean",       over T, used only for [B, T, D]
//    "normalize": bool = false,                          L2-normalise every vector
//    "batch_size": int >= 1 = 256,                       rows per forward call
//    "shard": {"begin": int >= 0 = 0, "end": int > begin (default: all rows)},
//    "index": {...}}                                     coordinator's FAISS index settings;
//                                                        must be an object, ignored here
// Unknown keys, wrong types and bad ranges give InvalidArgument naming the key path
// ("shard.end: must be > shard.begin (10), got 5"). Whether shard.end <= corpus rows can
// only be known once the corpus is loaded: the job checks it ("shard.end: 70000 is beyond
// the corpus rows (60000)"). Relative paths resolve against the working directory.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/dataset.h"

namespace lattice::jobs {

enum class EncoderType { kFlatten, kTorchScript };
enum class Pooling { kMean, kCls, kLast };
enum class CorpusFormat { kIdx, kNpy };

struct EncoderConfig {
  EncoderType type = EncoderType::kFlatten;
  std::string path;                  // torchscript: the module file
  std::vector<int64_t> input_shape;  // torchscript: per-row input shape; empty = [cols]
};

struct CorpusConfig {
  CorpusFormat format = CorpusFormat::kNpy;
  std::string file;              // idx: "images"; npy: "features"
  std::optional<double> scale;   // features *= scale after loading
  std::optional<int64_t> limit;  // keep only the first N rows

  // Key of the loaded matrix: equal keys load identical data.
  std::string CacheKey() const;
};

struct EmbedConfig {
  uint64_t seed = 0;
  EncoderConfig encoder;
  CorpusConfig corpus;
  Pooling pooling = Pooling::kMean;
  bool normalize = false;
  int64_t batch_size = 256;
  int64_t shard_begin = 0;
  std::optional<int64_t> shard_end;  // unset: to the last row of the corpus
};

// Parses a whole job config of kind "embed" (no file-system access). Errors: InvalidArgument.
StatusOr<EmbedConfig> ParseEmbedConfig(const nlohmann::json& config);

// Checks that the encoder file (torchscript) and the corpus file exist and are regular
// files. Error: InvalidArgument "encoder.path: file not found: x.pt".
Status CheckEmbedFilesExist(const EmbedConfig& config);

// Loads the corpus as a row-major float32 matrix with the existing loaders (LoadIdxImages,
// LoadNpyFeatures; gzip-transparent), then applies `limit` and `scale`. Errors carry the
// key path ("corpus.features: x.npy: expected 2-D features, got 3-D").
StatusOr<FeatureMatrix> LoadCorpus(const CorpusConfig& config);

// LoadCorpus through `cache` (keyed by CacheKey(); concurrent calls for one key load it
// once), or uncached when `cache` is null. The coordinator can use this to learn the row
// count before it cuts shards. Thread-safe.
StatusOr<std::shared_ptr<const FeatureMatrix>> LoadCorpusCached(const CorpusConfig& config,
                                                                DatasetCache* cache);

}  // namespace lattice::jobs
