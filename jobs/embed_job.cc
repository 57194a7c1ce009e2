// The embed job kind (see jobs/embed_job.h). Includes LibTorch with TorchScript.
#include "jobs/embed_job.h"
#include "jobs/internal/device.h"
#include "jobs/internal/model.h"
#include "jobs/internal/threads.h"

#include <sys/stat.h>
#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/jit_exception.h>
#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <utility>

namespace lattice::jobs {

using Module = torch::jit::Module;

struct EncoderCache::Impl {
  size_t max_entries = 4;
  std::atomic<int64_t> loads{0};
  std::mutex mu;  // guards lru; held while loading
  // (key, module), most recently used first. Key: "<path>\n<mtime ns>\n<size>".
  std::list<std::pair<std::string, std::shared_ptr<const Module>>> lru;
  // Decoded train checkpoints, most recently used first, keyed by the blob they were
  // decoded from (held, so its address is not reused while cached).
  std::list<std::pair<std::shared_ptr<const std::string>, std::shared_ptr<internal::CheckpointModel>>>
      checkpoints;
};

namespace internal {

struct EncoderCacheAccess {
  // The module for `path`, loaded (and put in eval mode) unless cached for the file's
  // current mtime and size.
  static StatusOr<std::shared_ptr<const Module>> Get(EncoderCache* cache, const std::string& path,
                                                     const torch::Device& device) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument("encoder.path: file not found: " + path);
    }
    const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                             static_cast<int64_t>(st.st_mtim.tv_nsec);
    const std::string key = path + "\n" + std::to_string(mtime_ns) + "\n" +
                            std::to_string(st.st_size) + "\n" + device.str();
    EncoderCache::Impl& impl = *cache->impl_;
    std::lock_guard<std::mutex> lock(impl.mu);
    for (auto it = impl.lru.begin(); it != impl.lru.end(); ++it) {
      if (it->first == key) {
        impl.lru.splice(impl.lru.begin(), impl.lru, it);
        return impl.lru.front().second;
      }
    }
    // A rewritten file: drop the stale versions of the same path.
    impl.lru.remove_if([&](const auto& e) { return e.first.rfind(path + "\n", 0) == 0; });
    ++impl.loads;
    std::shared_ptr<Module> module;
    try {
      module = std::make_shared<Module>(torch::jit::load(path, device));
      module->eval();
    } catch (const c10::Error& e) {
      return Status::InvalidArgument("encoder.path: " + path +
                                     ": cannot load TorchScript module: " +
                                     e.what_without_backtrace());
    } catch (const std::exception& e) {
      return Status::InvalidArgument("encoder.path: " + path +
                                     ": cannot load TorchScript module: " + e.what());
    }
    impl.lru.emplace_front(key, std::move(module));
    while (impl.lru.size() > impl.max_entries) impl.lru.pop_back();
    return impl.lru.front().second;
  }

  // The model decoded from `blob`, decoded unless cached for this very blob.
  static StatusOr<std::shared_ptr<CheckpointModel>> Checkpoint(
      EncoderCache* cache, const std::shared_ptr<const std::string>& blob,
      const torch::Device& device) {
    EncoderCache::Impl& impl = *cache->impl_;
    std::lock_guard<std::mutex> lock(impl.mu);
    for (auto it = impl.checkpoints.begin(); it != impl.checkpoints.end(); ++it) {
      if (it->first == blob) {
        impl.checkpoints.splice(impl.checkpoints.begin(), impl.checkpoints, it);
        impl.checkpoints.front().second->To(device);  // no-op unless the device changed
        return impl.checkpoints.front().second;
      }
    }
    ++impl.loads;
    LATTICE_ASSIGN_OR_RETURN(CheckpointModel model, CheckpointModel::Decode(*blob));
    model.To(device);
    impl.checkpoints.emplace_front(blob, std::make_shared<CheckpointModel>(std::move(model)));
    while (impl.checkpoints.size() > impl.max_entries) impl.checkpoints.pop_back();
    return impl.checkpoints.front().second;
  }
};

}  // namespace internal

