// embed_bench: embedding throughput (items/s) of Lattice's embed job path against its
// floor, in one process, one intra-op thread, on the Fashion-MNIST training images
// (60,000 x 784):
//
//   lattice  jobs::RunJob({"kind": "embed", ...}) over the whole corpus (one shard of every
//            row), corpus already in the DatasetCache (loading is measured once, apart), the
//            encoder already in the EncoderCache: what a worker does per shard, minus MPI.
//   floor    flatten:     a plain copy of the same rows, batch by batch, into a fresh output
//                         buffer;
//            torchscript: a plain LibTorch loop: torch::jit::load, eval, InferenceMode, per
//                         batch from_blob -> forward -> copy into the output buffer.
//
// Lattice and floor passes alternate (see Compare), so machine load hits both alike.
// The TorchScript encoder is tests/jobs/fixtures/make_encoder.py's linear.pt
// (Linear(784, 32) + tanh); without --encoder the script is run with /usr/bin/python3 into
// a temp directory, and that encoder is skipped when it cannot be made.
//
// usage: embed_bench [--images FILE] [--encoder linear.pt] [--batch N] [--min-seconds S]
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
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

nlohmann::json EmbedJobConfig(const Options& opt, const std::string& encoder) {
  nlohmann::json enc = encoder.empty() ? nlohmann::json{{"type", "flatten"}}
                                       : nlohmann::json{{"type", "torchscript"}, {"path", encoder}};
  return {{"kind", "embed"},
          {"encoder", enc},
          {"corpus", {{"format", "idx"}, {"images", opt.images}}},
          {"batch_size", opt.batch}};
}

// Lattice: one RunJob over every row, through a warm DatasetCache and EncoderCache.
std::function<void()> LatticePass(const Options& opt, const std::string& encoder, int64_t rows,
                                  lattice::jobs::DatasetCache* cache,
                                  lattice::jobs::EncoderCache* encoders) {
  lattice::jobs::JobContext ctx;
  ctx.cache = cache;
  ctx.num_threads = 1;
  ctx.encoders = encoders;
  return [ctx, rows, config = EmbedJobConfig(opt, encoder)]() mutable {
    auto r = lattice::jobs::RunJob(config, ctx);
    if (!r.ok()) Die(r.status());
    if (!r->embeddings || r->embeddings->rows != rows) Die(Status::Internal("short result"));
  };
}

// Floor of the flatten encoder: copy the rows, batch by batch, into a fresh (uninitialised)
// output buffer per pass, as every shard needs its own block to ship.
std::function<void()> PlainCopyPass(const Options& opt, const FeatureMatrix& corpus) {
  return [&opt, &corpus] {
    std::unique_ptr<float[]> out(new float[corpus.data.size()]);
    for (int64_t start = 0; start < corpus.rows; start += opt.batch) {
      const int64_t len = std::min(opt.batch, corpus.rows - start);
      std::memcpy(out.get() + start * corpus.cols, corpus.data.data() + start * corpus.cols,
                  static_cast<size_t>(len * corpus.cols) * sizeof(float));
    }
    volatile float sink = out[static_cast<size_t>(corpus.data.size() - 1)];
    (void)sink;
  };
}

// Floor of a TorchScript encoder: the plain LibTorch inference loop (its own module; the
// output buffer is allocated once and reused by every pass).
std::function<void()> PlainTorchPass(const Options& opt, const std::string& path,
                                     const FeatureMatrix& corpus) {
  auto module = std::make_shared<torch::jit::Module>(torch::jit::load(path));
  module->eval();
  auto out = std::make_shared<std::vector<float>>();
  return [&opt, &corpus, module, out] {
    torch::InferenceMode inference;
    float* data = const_cast<float*>(corpus.data.data());  // only read
    std::vector<torch::jit::IValue> inputs(1);
    for (int64_t start = 0; start < corpus.rows; start += opt.batch) {
      const int64_t len = std::min(opt.batch, corpus.rows - start);
      inputs[0] = torch::from_blob(data + start * corpus.cols, {len, corpus.cols});
      torch::Tensor y = module->forward(inputs).toTensor();
      if (out->empty()) out->resize(static_cast<size_t>(corpus.rows * y.size(1)));
      torch::from_blob(out->data() + start * y.size(1), {len, y.size(1)}).copy_(y);
    }
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
    else
      Die(Status::InvalidArgument("unknown flag " + flag));
  }
  if (o.batch < 1) Die(Status::InvalidArgument("--batch must be >= 1"));
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
      "# embed_bench: %lld rows x %lld, batch %lld, 1 thread; corpus "
      "load %.2f s "
      "(once per worker, not in the figures below)\n",
      static_cast<long long>(m.rows), static_cast<long long>(m.cols),
      static_cast<long long>(opt.batch), load_s);

  lattice::jobs::EncoderCache encoders;
  Report("flatten", Compare(LatticePass(opt, "", m.rows, &cache, &encoders),
                            PlainCopyPass(opt, m), m.rows, opt.min_seconds));
  if (opt.encoder.empty()) opt.encoder = MakeEncoder();
  if (!opt.encoder.empty()) {
    try {
      Report("torchscript linear 784->32",
             Compare(LatticePass(opt, opt.encoder, m.rows, &cache, &encoders),
                     PlainTorchPass(opt, opt.encoder, m), m.rows, opt.min_seconds));
    } catch (const std::exception& e) {
      Die(Status::Internal(std::string("libtorch: ") + e.what()));
    }
  }
  return 0;
}
