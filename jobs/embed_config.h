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
//             | {"type": "trial", "trial": "s3-t4", "layer": -2}
//                 the checkpoint of a finished train trial (jobs/checkpoint.h; a sweep's
//                 id "s3" or name names the sweep's best trial: the coordinator resolves
//                 it at submit and writes the trial id into every shard's config): its model
//                 rebuilt, the trial's input preparation (dataset.scale, standardisation
//                 fitted on its training split) applied to the corpus rows, output taken at
//                 `layer` (default -2: the last hidden block; -1: the logits; 0: the
//                 prepared input; see jobs::ResolveLayer). Corpus columns must equal the
//                 trial's input features. The checkpoint bytes come from
//                 JobContext::checkpoint (the coordinator sends them to the worker).
//    "corpus": {"format": "idx", "images": "train-images-idx3-ubyte.gz"}   (required)
//            | {"format": "npy", "features": "x.npy"}     (format defaults to npy)
//              idx and npy take "labels": an idx1 labels file (idx) or a 1-D int .npy (npy)
//              with one label per corpus row; it only feeds the per-row metadata
//              ({"label": 3}, see EmbeddingBlock::metadata)
//            | {"format": "images", "dir": "/data/imgs", "size": [H, W],
//               "channels": 1 | 3 = 3, "extensions": [".png", ".jpg", ".jpeg", ".bmp"]}
//              a folder of image files (not recursive; see internal/image_folder.h), one
//              row per file in sorted path order; each is decoded (stb_image), converted
//              to grey (1) or RGB (3), resized to H x W (no crop) and stored as C*H*W
//              floats in CHW order, values 0..255 — so a vision encoder takes
//              "input_shape": [C, H, W]. Metadata per row: {"path": "/data/imgs/a.png"}.
//              A shard decodes only its own files (LoadCorpusShard); a file that does not
//              decode fails the shard ("corpus.dir: /data/imgs/b.png: cannot decode ...").
//              Extensions match case-insensitively; H, W in [1, 16384]. Decoding is
//              serial and a shard is held decoded: memory rows * C*H*W * 4 bytes (2000
//              rows of 3x224x224: 1.2 GB), so pick the sweep's shard_size to match.
//            all formats take "scale": number (features *= scale), "limit": int >= 1 (first
//              N rows), and "ids": the user's id of every corpus row (jobs/item_ids.h: .npy
//              integers, a JSON array, or text lines), one per row before limit; the
//              coordinator reads it at submit (a count that does not match or a duplicate
//              id is rejected then) and the published index serves hits by these ids
//              (store/index_catalog.h); workers never read it
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

enum class EncoderType { kFlatten, kTorchScript, kTrial };
enum class Pooling { kMean, kCls, kLast };
enum class CorpusFormat { kIdx, kNpy, kImages };

struct EncoderConfig {
  EncoderType type = EncoderType::kFlatten;
  std::string path;                  // torchscript: the module file
  std::vector<int64_t> input_shape;  // torchscript: per-row input shape; empty = [cols]
  std::string trial;                 // trial: the train trial's id ("s3-t4")
  int64_t layer = -2;                // trial: output layer (jobs::ResolveLayer)
};

struct CorpusConfig {
  CorpusFormat format = CorpusFormat::kNpy;
  std::string file;              // idx: "images"; npy: "features"; images: "dir" (a folder)
  std::string labels;            // idx, npy: "labels" file, or empty
  int height = 0;                // images: "size"[0], pixels
  int width = 0;                 // images: "size"[1], pixels
  int channels = 3;              // images: 1 (grey) or 3 (RGB)
  std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp"};  // images; lower-case
  std::optional<double> scale;   // features *= scale after loading
  std::optional<int64_t> limit;  // keep only the first N rows
  std::string ids;               // "ids": the rows' user ids (jobs/item_ids.h), or empty

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

// Parses one encoder object (the schema above); `path` prefixes errors ("encoder",
// "teacher"). Also used for a distill job's teacher.
StatusOr<EncoderConfig> ParseEncoderConfig(const nlohmann::json& encoder, const std::string& path);

// Checks that the encoder file (torchscript), the corpus file and the labels file exist and
// are regular files, or that the images folder is a directory. Error: InvalidArgument
// "encoder.path: file not found: x.pt", "corpus.dir: not a directory: /x".
Status CheckEmbedFilesExist(const EmbedConfig& config);

// Loads the corpus as a row-major float32 matrix with the existing loaders (LoadIdxImages,
// LoadNpyFeatures; gzip-transparent), then applies `limit` and `scale`. Errors carry the
// key path ("corpus.features: x.npy: expected 2-D features, got 3-D"). An images corpus is
// decoded whole (fine for small folders; a job uses LoadCorpusShard).
StatusOr<FeatureMatrix> LoadCorpus(const CorpusConfig& config);

// LoadCorpus through `cache` (keyed by CacheKey(); concurrent calls for one key load it
// once), or uncached when `cache` is null. The coordinator can use this to learn the row
// count before it cuts shards. Thread-safe.
StatusOr<std::shared_ptr<const FeatureMatrix>> LoadCorpusCached(const CorpusConfig& config,
                                                                DatasetCache* cache);

// The rows of one shard, as RunEmbed embeds them.
struct CorpusShard {
  // Holds corpus rows [offset, offset + matrix->rows): for idx and npy the whole cached
  // corpus (offset 0); for images only the shard's decoded rows (offset == begin).
  std::shared_ptr<const FeatureMatrix> matrix;
  int64_t offset = 0;
  int64_t begin = 0;  // the shard: corpus rows [begin, end)
  int64_t end = 0;
  // end - begin compact JSON objects ({"path": ...} or {"label": ...}), or empty when the
  // corpus has no metadata (idx / npy without "labels").
  std::vector<std::string> metadata;
};

// Loads shard [begin, end) of the corpus (end unset: to the last row). idx / npy go through
// LoadCorpusCached(cache); an images corpus lists the folder and decodes only the shard's
// files, uncached. Labels are read whole per call (uncached) and must number the corpus
// rows before `limit` ("corpus.labels: y.gz: 59999 labels for 60000 corpus rows").
// Errors: InvalidArgument for a shard outside the corpus ("shard.end: 70000 is beyond the
// corpus rows (60000)"), the loaders' errors. Thread-safe.
StatusOr<CorpusShard> LoadCorpusShard(const CorpusConfig& config, int64_t begin,
                                      std::optional<int64_t> end, DatasetCache* cache);

}  // namespace lattice::jobs