EncoderCache::EncoderCache(size_t max_entries) : impl_(std::make_unique<Impl>()) {
  impl_->max_entries = std::max<size_t>(1, max_entries);
}

EncoderCache::~EncoderCache() = default;

int64_t EncoderCache::loads() const { return impl_->loads.load(); }

EncoderCache* EncoderCache::ProcessDefault() {
  static EncoderCache* cache = new EncoderCache();  // never destroyed: no exit-order issues
  return cache;
}

namespace {

std::string ShapeString(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// The per-row [B, D] vectors of one forward output: [B, D] as is, [B, T, D] pooled.
StatusOr<torch::Tensor> Pool(const torch::jit::IValue& out, Pooling pooling, int64_t batch,
                             const std::string& where) {
  if (!out.isTensor()) {
    return Status::InvalidArgument(where + ": expected a tensor output, got " +
                                   out.tagKind());
  }
  torch::Tensor t = out.toTensor();
  if ((t.dim() != 2 && t.dim() != 3) || t.size(0) != batch || t.size(-1) < 1 ||
      (t.dim() == 3 && t.size(1) < 1) || !t.is_floating_point()) {
    return Status::InvalidArgument(where + ": expected a float output [" +
                                   std::to_string(batch) + ", D] or [" + std::to_string(batch) +
                                   ", T, D], got " + ShapeString(t) + " " +
                                   std::string(c10::toString(t.scalar_type())));
  }
  if (t.dim() == 2) return t;
  switch (pooling) {
    case Pooling::kCls: return t.select(1, 0);
    case Pooling::kLast: return t.select(1, t.size(1) - 1);
    case Pooling::kMean: break;
  }
  return t.mean(1);
}

// Fails on the first row of `v` [rows, dim] holding a NaN or Inf; rows are reported as
// corpus rows (first_row + r). Scalar: only used to name the row once AllFinite failed.
Status CheckFinite(const float* v, int64_t rows, int64_t dim, int64_t first_row,
                   const std::string& where) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = v + r * dim;
    if (std::all_of(row, row + dim, [](float x) { return std::isfinite(x); })) continue;
    const bool nan = std::any_of(row, row + dim, [](float x) { return std::isnan(x); });
    return Status::FailedPrecondition(where + ": row " + std::to_string(first_row + r) +
                                      ": output is " + (nan ? "NaN" : "Inf"));
  }
  return Status::Ok();
}

// True iff no value of v[0, n) is NaN or Inf (exponent bits all ones). Branch-free over
// 16 floats a step with GCC/Clang vector extensions (SSE2 / NEON at the default -O2, where
// the plain loop is not vectorised), so a chunk in cache is checked at cache speed.
bool AllFinite(const float* v, int64_t n) {
  using U32x4 = uint32_t __attribute__((vector_size(16)));
  constexpr uint32_t kExp = 0x7f800000u;
  const U32x4 exp = {kExp, kExp, kExp, kExp};
  U32x4 bad0 = {}, bad1 = {}, bad2 = {}, bad3 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    U32x4 a, b, c, d;  // memcpy: unaligned loads without aliasing UB
    std::memcpy(&a, v + i, sizeof(a));
    std::memcpy(&b, v + i + 4, sizeof(b));
    std::memcpy(&c, v + i + 8, sizeof(c));
    std::memcpy(&d, v + i + 12, sizeof(d));
    bad0 |= (U32x4)((a & exp) == exp);
    bad1 |= (U32x4)((b & exp) == exp);
    bad2 |= (U32x4)((c & exp) == exp);
    bad3 |= (U32x4)((d & exp) == exp);
  }
  const U32x4 bad = bad0 | bad1 | bad2 | bad3;
  uint32_t any = bad[0] | bad[1] | bad[2] | bad[3];
  for (; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, v + i, sizeof(bits));
    any |= static_cast<uint32_t>((bits & kExp) == kExp);
  }
  return any == 0;
}

