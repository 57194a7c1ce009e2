// embed_bench: embedding throughput (items/s) of Lattice's embed job path against its
// floor, in one process, one intra-op thread, on the Fashion-MNIST training images
// (60,000 x 784):
//
//   lattice  jobs::RunJob({"kind": "embed", ...}) per shard of --shard rows (default 2000,
//            as the example sweep) over the whole corpus, corpus already in the DatasetCache
//            (loading is measured once, apart), the encoder already in the EncoderCache: what
//            the workers do for the corpus, minus MPI.
//   floor    the same shards in a plain loop, each into a fresh output block:
//            flatten:     a plain copy of the rows, batch by batch;
//            torchscript: a plain LibTorch loop: torch::jit::load, eval, InferenceMode, per
//                         batch from_blob -> forward -> copy into the output block.
//            trial:       a train checkpoint (MLP 784 -> 256 (batchnorm, relu) -> 10, trained
//                         here for one epoch on 5,000 rows, standardised input) embedded at
//                         its hidden layer (-2). Floor: the loop a user writes by hand with
//                         LibTorch modules holding the same weights (read from the same
//                         archive): per batch (x * scale - mean) / std -> Linear ->
//                         BatchNorm1d (eval) -> relu -> copy out. Lattice's pass includes
//                         decoding the checkpoint once per shard, as a worker does.
//
// Lattice and floor passes alternate (see Compare), so machine load hits both alike.
// The TorchScript encoder is tests/jobs/fixtures/make_encoder.py's linear.pt
// (Linear(784, 32) + tanh); without --encoder the script is run with /usr/bin/python3 into
// a temp directory, and that encoder is skipped when it cannot be made.
//
// usage: embed_bench [--images FILE] [--encoder linear.pt] [--batch N] [--shard N]
//                    [--min-seconds S] [--only flatten|torchscript|trial]
#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "jobs/dataset.h"
#include "jobs/embed_job.h"
#include "jobs/train_job.h"

