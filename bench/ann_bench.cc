// ann_bench: Lattice's VectorIndex on Fashion-MNIST-784-euclidean (ann-benchmarks layout),
// single thread, measured the same way as /work/shared/bench/peers_ann.py:
//   base    = 60,000 train images (float 0..255), queries = the first NQ test images
//   recall  = recall@10 against the shared exact ground truth (.ivecs)
//   batch   = one Search call with all NQ queries, repeated until >= 2 s
//   single  = one Search call per query over the first 100 queries, repeated until >= 2 s
// Prints one JSON line per configuration, then a table of the first sweep point of each
// index that reaches recall@10 0.90 / 0.95 / 0.99.
//
// usage: ann_bench [--images DIR] [--gt FILE] [--nq N] [--min-seconds S] [--only NAME]
#include <omp.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "store/retrieval_metrics.h"
#include "store/vector_index.h"

namespace {

using lattice::Status;
using lattice::StatusOr;
using namespace lattice::store;  // NOLINT: a benchmark main

constexpr int kK = 10;

struct Options {
  std::string images = "/usr/share/datasets/fashion-mnist";
  std::string gt = "/work/shared/data/fashion-mnist/fashion-mnist-784-euclidean_gt100.ivecs";
  int nq = 1000;
  double min_seconds = 2.0;
  std::string only;  // run only the config whose name contains this
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Reads an idx3 (magic 2051, big-endian header) gzip file into rows of float pixels.
StatusOr<FloatMatrix> ReadIdxImages(const std::string& path, int64_t max_rows) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return Status::NotFound(path + ": cannot open");
  unsigned char header[16];
  FloatMatrix m;
  if (gzread(f, header, 16) != 16) {
    gzclose(f);
    return Status::IoError(path + ": short header");
  }
  auto be32 = [&](int at) {
    return (uint32_t{header[at]} << 24) | (uint32_t{header[at + 1]} << 16) |
           (uint32_t{header[at + 2]} << 8) | uint32_t{header[at + 3]};
  };
  if (be32(0) != 2051) {
    gzclose(f);
    return Status::IoError(path + ": not an idx3 image file");
  }
  m.rows = be32(4);
  if (max_rows > 0 && max_rows < m.rows) m.rows = max_rows;
  m.dim = static_cast<int>(be32(8) * be32(12));
  std::vector<unsigned char> pixels(static_cast<size_t>(m.rows) * m.dim);
  const int got = gzread(f, pixels.data(), static_cast<unsigned>(pixels.size()));
  gzclose(f);
  if (got != static_cast<int>(pixels.size())) return Status::IoError(path + ": truncated");
  m.data.assign(pixels.begin(), pixels.end());
  return m;
}

// Calls fn until min_seconds have passed; returns items per second.
double Throughput(const std::function<void()>& fn, int64_t items_per_call, double min_seconds) {
  int64_t items = 0;
  const double t0 = Now();
  while (true) {
    fn();
    items += items_per_call;
    const double el = Now() - t0;
    if (el >= min_seconds) return items / el;
  }
}

struct Point {
  std::string index, params;
  double build_s, recall, qps_batch, qps_single;
};

struct Config {
  std::string name;  // "lattice-hnswlib" ...
  IndexParams params;
  std::string knob;  // "ef_search" | "nprobe"
  std::vector<int> sweep;
};

void Die(const Status& s) {
  std::fprintf(stderr, "ann_bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

std::vector<Point> RunConfig(const Config& c, const FloatMatrix& base, const FloatMatrix& q,
                             const IdMatrix& gt, const Options& opt) {
  std::vector<int64_t> ids(base.rows);
  for (int64_t i = 0; i < base.rows; ++i) ids[i] = i;
  const double t0 = Now();
  auto made = MakeVectorIndex(c.params);
  if (!made.ok()) Die(made.status());
  std::unique_ptr<VectorIndex> index = std::move(made).value();
  if (Status s = index->Add(base.data.data(), base.rows, ids.data()); !s.ok()) Die(s);
  const double build_s = Now() - t0;
  std::vector<Point> points;
  for (int v : c.sweep) {
    SearchParams sp;
    (c.knob == "nprobe" ? sp.nprobe : sp.ef_search) = v;
    auto r = index->Search(q.data.data(), q.rows, kK, sp);
    if (!r.ok()) Die(r.status());
    const double recall = *RecallAtK(ToIdMatrix(*r), gt, kK);
    const double batch = Throughput([&] { (void)index->Search(q.data.data(), q.rows, kK, sp); },
                                    q.rows, opt.min_seconds);
    const int64_t singles = std::min<int64_t>(100, q.rows);
    const double single = Throughput(
        [&] {
          for (int64_t i = 0; i < singles; ++i) (void)index->Search(q.data.data() + i * q.dim, 1, kK, sp);
        },
        singles, opt.min_seconds);
    Point p{c.name, c.params.build.dump() + " " + c.knob + "=" + std::to_string(v), build_s,
            recall, batch, single};
    std::printf(
        "{\"lib\": \"lattice\", \"index\": \"%s\", \"params\": %s, \"build_s\": %.2f, "
        "\"recall10\": %.4f, \"qps_batch\": %.1f, \"qps_single\": %.1f}\n",
        p.index.c_str(), nlohmann::json(p.params).dump().c_str(), p.build_s, p.recall,
        p.qps_batch, p.qps_single);
    std::fflush(stdout);
    points.push_back(p);
  }
  return points;
}

void PrintTargets(const std::vector<Point>& all) {
  std::printf("\n%-18s %-7s %-52s %8s %10s %10s\n", "index", "target", "first point reaching it",
              "recall", "qps_single", "qps_batch");
  for (double target : {0.90, 0.95, 0.99}) {
    std::string last;
    for (const Point& p : all) {
      if (p.index == last || p.recall < target) continue;
      last = p.index;
      std::printf("%-18s %-7.2f %-52s %8.4f %10.1f %10.1f\n", p.index.c_str(), target,
                  p.params.c_str(), p.recall, p.qps_single, p.qps_batch);
    }
  }
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--images") o.images = v;
    else if (flag == "--gt") o.gt = v;
    else if (flag == "--nq") o.nq = std::atoi(v);
    else if (flag == "--min-seconds") o.min_seconds = std::atof(v);
    else if (flag == "--only") o.only = v;
    else Die(Status::InvalidArgument("unknown flag " + flag));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseArgs(argc, argv);
  omp_set_num_threads(1);
  auto base = ReadIdxImages(opt.images + "/train-images-idx3-ubyte.gz", 0);
  if (!base.ok()) Die(base.status());
  auto queries = ReadIdxImages(opt.images + "/t10k-images-idx3-ubyte.gz", opt.nq);
  if (!queries.ok()) Die(queries.status());
  auto gt100 = ReadIvecs(opt.gt, opt.nq);
  if (!gt100.ok()) Die(gt100.status());
  IdMatrix gt{gt100->rows, kK, {}};
  for (int64_t r = 0; r < gt100->rows; ++r) {
    for (int j = 0; j < kK; ++j) gt.ids.push_back(gt100->ids[r * gt100->cols + j]);
  }
  const int d = base->dim;
  const std::vector<int> efs = {10, 16, 24, 32, 48, 64, 128};
  auto params = [d](IndexType type, nlohmann::json build) {
    IndexParams p;
    p.type = type;
    p.metric = Metric::kL2;
    p.dim = d;
    p.build = std::move(build);
    return p;
  };
  const std::vector<Config> configs = {
      {"lattice-hnswlib", params(IndexType::kHnsw, {{"backend", "hnswlib"}, {"M", 16}, {"ef_construction", 100}}), "ef_search", efs},
      {"lattice-hnswlib", params(IndexType::kHnsw, {{"backend", "hnswlib"}, {"M", 32}, {"ef_construction", 100}}), "ef_search", efs},
      {"lattice-faiss", params(IndexType::kHnsw, {{"backend", "faiss"}, {"M", 32}, {"ef_construction", 100}}), "ef_search", efs},
      {"lattice-ivf_flat", params(IndexType::kIvfFlat, {{"nlist", 100}}), "nprobe", {1, 2, 4, 8, 16}},
  };
  std::printf("# ann_bench: %lld base x %d, %lld queries, k=%d, 1 thread\n",
              static_cast<long long>(base->rows), d, static_cast<long long>(queries->rows), kK);
  std::vector<Point> all;
  for (const Config& c : configs) {
    const std::string key = c.name + " " + c.params.build.dump();
    if (!opt.only.empty() && key.find(opt.only) == std::string::npos) continue;
    std::vector<Point> pts = RunConfig(c, *base, *queries, gt, opt);
    for (Point& p : pts) p.index = c.name + (c.params.type == IndexType::kHnsw ? "-M" + c.params.build["M"].dump() : "");
    all.insert(all.end(), pts.begin(), pts.end());
  }
  PrintTargets(all);
  return 0;
}