// Appends `src` [rows, dim] (corpus rows first_row...) to `out`, whose capacity the caller
// reserved (no zero-fill, no reallocation), failing on the first row with a NaN or Inf.
// One pass over memory: each 64 KiB chunk is checked, then copied while still in cache.
Status AppendFinite(const float* src, int64_t rows, int64_t dim, int64_t first_row,
                    const std::string& where, std::vector<float>* out) {
  constexpr int64_t kChunk = 16384;  // floats
  const int64_t n = rows * dim;
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t len = std::min(kChunk, n - i);
    if (!AllFinite(src + i, len)) return CheckFinite(src, rows, dim, first_row, where);
    out->insert(out->end(), src + i, src + i + len);
  }
  return Status::Ok();
}

// Runs rows [begin, end) of `corpus` through `forward` batch by batch (input: a tensor of
// shape [B, *row_shape] aliasing the corpus) and appends the [B, D] outputs to block.
using BatchForward = std::function<StatusOr<torch::Tensor>(const torch::Tensor& input, int64_t len)>;

Status EncodeBatches(const EmbedConfig& config, const FeatureMatrix& corpus, int64_t begin,
                     int64_t end, const torch::Device& device, const EmbedOptions& options,
                     const std::string& where, const std::vector<int64_t>& row_shape,
                     const BatchForward& forward, EmbeddingBlock* block) {
  std::vector<int64_t> shape = {0};
  shape.insert(shape.end(), row_shape.begin(), row_shape.end());
  torch::InferenceMode inference;
  float* const data = const_cast<float*>(corpus.data.data());  // read only (see header)
  for (int64_t start = begin; start < end; start += config.batch_size) {
    if (options.cancelled && options.cancelled()) {
      return Status::Cancelled("embed cancelled at row " + std::to_string(start));
    }
    const int64_t len = std::min(config.batch_size, end - start);
    shape[0] = len;
    LATTICE_ASSIGN_OR_RETURN(
        torch::Tensor pooled,
        forward(torch::from_blob(data + start * corpus.cols, shape, torch::kFloat).to(device), len));
    if (block->dim == 0) {
      block->dim = static_cast<int>(pooled.size(1));
      block->vectors.reserve(static_cast<size_t>(block->rows * block->dim));
    } else if (pooled.size(1) != block->dim) {
      return Status::InvalidArgument(where + ": rows [" + std::to_string(start) + ", " +
                                     std::to_string(start + len) + "): output dim " +
                                     std::to_string(pooled.size(1)) + " differs from " +
                                     std::to_string(block->dim) + " of the first batch");
    }
    // No-ops for the usual contiguous float32 CPU output; a copy for other devices, dtypes
    // or strides.
    pooled = pooled.to(torch::kCPU, torch::kFloat).contiguous();
    LATTICE_RETURN_IF_ERROR(AppendFinite(pooled.data_ptr<float>(), len, block->dim, start,
                                         where, &block->vectors));
  }
  return Status::Ok();
}

// The TorchScript encoder of EmbedRows.
Status EmbedWithTorchScript(const EmbedConfig& config, const FeatureMatrix& corpus, int64_t begin,
                            int64_t end, const EmbedOptions& options, EmbeddingBlock* block) {
  const std::string where = "encoder " + config.encoder.path;
  EncoderCache* cache = options.encoders ? options.encoders : EncoderCache::ProcessDefault();
  LATTICE_ASSIGN_OR_RETURN(torch::Device device, internal::JobDevice(options.device));
  LATTICE_ASSIGN_OR_RETURN(std::shared_ptr<const Module> shared,
                           internal::EncoderCacheAccess::Get(cache, config.encoder.path, device));
  Module module = *shared;  // shallow: shares parameters and methods; forward is non-const
  std::vector<int64_t> row_shape = config.encoder.input_shape;
  if (row_shape.empty()) row_shape.push_back(corpus.cols);
  std::vector<torch::jit::IValue> inputs(1);
  return EncodeBatches(config, corpus, begin, end, device, options, where, row_shape,
                       [&](const torch::Tensor& input, int64_t len) {
                         inputs[0] = input;
                         return Pool(module.forward(inputs), config.pooling, len, where);
                       },
                       block);
}