namespace {

using lattice::Status;
using lattice::StatusOr;
using lattice::jobs::FeatureMatrix;

struct Options {
  std::string images = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  std::string encoder;  // empty: made with make_encoder.py
  int64_t batch = 1000;
  int64_t shard = 2000;  // rows per RunJob, as the example sweep's shard_size
  std::string only;      // one encoder: flatten | torchscript | trial; empty: all
  double min_seconds = 3.0;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Die(const Status& s) {
  std::fprintf(stderr, "embed_bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

// Items per second of `lattice` and `floor` (each call processes `items` items). After one
// warm-up call each (first-call allocations, TorchScript profiling runs) the two run in
// alternating rounds (lattice, floor, then floor, lattice, ...) until both have run for
// min_seconds, so a busy machine slows both alike instead of whichever ran second.
struct Rates {
  double lattice = 0;
  double floor = 0;
};
Rates Compare(const std::function<void()>& lattice, const std::function<void()>& floor,
              int64_t items, double min_seconds) {
  lattice();
  floor();
  double t_lattice = 0, t_floor = 0;
  int64_t rounds = 0;
  auto timed = [](const std::function<void()>& fn, double* total) {
    const double t0 = Now();
    fn();
    *total += Now() - t0;
  };
  while (t_lattice < min_seconds || t_floor < min_seconds) {
    if (rounds % 2 == 0) {
      timed(lattice, &t_lattice);
      timed(floor, &t_floor);
    } else {
      timed(floor, &t_floor);
      timed(lattice, &t_lattice);
    }
    ++rounds;
  }
  const double done = static_cast<double>(items * rounds);
  return {done / t_lattice, done / t_floor};
}

// Runs make_encoder.py into a temp directory; returns the path of linear.pt or
// "".
std::string MakeEncoder() {
  char dir[] = "/tmp/embed_bench.XXXXXX";
  if (mkdtemp(dir) == nullptr) return "";
  const std::string script =
      std::string(LATTICE_SOURCE_DIR) + "/tests/jobs/fixtures/make_encoder.py";
  const std::string cmd = "/usr/bin/python3 " + script + " " + dir + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "embed_bench: %s failed; TorchScript encoder skipped\n", cmd.c_str());
    return "";
  }
  return std::string(dir) + "/linear.pt";
}

constexpr char kTrialEncoder[] = "trial";  // LatticePass: the checkpoint encoder

nlohmann::json EmbedJobConfig(const Options& opt, const std::string& encoder) {
  nlohmann::json enc = encoder.empty() ? nlohmann::json{{"type", "flatten"}}
                       : encoder == kTrialEncoder
                           ? nlohmann::json{{"type", "trial"}, {"trial", "s1-t0"}, {"layer", -2}}
                           : nlohmann::json{{"type", "torchscript"}, {"path", encoder}};
  return {{"kind", "embed"},
          {"encoder", enc},
          {"corpus", {{"format", "idx"}, {"images", opt.images}}},
          {"batch_size", opt.batch}};
}

// Lattice: what the workers do for a whole corpus: one RunJob per shard of opt.shard rows
// (each a fresh block, as each is shipped), through a warm DatasetCache and EncoderCache.
std::function<void()> LatticePass(const Options& opt, const std::string& encoder, int64_t rows,
                                  lattice::jobs::DatasetCache* cache,
                                  lattice::jobs::EncoderCache* encoders,
                                  std::shared_ptr<const std::string> checkpoint = nullptr) {
  lattice::jobs::JobContext ctx;
  ctx.cache = cache;
  ctx.num_threads = 1;
  ctx.encoders = encoders;
  ctx.checkpoint = [checkpoint](const std::string&) { return checkpoint; };
  return [ctx, rows, shard = opt.shard, config = EmbedJobConfig(opt, encoder)]() mutable {
    for (int64_t begin = 0; begin < rows; begin += shard) {
      const int64_t end = std::min(rows, begin + shard);
      config["shard"] = {{"begin", begin}, {"end", end}};
      auto r = lattice::jobs::RunJob(config, ctx);
      if (!r.ok()) Die(r.status());
      if (!r->embeddings || r->embeddings->rows != end - begin) Die(Status::Internal("short result"));
    }
  };
}

// The floors' loop: the corpus in shards of opt.shard rows as the Lattice pass cuts it, each
// into a fresh output block of `dim` floats per row (every shard's block is shipped), batch
// by batch: fn(first row, rows, output of the batch).
using BatchFn = std::function<void(int64_t start, int64_t len, float* out)>;
void PlainShards(const Options& opt, const FeatureMatrix& corpus, int64_t dim, const BatchFn& fn) {
  for (int64_t begin = 0; begin < corpus.rows; begin += opt.shard) {
    const int64_t end = std::min(corpus.rows, begin + opt.shard);
    std::unique_ptr<float[]> out(new float[static_cast<size_t>((end - begin) * dim)]);
    for (int64_t start = begin; start < end; start += opt.batch) {
      fn(start, std::min(opt.batch, end - start), out.get() + (start - begin) * dim);
    }
    volatile float sink = out[0];
    (void)sink;
  }
}

// Floor of the flatten encoder: a plain copy of the rows.
std::function<void()> PlainCopyPass(const Options& opt, const FeatureMatrix& corpus) {
  return [&opt, &corpus] {
    PlainShards(opt, corpus, corpus.cols, [&](int64_t start, int64_t len, float* out) {
      std::memcpy(out, corpus.data.data() + start * corpus.cols,
                  static_cast<size_t>(len * corpus.cols) * sizeof(float));
    });
  };
}

// Floor of a TorchScript encoder: the plain LibTorch inference loop (its own module).
std::function<void()> PlainTorchPass(const Options& opt, const std::string& path,
                                     const FeatureMatrix& corpus) {
  auto module = std::make_shared<torch::jit::Module>(torch::jit::load(path));
  module->eval();
  float* data = const_cast<float*>(corpus.data.data());  // only read
  torch::InferenceMode inference;
  const int64_t dim =
      module->forward({torch::from_blob(data, {1, corpus.cols})}).toTensor().size(1);
  return [&opt, &corpus, module, data, dim] {
    torch::InferenceMode inference;
    std::vector<torch::jit::IValue> inputs(1);
    PlainShards(opt, corpus, dim, [&](int64_t start, int64_t len, float* out) {
      inputs[0] = torch::from_blob(data + start * corpus.cols, {len, corpus.cols});
      torch::from_blob(out, {len, dim}).copy_(module->forward(inputs).toTensor());
    });
  };
}

// A checkpoint of an MLP 784 -> 256 -> 10 (batchnorm, standardised, scale 1/255) trained for
// one epoch on the first 5,000 training images.
std::shared_ptr<const std::string> TrainCheckpoint(const Options& opt) {
  const std::string labels = std::filesystem::path(opt.images).parent_path() /
                             "train-labels-idx1-ubyte.gz";
  nlohmann::json config = {
      {"kind", "train"},
      {"dataset", {{"format", "idx"}, {"images", opt.images}, {"labels", labels},
                   {"limit", 5000}, {"scale", 1.0 / 255}, {"standardize", true}}},
      {"model", {{"type", "mlp"}, {"hidden", 256}, {"batchnorm", true}}},
      {"train", {{"epochs", 1}, {"batch_size", 64}, {"threads", 1}}}};
  lattice::jobs::JobContext ctx;
  auto r = lattice::jobs::RunJob(config, ctx);
  if (!r.ok()) Die(r.status());
  return std::make_shared<const std::string>(std::move(*r->checkpoint));
}

// Floor of the checkpoint encoder: hand-written LibTorch modules loaded from the archive.
std::function<void()> PlainCheckpointPass(const Options& opt, const std::string& blob,
                                          const FeatureMatrix& corpus) {
  torch::serialize::InputArchive archive;
  const size_t offset = blob.find('\n') + 1;
  archive.load_from(blob.data() + offset, blob.size() - offset);
  torch::nn::Linear linear(corpus.cols, 256);  // module holders: copies share the module
  torch::nn::BatchNorm1d bn(256);
  torch::Tensor mean, std;
  {
    torch::NoGradGuard no_grad;
    // Module::save nests one archive per child module: "0" holds the Linear's tensors.
    torch::serialize::InputArchive first, second;
    archive.read("0", first);
    archive.read("1", second);
    for (auto& [from, name, t] : std::vector<std::tuple<torch::serialize::InputArchive*,
                                                        const char*, torch::Tensor>>{
             {&first, "weight", linear->weight}, {&first, "bias", linear->bias},
             {&second, "weight", bn->weight}, {&second, "bias", bn->bias},
             {&second, "running_mean", bn->running_mean},
             {&second, "running_var", bn->running_var}}) {
      torch::Tensor stored;
      from->read(name, stored, /*is_buffer=*/std::string(name).rfind("running", 0) == 0);
      t.copy_(stored);
    }
    archive.read("input.mean", mean);
    archive.read("input.std", std);
  }
  bn->eval();
  return [&opt, &corpus, linear, bn, mean, std]() mutable {
    torch::InferenceMode inference;
    float* data = const_cast<float*>(corpus.data.data());  // only read
    PlainShards(opt, corpus, 256, [&](int64_t start, int64_t len, float* out) {
      torch::Tensor x = torch::from_blob(data + start * corpus.cols, {len, corpus.cols});
      torch::from_blob(out, {len, 256}).copy_(torch::relu(bn(linear((x * (1.0 / 255) - mean) / std))));
    });
  };
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--images")
      o.images = v;
    else if (flag == "--encoder")
      o.encoder = v;
    else if (flag == "--batch")
      o.batch = std::atoll(v);
    else if (flag == "--min-seconds")
      o.min_seconds = std::atof(v);
    else if (flag == "--shard")
      o.shard = std::atoll(v);
    else if (flag == "--only")
      o.only = v;
    else
      Die(Status::InvalidArgument("unknown flag " + flag));
  }
  if (o.batch < 1) Die(Status::InvalidArgument("--batch must be >= 1"));
  if (o.shard < 1) Die(Status::InvalidArgument("--shard must be >= 1"));
  return o;
}

void Report(const char* encoder, Rates r) {
  const double lattice = r.lattice, floor = r.floor;
  std::printf(
      "{\"encoder\": \"%s\", \"lattice_items_per_s\": %.0f, "
      "\"floor_items_per_s\": %.0f, "
      "\"ratio\": %.3f}\n",
      encoder, lattice, floor, lattice / floor);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = ParseArgs(argc, argv);
  at::set_num_threads(1);
  lattice::jobs::DatasetCache cache;
  lattice::jobs::CorpusConfig corpus_config;
  corpus_config.format = lattice::jobs::CorpusFormat::kIdx;
  corpus_config.file = opt.images;
  const double t0 = Now();
  auto corpus = lattice::jobs::LoadCorpusCached(corpus_config, &cache);
  if (!corpus.ok()) Die(corpus.status());
  const double load_s = Now() - t0;
  const FeatureMatrix& m = **corpus;
  std::printf(
      "# embed_bench: %lld rows x %lld, shards of %lld, batch %lld, 1 thread; corpus "
      "load %.2f s (once per worker, not in the figures below)\n",
      static_cast<long long>(m.rows), static_cast<long long>(m.cols),
      static_cast<long long>(opt.shard), static_cast<long long>(opt.batch), load_s);

  lattice::jobs::EncoderCache encoders;
  auto wanted = [&opt](const char* name) {
    return opt.only.empty() || opt.only == name;
  };
  try {
    if (wanted("flatten")) {
      Report("flatten", Compare(LatticePass(opt, "", m.rows, &cache, &encoders),
                                PlainCopyPass(opt, m), m.rows, opt.min_seconds));
    }
    if (wanted("torchscript")) {
      if (opt.encoder.empty()) opt.encoder = MakeEncoder();
      if (!opt.encoder.empty()) {
        Report("torchscript linear 784->32",
               Compare(LatticePass(opt, opt.encoder, m.rows, &cache, &encoders),
                       PlainTorchPass(opt, opt.encoder, m), m.rows, opt.min_seconds));
      }
    }
    if (wanted("trial")) {
      auto checkpoint = TrainCheckpoint(opt);
      Report("trial checkpoint mlp 784->256 (bn) layer -2",
             Compare(LatticePass(opt, kTrialEncoder, m.rows, &cache, &encoders, checkpoint),
                     PlainCheckpointPass(opt, *checkpoint, m), m.rows, opt.min_seconds));
    }
  } catch (const std::exception& e) {
    Die(Status::Internal(std::string("libtorch: ") + e.what()));
  }
  return 0;
}
