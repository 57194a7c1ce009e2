// Datasets for train jobs: loaders for .npy, MNIST idx and CSV files, the train/validation
// split, and a per-worker cache. Torch-free (library lattice_jobs_config).
//
// In memory a dataset part is a dense row-major float32 matrix plus int64 class labels
// (>= 0). Every file is read through zlib, so any file may be gzip-compressed.
// Loaders return InvalidArgument with the file name in the message on malformed input
// ("x.npy: expected 2-D features, got 3-D"); LoadDataset prefixes the config key path
// ("dataset.features: x.npy: ...").
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/train_config.h"

namespace lattice::jobs {

// A dense row-major float32 matrix: element (r, c) is data[r * cols + c].
struct FeatureMatrix {
  std::vector<float> data;
  int64_t rows = 0;
  int64_t cols = 0;
  // Every value is finite (no NaN / Inf). Set by the corpus loaders (jobs/embed_config.h),
  // which scan once at load; false = not known, so consumers check for themselves.
  bool all_finite = false;
  // Token sequences (jobs/token_data.h): each row is `tokens` tokens of cols / tokens
  // values; 0: plain rows.
  int64_t tokens = 0;
};

// One part of a dataset: features.rows == labels.size().
struct DatasetPart {
  FeatureMatrix features;
  std::vector<int64_t> labels;
  FeatureMatrix targets;  // paired target embeddings (jobs/token_data.h); rows 0: none
};

// What the files of a DatasetConfig hold, after `limit` and `scale` were applied.
struct LoadedDataset {
  DatasetPart train;
  std::optional<DatasetPart> validation;  // set iff the config names validation files
  std::optional<DatasetPart> test;        // set iff the config names test files
  int64_t num_classes = 0;                // max label + 1 over both parts
};

// .npy (format versions 1-3, C order, little-endian). Features: 2-D of <f4, <f8, <i8,
// <i4 or u1, converted to float32. Labels: 1-D of <i8, <i4 or u1.
StatusOr<FeatureMatrix> LoadNpyFeatures(const std::string& path);
StatusOr<std::vector<int64_t>> LoadNpyLabels(const std::string& path);
// Item ids: a 1-D integer .npy (<i8, <i4 or u1), any values (labels must be >= 0).
StatusOr<std::vector<int64_t>> LoadNpyIds(const std::string& path);
// A whole data file's bytes (gzip-transparent), checked against the data roots
// (jobs/data_roots.h) like every dataset file.
StatusOr<std::string> ReadDataFile(const std::string& path);
// As LoadNpyFeatures, and also 3-D [N, T, D] token sequences (rows of T * D values,
// FeatureMatrix::tokens = T).
StatusOr<FeatureMatrix> LoadNpyTokens(const std::string& path);
// The shape in a .npy's header, or an idx file's dimensions, reading only the header.
StatusOr<std::vector<int64_t>> ReadNpyShape(const std::string& path);
StatusOr<std::vector<int64_t>> ReadIdxShape(const std::string& path);

// MNIST idx: images are idx3 unsigned bytes (magic 2051), flattened to rows x (h*w) with
// values 0..255 (use `scale` to normalise); labels are idx1 unsigned bytes (magic 2049).
StatusOr<FeatureMatrix> LoadIdxImages(const std::string& path);
StatusOr<std::vector<int64_t>> LoadIdxLabels(const std::string& path);

// CSV of numbers separated by commas, one sample per line. `label_column` picks the label
// column (negative counts from the end: -1 is the last); the label must be an integer
// >= 0. `header` skips the first line. `max_rows` (if > 0) stops after that many rows.
StatusOr<DatasetPart> LoadCsv(const std::string& path, int label_column, bool header,
                              int64_t max_rows = 0);

// Loads every file named by `config` (paths relative to the working directory), applies
// `limit` and `scale`, and checks that rows, columns and labels agree.
StatusOr<LoadedDataset> LoadDataset(const DatasetConfig& config);

// Row indices of a seeded split of `num_rows` rows. The permutation is a Fisher-Yates
// shuffle driven by std::mt19937_64(seed), so it is identical on every platform.
// The validation part has round(num_rows * fraction) rows, clamped to [1, num_rows - 1].
struct SplitIndices {
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
  std::vector<int64_t> test;  // empty unless a test part is split off
};
StatusOr<SplitIndices> MakeSplit(int64_t num_rows, double validation_fraction, uint64_t seed);

// The split dataset.split asks for, of rows with these labels: MakeSplit when it is neither
// stratified nor has a test part, else internal::StratifiedSplit (jobs/internal/
// stratified_split.h). Errors: InvalidArgument naming dataset.split's field.
StatusOr<SplitIndices> MakeDatasetSplit(const std::vector<int64_t>& labels,
                                        const DatasetConfig& config);

// Shares loaded datasets between the trials that a worker runs, and label-free feature
// matrices (embed corpora) between the shards that a worker embeds.
//
// Get is keyed by DatasetConfig::CacheKey() (files, format, scale, limit; not the split or
// standardization); GetFeatures by a caller-chosen key (CorpusConfig::CacheKey()), in a
// separate key space. Concurrent calls for the same key load it once; the others wait.
// Failed loads are not cached. Holds at most `max_entries` datasets, evicting the least
// recently used; a returned shared_ptr stays valid after eviction.
// Thread-safety: all methods may be called concurrently.
class DatasetCache {
 public:
  using Loader = std::function<StatusOr<LoadedDataset>(const DatasetConfig&)>;

  // Default: max_entries 4, loader LoadDataset.
  explicit DatasetCache(size_t max_entries = 4, Loader loader = LoadDataset);

  StatusOr<std::shared_ptr<const LoadedDataset>> Get(const DatasetConfig& config);

  // The matrix cached under `key`, or the result of `load()` (called at most once per key
  // while it stays cached; a failure is returned and not cached). Counts in loads().
  using FeatureLoader = std::function<StatusOr<FeatureMatrix>()>;
  StatusOr<std::shared_ptr<const FeatureMatrix>> GetFeatures(const std::string& key,
                                                             const FeatureLoader& load);

  // Number of loader calls so far (successful or not).
  int64_t loads() const { return loads_.load(); }

 private:
  struct Entry {
    std::mutex mu;  // held while loading
    std::shared_ptr<const LoadedDataset> data;
    std::shared_ptr<const FeatureMatrix> features;
  };

  // The entry for `key` (created empty if absent), marked most recently used.
  std::shared_ptr<Entry> Acquire(const std::string& key);

  const size_t max_entries_;
  const Loader loader_;
  std::atomic<int64_t> loads_{0};
  std::mutex mu_;                                         // guards entries_ and lru_
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  std::list<std::string> lru_;                            // most recent first
};

}  // namespace lattice::jobs