// The train-trial checkpoint encoder of EmbedRows.
Status EmbedWithCheckpoint(const EmbedConfig& config, const FeatureMatrix& corpus, int64_t begin,
                           int64_t end, const EmbedOptions& options, EmbeddingBlock* block) {
  const std::string& trial = config.encoder.trial;
  const std::string where = "encoder trial " + trial;
  std::shared_ptr<const std::string> blob =
      options.checkpoint ? options.checkpoint(trial) : nullptr;
  if (blob == nullptr) {
    return Status::FailedPrecondition("encoder.trial: no checkpoint of trial " + trial +
                                      " was given to this worker");
  }
  EncoderCache* cache = options.encoders ? options.encoders : EncoderCache::ProcessDefault();
  LATTICE_ASSIGN_OR_RETURN(torch::Device device, internal::JobDevice(options.device));
  auto model = internal::EncoderCacheAccess::Checkpoint(cache, blob, device);
  if (!model.ok()) return model.status().WithContext(where);
  LATTICE_ASSIGN_OR_RETURN(int64_t layer, ResolveLayer(config.encoder.layer,
                                                       (*model)->hidden_layers(), "encoder.layer"));
  if ((*model)->header().in_dim != corpus.cols) {
    return Status::InvalidArgument(where + ": the model takes " +
                                   std::to_string((*model)->header().in_dim) +
                                   " features per row, the corpus has " +
                                   std::to_string(corpus.cols) + " columns");
  }
  return EncodeBatches(config, corpus, begin, end, device, options, where, {corpus.cols},
                       [&](const torch::Tensor& input, int64_t) -> StatusOr<torch::Tensor> {
                         return (*model)->Forward(input, layer);
                       },
                       block);
}

Status CheckRange(const FeatureMatrix& corpus, int64_t begin, int64_t end) {
  if (begin < 0 || begin >= corpus.rows) {
    return Status::InvalidArgument("shard.begin: " + std::to_string(begin) +
                                   " is outside the corpus rows [0, " +
                                   std::to_string(corpus.rows) + ")");
  }
  if (end <= begin) {
    return Status::InvalidArgument("shard.end: must be > shard.begin (" +
                                   std::to_string(begin) + "), got " + std::to_string(end));
  }
  if (end > corpus.rows) {
    return Status::InvalidArgument("shard.end: " + std::to_string(end) +
                                   " is beyond the corpus rows (" +
                                   std::to_string(corpus.rows) + ")");
  }
  return Status::Ok();
}

StatusOr<EmbeddingBlock> EmbedRowsOrThrow(const EmbedConfig& config, const FeatureMatrix& corpus,
                                          int64_t begin, int64_t end,
                                          const EmbedOptions& options) {
  LATTICE_RETURN_IF_ERROR(CheckRange(corpus, begin, end));
  if (config.encoder.type == EncoderType::kTorchScript && !config.encoder.input_shape.empty()) {
    int64_t per_row = 1;
    for (int64_t d : config.encoder.input_shape) per_row *= d;
    if (per_row != corpus.cols) {
      return Status::InvalidArgument("encoder.input_shape: " + std::to_string(per_row) +
                                     " values per row, but the corpus has " +
                                     std::to_string(corpus.cols) + " columns");
    }
  }
  EmbeddingBlock block;
  block.begin = begin;
  block.rows = end - begin;
  if (config.encoder.type == EncoderType::kFlatten) {
    if (options.cancelled && options.cancelled()) {
      return Status::Cancelled("embed cancelled at row " + std::to_string(begin));
    }
    block.dim = static_cast<int>(corpus.cols);
    const float* rows = corpus.data.data() + begin * corpus.cols;
    if (corpus.all_finite) {  // checked once when the corpus was loaded
      block.vectors.assign(rows, rows + block.rows * corpus.cols);
    } else {
      block.vectors.reserve(static_cast<size_t>(block.rows * corpus.cols));
      LATTICE_RETURN_IF_ERROR(AppendFinite(rows, block.rows, corpus.cols, begin,
                                           "encoder flatten", &block.vectors));
    }
  } else if (config.encoder.type == EncoderType::kTorchScript) {
    LATTICE_RETURN_IF_ERROR(EmbedWithTorchScript(config, corpus, begin, end, options, &block));
  } else {
    LATTICE_RETURN_IF_ERROR(EmbedWithCheckpoint(config, corpus, begin, end, options, &block));
  }
  if (config.normalize) {
    torch::InferenceMode inference;
    torch::Tensor v =
        torch::from_blob(block.vectors.data(), {block.rows, block.dim}, torch::kFloat);
    v.div_(v.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12));
  }
  return block;
}

}  // namespace

StatusOr<EmbeddingBlock> EmbedRows(const EmbedConfig& config, const FeatureMatrix& corpus,
                                   int64_t begin, int64_t end, const EmbedOptions& options) {
  const std::string where = config.encoder.type == EncoderType::kTorchScript
                                ? "encoder " + config.encoder.path
                            : config.encoder.type == EncoderType::kTrial
                                ? "encoder trial " + config.encoder.trial
                                : std::string("encoder flatten");
  try {
    return EmbedRowsOrThrow(config, corpus, begin, end, options);
  } catch (const c10::Error& e) {
    return Status::InvalidArgument(where + ": " + e.what_without_backtrace());
  } catch (const torch::jit::JITException& e) {  // raised by the module's own code
    return Status::InvalidArgument(where + ": " + e.what());
  } catch (const std::exception& e) {
    return Status::Internal(where + ": " + e.what());
  } catch (...) {
    return Status::Internal(where + ": unknown exception");
  }
}

StatusOr<JobResult> RunEmbed(const EmbedConfig& config, JobContext& ctx) {
  // idx / npy: the whole cached corpus (offset 0); images: only the shard's rows decoded.
  LATTICE_ASSIGN_OR_RETURN(
      CorpusShard shard,
      LoadCorpusShard(config.corpus, config.shard_begin, config.shard_end, ctx.cache));
  try {
    internal::SetJobThreads(ctx.num_threads);
    torch::manual_seed(config.seed);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("embed job: libtorch: ") + e.what());
  }
  EmbedOptions options;
  options.cancelled = ctx.cancelled;
  options.encoders = ctx.encoders;
  options.checkpoint = ctx.checkpoint;
  options.device = ctx.device;
  const auto start = std::chrono::steady_clock::now();
  StatusOr<EmbeddingBlock> embedded = EmbedRows(config, *shard.matrix, shard.begin - shard.offset,
                                               shard.end - shard.offset, options);
  if (!embedded.ok() && shard.offset != 0) {  // EmbedRows counted rows from the shard's first
    return embedded.status().WithContext("corpus rows from " + std::to_string(shard.offset) +
                                         " (row numbers below count from there)");
  }
  LATTICE_ASSIGN_OR_RETURN(EmbeddingBlock block, std::move(embedded));
  block.begin = shard.begin;
  block.metadata = std::move(shard.metadata);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  JobResult result;
  result.metrics["rows"] = static_cast<double>(block.rows);
  result.metrics["dim"] = block.dim;
  result.metrics["embed_s"] = secs;
  result.metrics["items_per_s"] = static_cast<double>(block.rows) / std::max(secs, 1e-9);
  if (ctx.processed != nullptr) ctx.processed->fetch_add(block.rows, std::memory_order_relaxed);
  result.embeddings = std::move(block);
  return result;
}

}  // namespace lattice::jobs
