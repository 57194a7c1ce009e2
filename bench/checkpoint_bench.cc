// checkpoint_bench: what long training runs pay for checkpoints, resume and distillation,
// each measured against its peer in the same process, one intra-op thread (as a worker
// limits it), on Fashion-MNIST (scale 1/255, standardised). The model is an MLP
// 784 -> 2048 -> 2048 -> 10 (5.8M parameters; ~70 MB with AdamW's two moments), large enough
// that a checkpoint costs something next to a step (batch 64).
//
//   1. checkpoint write (MB/s): Lattice's step checkpoint as the job makes it (the snapshot:
//      weights, moments, RNGs, data order, in jobs/checkpoint.h's format), written to a file
//      and fsynced (the durable sink, standing in for the coordinator's RocksDB write).
//      The snapshot is made inside the step loop, so its cost is measured there: runs with a
//      checkpoint after every step vs none, the difference of the median step intervals
//      (ctx.cancelled is polled before every batch; the sink's own time is taken out).
//      Peer: torch::save of the same state (the checkpoint's weights and moments) to a file
//      + fsync, the floor of what any LibTorch program pays.
//   2. step time with checkpoint {every_steps: 100} vs no checkpoint key: ms per step over
//      --steps steps (the bytes handed to on_checkpoint are dropped: the sink is in 1).
//      Runs alternate (A B, B A, ...); medians.
//   3. resume to first step: RunJob called -> its first poll of ctx.cancelled (before the
//      first batch), fresh vs resume_from = the step-100 checkpoint of 2 (mid-epoch), the
//      dataset already in the worker's DatasetCache for both. Alternating; medians.
//   4. distill vs a plain LibTorch loop: a teacher (the MLP above, trained here for an epoch
//      with kind train) distilled into a 784 -> 256 -> 10 student with kind distill, vs the
//      loop a user writes: per batch the teacher's forward under NoGradGuard, the KD loss
//      alpha * CE + (1 - alpha) * T^2 * KL, AdamW step; an eval pass per epoch, as the job.
//      Both timed from the call to the end (the job reads a warm DatasetCache; the loop gets
//      its tensors ready-made), per optimizer step.
//
// Checkpoint files go to a temporary directory under --dir (default /var/tmp: fsync on a
// tmpfs costs nothing, so a warning is printed when --dir is one).
//
// usage: checkpoint_bench [--data DIR] [--dir DIR] [--min-seconds S] [--steps N] [--pairs N]
//                         [--resumes N] [--distill-epochs N] [--distill-rounds N]
//                         [--only write|steps|resume|distill]
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/magic.h>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/dataset.h"
#include "jobs/internal/threads.h"
#include "jobs/train_config.h"
#include "jobs/train_job.h"
#include "store/checkpoint_store.h"
#include "store/state_store.h"

namespace {

using lattice::Status;
using nlohmann::json;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string dir = "/var/tmp";  // where the checkpoint files are written
  double min_seconds = 2.0;      // 1: at least this much time in each side's writes
  int64_t steps = 200;           // 2: steps per timed run (two checkpoints at every 100)
  int pairs = 4;                 // 2: A/B pairs (even: as many start with A as with B)
  int resumes = 5;               // 3: fresh and resumed starts, each
  int64_t distill_epochs = 2;    // 4: epochs of the student
  int distill_rounds = 2;        // 4: Lattice / plain runs, each
  std::string only;              // write | steps | resume | distill; empty: all
};

constexpr int64_t kBatch = 64;
constexpr int64_t kEverySteps = 100;  // the checkpoint interval of 2 (and the resume point)
constexpr double kValFraction = 0.1;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void Die(const Status& s) {
  std::fprintf(stderr, "checkpoint_bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

[[noreturn]] void DieErrno(const std::string& what) {
  Die(Status::Internal(what + ": " + std::strerror(errno)));
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---------------------------------------------------------------------------------------
// The durable sink: a file written in full and fsynced, as a store's synced write.

struct WriteTime {
  double write = 0;  // open + write(2) until every byte is in the page cache
  double fsync = 0;
};

WriteTime WriteDurable(const std::string& path, const std::string& bytes) {
  const double t0 = Now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) DieErrno("open " + path);
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) DieErrno("write " + path);
    done += static_cast<size_t>(n);
  }
  const double t1 = Now();
  if (::fsync(fd) != 0) DieErrno("fsync " + path);
  ::close(fd);
  return {t1 - t0, Now() - t1};
}

// fsync of a file another writer (torch::save) closed: on Linux an O_RDONLY descriptor
// flushes the file's dirty pages all the same.
double FsyncFile(const std::string& path) {
  const double t0 = Now();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) DieErrno("open " + path);
  if (::fsync(fd) != 0) DieErrno("fsync " + path);
  ::close(fd);
  return Now() - t0;
}

std::string MakeScratch(const Options& opt) {
  std::string pattern = opt.dir + "/checkpoint_bench.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) DieErrno("mkdtemp " + pattern);
  struct statfs fs;
  if (statfs(pattern.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
    std::printf("# WARNING: %s is a tmpfs: fsync is free there, the write figures flatter "
                "both sides\n", opt.dir.c_str());
  }
  return pattern;
}

// ---------------------------------------------------------------------------------------
// Job configs.

json Dataset(const Options& opt, int64_t limit) {
  return {{"format", "idx"},
          {"images", opt.data + "/train-images-idx3-ubyte.gz"},
          {"labels", opt.data + "/train-labels-idx1-ubyte.gz"},
          {"scale", 1.0 / 255},
          {"standardize", true},
          {"limit", limit},
          {"split", {{"validation_fraction", kValFraction}, {"seed", 7}}}};
}

// Rows such that one epoch has at least `steps` + 1 batches: the timed windows below never
// reach an epoch's evaluation.
int64_t RowsFor(int64_t steps) {
  return static_cast<int64_t>(std::ceil(static_cast<double>((steps + 1) * kBatch) /
                                        (1 - kValFraction))) + kBatch;
}

// The big MLP as a train job; `every_steps` > 0 adds step checkpoints.
json BigMlp(const Options& opt, int64_t rows, int64_t every_steps, int64_t epochs = 1,
            bool final_checkpoint = false) {
  json c = {{"kind", "train"},
            {"seed", 1},
            {"dataset", Dataset(opt, rows)},
            {"model", {{"type", "mlp"}, {"hidden", {2048, 2048}}}},
            {"train", {{"epochs", epochs}, {"batch_size", kBatch}, {"lr", 1e-3}, {"threads", 1},
                       {"checkpoint", final_checkpoint}}}};
  if (every_steps > 0) c["checkpoint"] = {{"every_steps", every_steps}};
  return c;
}

// ---------------------------------------------------------------------------------------
// A job run observed through its callbacks.

struct Probe {
  double start = 0;                // RunJob called
  std::vector<double> polls;       // each ctx.cancelled() call (one before every batch)
  std::vector<double> sink;        // per poll: time spent in on_checkpoint since the last poll
  std::vector<int64_t> checkpoint_bytes;
  double end = 0;                  // RunJob returned
};

using Sink = std::function<void(std::string bytes, int64_t step)>;

// Runs `config` and stops it at the poll before step `steps` + 1 (steps < 0: runs to the
// end). `sink` (optional) receives the step checkpoints; its time is recorded apart.
Probe Observe(const json& config, lattice::jobs::JobContext ctx, int64_t steps,
              const Sink& sink = {}) {
  Probe p;
  double in_sink = 0;
  ctx.cancelled = [&] {
    p.polls.push_back(Now());
    p.sink.push_back(in_sink);
    in_sink = 0;
    return steps >= 0 && static_cast<int64_t>(p.polls.size()) > steps;
  };
  ctx.on_checkpoint = [&](std::string bytes, int64_t step, int) {
    const double t0 = Now();
    p.checkpoint_bytes.push_back(static_cast<int64_t>(bytes.size()));
    if (sink) sink(std::move(bytes), step);
    in_sink += Now() - t0;
  };
  p.start = Now();
  auto r = lattice::jobs::RunJob(config, ctx);
  p.end = Now();
  if (steps >= 0) {
    if (r.status().code() != lattice::StatusCode::kCancelled) {
      Die(r.ok() ? Status::Internal("the run ended before step " + std::to_string(steps + 1) +
                                    ": too few rows for --steps")
                 : r.status());
    }
  } else if (!r.ok()) {
    Die(r.status());
  }
  return p;
}

lattice::jobs::JobContext Context(lattice::jobs::DatasetCache* cache) {
  lattice::jobs::JobContext ctx;
  ctx.cache = cache;
  ctx.num_threads = 1;
  return ctx;
}

// ---------------------------------------------------------------------------------------
// 1. Checkpoint write throughput.

void BenchWrite(const Options& opt, lattice::jobs::DatasetCache* cache,
                const std::string& scratch) {
  // A run of k steps checkpointing after each: the first interval (first-call allocations)
  // is dropped, the other k - 1 are samples.
  constexpr int64_t kSteps = 6;
  const int64_t rows = RowsFor(kSteps);
  const json with = BigMlp(opt, rows, /*every_steps=*/1);
  const json without = BigMlp(opt, rows, 0);
  const std::string lattice_path = scratch + "/lattice.ckpt";
  const std::string peer_path = scratch + "/peer.pt";

  std::string captured;  // one step checkpoint, for the peer's state
  std::vector<double> steps_with, steps_without, writes, fsyncs, peer_saves, peer_fsyncs;
  int64_t lattice_bytes = 0;
  auto run_lattice = [&](bool keep) {
    Probe p = Observe(with, Context(cache), kSteps, [&](std::string bytes, int64_t) {
      const WriteTime w = WriteDurable(lattice_path, bytes);
      if (keep) {
        writes.push_back(w.write);
        fsyncs.push_back(w.fsync);
      }
      lattice_bytes = static_cast<int64_t>(bytes.size());
      if (captured.empty()) captured = std::move(bytes);
    });
    // The sink's time since poll i is recorded at poll i + 1.
    for (size_t i = 2; keep && i < p.polls.size(); ++i) {
      steps_with.push_back(p.polls[i] - p.polls[i - 1] - p.sink[i]);
    }
  };
  auto run_without = [&] {
    Probe p = Observe(without, Context(cache), kSteps);
    for (size_t i = 2; i < p.polls.size(); ++i) {
      steps_without.push_back(p.polls[i] - p.polls[i - 1]);
    }
  };
  run_lattice(/*keep=*/false);  // warm-up; captures the state the peer saves

  // The peer's state: the captured checkpoint's weights and AdamW moments, read back.
  std::vector<torch::Tensor> state;
  {
    size_t offset = 0;
    auto header = lattice::jobs::ReadCheckpointHeader(captured, &offset);
    if (!header.ok()) Die(header.status());
    torch::serialize::InputArchive archive;
    archive.load_from(captured.data() + offset, captured.size() - offset);
    for (const char* layer : {"0", "2", "4"}) {  // Sequential: Linear, ReLU, Linear, ...
      torch::serialize::InputArchive linear;
      archive.read(layer, linear);
      for (const char* name : {"weight", "bias"}) {
        torch::Tensor t;
        linear.read(name, t);
        state.push_back(t);
      }
    }
    for (const char* name : {"optimizer.exp_avg", "optimizer.exp_avg_sq"}) {
      torch::Tensor t;
      archive.read(name, t);
      state.push_back(t);
    }
  }
  auto run_peer = [&](int64_t times) {
    for (int64_t i = 0; i < times; ++i) {
      const double t0 = Now();
      torch::save(state, peer_path);
      peer_saves.push_back(Now() - t0);
      peer_fsyncs.push_back(FsyncFile(peer_path));
    }
  };
  run_peer(1);
  peer_saves.clear();
  peer_fsyncs.clear();

  // Rounds in rotating order until each side spent min_seconds writing.
  double lattice_total = 0, peer_total = 0;
  for (int round = 0; lattice_total < opt.min_seconds || peer_total < opt.min_seconds; ++round) {
    std::vector<std::function<void()>> parts = {[&] { run_lattice(true); }, run_without,
                                                [&] { run_peer(kSteps - 1); }};
    std::rotate(parts.begin(), parts.begin() + round % 3, parts.end());
    for (auto& part : parts) part();
    lattice_total = 0;
    for (size_t i = 0; i < writes.size(); ++i) lattice_total += writes[i] + fsyncs[i];
    peer_total = 0;
    for (size_t i = 0; i < peer_saves.size(); ++i) peer_total += peer_saves[i] + peer_fsyncs[i];
  }
  // The same bytes the way the coordinator stores them: 16 MiB chunks with CRC-32s and a
  // manifest in one synced RocksDB batch, the oldest pruned (keep 2), as many times as the
  // peer saved.
  std::vector<double> store_writes;
  {
    auto opened = lattice::StateStore::Open({scratch + "/state", /*sync_writes=*/true});
    if (!opened.ok()) Die(opened.status());
    std::unique_ptr<lattice::StateStore> store = std::move(opened).value();
    const lattice::TrialId trial{lattice::SweepId{1}, 0};
    for (size_t i = 0; i <= peer_saves.size(); ++i) {
      const double t0 = Now();
      lattice::StateWriteBatch batch;
      const int64_t step = static_cast<int64_t>(i) + 1;
      lattice::CheckpointStore::Put(batch, trial, step, captured);
      if (step > 2) lattice::CheckpointStore::Delete(batch, trial, step - 2);
      if (Status s = store->Commit(batch); !s.ok()) Die(s);
      if (i > 0) store_writes.push_back(Now() - t0);  // the first one warms RocksDB up
    }
  }
  const int64_t peer_bytes = static_cast<int64_t>(std::filesystem::file_size(peer_path));
  const double snapshot = std::max(0.0, Median(steps_with) - Median(steps_without));
  const double lattice_s = snapshot + Median(writes) + Median(fsyncs);
  const double peer_s = Median(peer_saves) + Median(peer_fsyncs);
  const double lattice_mbs = static_cast<double>(lattice_bytes) / 1e6 / lattice_s;
  const double peer_mbs = static_cast<double>(peer_bytes) / 1e6 / peer_s;
  std::printf("\n## 1. checkpoint write, MLP 784-2048-2048-10 + AdamW moments (%zu samples each)\n",
              writes.size());
  std::printf("| | Lattice step checkpoint -> file + fsync | torch::save -> file + fsync "
              "| ratio |\n");
  std::printf("|---|---:|---:|---:|\n");
  std::printf("| bytes | %.1f MB | %.1f MB | |\n", lattice_bytes / 1e6, peer_bytes / 1e6);
  std::printf("| serialise (Lattice: in-step snapshot, step %.1f ms -> %.1f ms) | %.1f ms | "
              "(in save) | |\n", Median(steps_without) * 1e3, Median(steps_with) * 1e3,
              snapshot * 1e3);
  std::printf("| write (torch::save: serialise + write) | %.1f ms | %.1f ms | |\n",
              Median(writes) * 1e3, Median(peer_saves) * 1e3);
  std::printf("| fsync | %.1f ms | %.1f ms | |\n", Median(fsyncs) * 1e3,
              Median(peer_fsyncs) * 1e3);
  // The sink alone (bytes already made) says where the gap is: in making them, or not.
  const double sink_mbs = static_cast<double>(lattice_bytes) / 1e6 /
                          (Median(writes) + Median(fsyncs));
  std::printf("| write + fsync only (bytes already made; peer: whole save) | %.0f MB/s "
              "| %.0f MB/s | %.3f |\n",
              sink_mbs, peer_mbs, sink_mbs / peer_mbs);
  std::printf("| **throughput** (serialise + write + fsync) | **%.0f MB/s** | **%.0f MB/s** | "
              "**%.3f** (target >= 0.8) |\n", lattice_mbs, peer_mbs, lattice_mbs / peer_mbs);
  const double store_mbs =
      static_cast<double>(lattice_bytes) / 1e6 / (snapshot + Median(store_writes));
  std::printf("| into the state store instead of a file (serialise + 16 MiB chunks + CRC-32 + "
              "synced batch; %.1f ms a write) | %.0f MB/s | %.0f MB/s | %.3f |\n",
              Median(store_writes) * 1e3, store_mbs, peer_mbs, store_mbs / peer_mbs);
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------
// 2. Step time with and without checkpoints; 3. resume to first step.

// Returns the step-100 checkpoint of the checkpointed config (for 3).
std::shared_ptr<const std::string> BenchSteps(const Options& opt,
                                              lattice::jobs::DatasetCache* cache) {
  const int64_t rows = RowsFor(opt.steps);
  const json with = BigMlp(opt, rows, kEverySteps);
  const json without = BigMlp(opt, rows, 0);
  std::shared_ptr<const std::string> first;
  int64_t checkpoints = 0, bytes = 0;
  auto ms_per_step = [&](const json& config) {
    Probe p = Observe(config, Context(cache), opt.steps, [&](std::string b, int64_t step) {
      ++checkpoints;
      bytes = static_cast<int64_t>(b.size());
      // A move, not a copy: the window's cost stays what a worker's handing-off would be.
      if (!first && step == kEverySteps) first = std::make_shared<const std::string>(std::move(b));
    });
    return (p.polls.back() - p.polls.front()) / static_cast<double>(opt.steps) * 1e3;
  };
  std::vector<double> a, b, ratios;
  for (int i = 0; i < opt.pairs; ++i) {
    double ta, tb;
    if (i % 2 == 0) {
      ta = ms_per_step(with);
      tb = ms_per_step(without);
    } else {
      tb = ms_per_step(without);
      ta = ms_per_step(with);
    }
    a.push_back(ta);
    b.push_back(tb);
    ratios.push_back(ta / tb);
  }
  std::printf("\n## 2. training step, checkpoint every %lld steps vs none (%lld steps a run, "
              "%d pairs, medians; %lld checkpoints of %.1f MB in all, dropped)\n",
              static_cast<long long>(kEverySteps), static_cast<long long>(opt.steps), opt.pairs,
              static_cast<long long>(checkpoints), bytes / 1e6);
  std::printf("| | checkpoint every %lld | no checkpoint | ratio |\n",
              static_cast<long long>(kEverySteps));
  std::printf("|---|---:|---:|---:|\n");
  // The ratio is the median of the pairs' ratios: the two runs of a pair are adjacent in
  // time, so load from other processes cancels better than across pairs.
  std::printf("| **ms/step** | **%.2f** | **%.2f** | **%.3f** (target <= 1.03; pairs "
              "%.3f-%.3f) |\n",
              Median(a), Median(b), Median(ratios),
              *std::min_element(ratios.begin(), ratios.end()),
              *std::max_element(ratios.begin(), ratios.end()));
  std::fflush(stdout);
  return first;
}

std::shared_ptr<const std::string> CaptureCheckpoint(const Options& opt,
                                                     lattice::jobs::DatasetCache* cache) {
  std::shared_ptr<const std::string> blob;
  Observe(BigMlp(opt, RowsFor(opt.steps), kEverySteps), Context(cache), kEverySteps,
          [&](std::string b, int64_t) {
            blob = std::make_shared<const std::string>(std::move(b));
          });
  return blob;
}

void BenchResume(const Options& opt, lattice::jobs::DatasetCache* cache,
                 std::shared_ptr<const std::string> blob) {
  const json config = BigMlp(opt, RowsFor(opt.steps), kEverySteps);
  auto to_first_step = [&](bool resume) {
    lattice::jobs::JobContext ctx = Context(cache);
    if (resume) ctx.resume_from = blob;
    Probe p = Observe(config, ctx, 0);  // stops at the first poll
    return p.polls.front() - p.start;
  };
  to_first_step(false);  // warm-up (first-call allocations, the split's page faults)
  std::vector<double> fresh, resumed;
  for (int i = 0; i < opt.resumes; ++i) {
    if (i % 2 == 0) {
      fresh.push_back(to_first_step(false));
      resumed.push_back(to_first_step(true));
    } else {
      resumed.push_back(to_first_step(true));
      fresh.push_back(to_first_step(false));
    }
  }
  std::printf("\n## 3. RunJob -> first optimizer step (poll before the first batch), %d each, "
              "medians; warm DatasetCache, %lld rows\n", opt.resumes,
              static_cast<long long>(RowsFor(opt.steps)));
  std::printf("| | resume_from step %lld (%.1f MB) | fresh start | difference |\n",
              static_cast<long long>(kEverySteps), blob->size() / 1e6);
  std::printf("|---|---:|---:|---:|\n");
  std::printf("| **seconds** | **%.3f** | **%.3f** | **+%.3f** |\n", Median(resumed),
              Median(fresh), Median(resumed) - Median(fresh));
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------
// 4. Distillation vs a plain LibTorch loop.

// Linear -> ReLU per hidden width, then Linear: the layout (and so the archive names "0",
// "2", ...) of the job's MLP, written as a user would.
torch::nn::Sequential PlainMlp(int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
  torch::nn::Sequential s;
  for (int64_t h : hidden) {
    s->push_back(torch::nn::Linear(in, h));
    s->push_back(torch::nn::ReLU());
    in = h;
  }
  s->push_back(torch::nn::Linear(in, out));
  return s;
}

constexpr double kTemperature = 4.0;
constexpr double kAlpha = 0.5;
constexpr double kStudentLr = 2e-3;
const std::vector<int64_t> kStudentHidden = {256};

// The plain loop's data: the same loaded rows, split and standardised by hand.
struct PlainData {
  torch::Tensor raw_train, x_train, y_train, x_val, y_val;
};

PlainData MakePlainData(const lattice::jobs::LoadedDataset& loaded) {
  const auto& f = loaded.train.features;
  torch::Tensor x = torch::from_blob(const_cast<float*>(f.data.data()), {f.rows, f.cols}).clone();
  torch::Tensor y = torch::tensor(loaded.train.labels, torch::kLong);
  torch::manual_seed(7);
  torch::Tensor perm = torch::randperm(f.rows, torch::kLong);
  const int64_t n_val = std::llround(static_cast<double>(f.rows) * kValFraction);
  torch::Tensor vi = perm.narrow(0, 0, n_val), ti = perm.narrow(0, n_val, f.rows - n_val);
  PlainData d;
  d.raw_train = x.index_select(0, ti);
  torch::Tensor mean = d.raw_train.mean(0);
  torch::Tensor std = d.raw_train.std(0, /*unbiased=*/false).clamp_min(1e-12);
  d.x_train = (d.raw_train - mean) / std;
  d.y_train = y.index_select(0, ti);
  d.x_val = (x.index_select(0, vi) - mean) / std;
  d.y_val = y.index_select(0, vi);
  return d;
}

// One plain distillation run: decode the teacher from its checkpoint bytes, then epochs of
// shuffled batches: teacher forward (no grad) on the batch, student forward, KD loss, AdamW.
// Returns the optimizer steps taken.
int64_t PlainDistill(const std::string& teacher_blob, const PlainData& d, int64_t epochs) {
  torch::serialize::InputArchive archive;
  const size_t offset = teacher_blob.find('\n') + 1;
  archive.load_from(teacher_blob.data() + offset, teacher_blob.size() - offset);
  const int64_t in = d.x_train.size(1);
  torch::nn::Sequential teacher = PlainMlp(in, {2048, 2048}, 10);
  teacher->load(archive);
  teacher->eval();
  torch::Tensor t_mean, t_std;  // the teacher's own input standardisation
  archive.read("input.mean", t_mean);
  archive.read("input.std", t_std);

  torch::manual_seed(2);
  torch::nn::Sequential student = PlainMlp(in, kStudentHidden, 10);
  torch::optim::AdamW optimizer(student->parameters(),
                                torch::optim::AdamWOptions(kStudentLr).weight_decay(0));
  const int64_t n = d.x_train.size(0);
  int64_t steps = 0;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    student->train();
    torch::Tensor perm = torch::randperm(n, torch::kLong);
    for (int64_t start = 0; start < n; start += kBatch) {
      torch::Tensor idx = perm.narrow(0, start, std::min(kBatch, n - start));
      torch::Tensor xb = d.x_train.index_select(0, idx);
      torch::Tensor yb = d.y_train.index_select(0, idx);
      torch::Tensor t_logits;
      {
        torch::NoGradGuard no_grad;
        t_logits = teacher->forward((d.raw_train.index_select(0, idx) - t_mean) / t_std);
      }
      torch::Tensor s_logits = student->forward(xb);
      namespace F = torch::nn::functional;
      torch::Tensor kl = F::kl_div(
          F::log_softmax(s_logits / kTemperature, 1), F::log_softmax(t_logits / kTemperature, 1),
          F::KLDivFuncOptions().reduction(torch::kBatchMean).log_target(true));
      torch::Tensor loss = kAlpha * F::cross_entropy(s_logits, yb) +
                           (1 - kAlpha) * kTemperature * kTemperature * kl;
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      volatile double value = loss.item<double>();  // the job reads every loss too
      (void)value;
      ++steps;
    }
    // The job evaluates the student on the validation rows after every epoch.
    torch::NoGradGuard no_grad;
    student->eval();
    torch::Tensor logits = student->forward(d.x_val);
    volatile double val_loss = torch::nn::functional::cross_entropy(logits, d.y_val).item<double>();
    volatile double accuracy = logits.argmax(1).eq(d.y_val).to(torch::kFloat).mean().item<double>();
    (void)val_loss;
    (void)accuracy;
  }
  return steps;
}

void BenchDistill(const Options& opt, lattice::jobs::DatasetCache* cache) {
  constexpr int64_t kRows = 6000;
  // The teacher: the big MLP, one epoch (its quality does not change the timing).
  std::shared_ptr<const std::string> teacher;
  {
    lattice::jobs::JobContext ctx = Context(cache);
    const double t0 = Now();
    auto r = lattice::jobs::RunJob(BigMlp(opt, kRows, 0, 1, /*final_checkpoint=*/true), ctx);
    if (!r.ok()) Die(r.status());
    teacher = std::make_shared<const std::string>(std::move(*r->checkpoint));
    std::printf("\n# distill: teacher trained (kind train, 1 epoch, val_accuracy %.3f) in %.1f s\n",
                r->metrics.at("val_accuracy"), Now() - t0);
  }
  const json student = {
      {"kind", "distill"},
      {"seed", 2},
      {"dataset", Dataset(opt, kRows)},
      {"model", {{"type", "mlp"}, {"hidden", kStudentHidden}}},
      {"teacher", {{"type", "trial"}, {"trial", "s1-t0"}}},
      {"distill", {{"temperature", kTemperature}, {"alpha", kAlpha}}},
      {"train", {{"epochs", opt.distill_epochs}, {"batch_size", kBatch}, {"lr", kStudentLr},
                 {"threads", 1}, {"checkpoint", false}}}};
  auto dataset = lattice::jobs::ParseDatasetConfig(student["dataset"]);
  if (!dataset.ok()) Die(dataset.status());
  auto loaded = cache->Get(*dataset);
  if (!loaded.ok()) Die(loaded.status());
  const PlainData plain_data = MakePlainData(**loaded);

  std::vector<double> lattice_ms, lattice_setup, plain_ms;
  double lattice_accuracy = 0;
  auto run_lattice = [&] {
    lattice::jobs::JobContext ctx = Context(cache);
    ctx.checkpoint = [teacher](const std::string& trial) {
      return trial == "s1-t0" ? teacher : nullptr;
    };
    double accuracy = 0;
    ctx.on_epoch = [&](int, const std::map<std::string, double>& m) {
      accuracy = m.at("val_accuracy");
    };
    Probe p = Observe(student, ctx, -1);
    lattice_ms.push_back((p.end - p.start) / static_cast<double>(p.polls.size()) * 1e3);
    lattice_setup.push_back(p.polls.front() - p.start);
    lattice_accuracy = accuracy;
  };
  int64_t plain_steps = 0;
  auto run_plain = [&] {
    const double t0 = Now();
    plain_steps = PlainDistill(*teacher, plain_data, opt.distill_epochs);
    plain_ms.push_back((Now() - t0) / static_cast<double>(plain_steps) * 1e3);
  };
  for (int i = 0; i < opt.distill_rounds; ++i) {
    if (i % 2 == 0) {
      run_lattice();
      run_plain();
    } else {
      run_plain();
      run_lattice();
    }
  }
  const double lattice = Median(lattice_ms), plain = Median(plain_ms);
  std::printf("## 4. distill, teacher MLP 784-2048-2048-10 -> student 784-256-10, %lld rows, "
              "%lld epochs, %lld steps a run, %d runs each, medians\n",
              static_cast<long long>(kRows), static_cast<long long>(opt.distill_epochs),
              static_cast<long long>(plain_steps), opt.distill_rounds);
  std::printf("| | Lattice kind distill | plain LibTorch loop | ratio |\n");
  std::printf("|---|---:|---:|---:|\n");
  std::printf("| **ms/step** (whole run / steps) | **%.2f** | **%.2f** | **%.3f** (target <= "
              "1.05) |\n", lattice, plain, lattice / plain);
  std::printf("| of which before the first step (Lattice: split, teacher logits for every row) "
              "| %.2f s | | |\n", Median(lattice_setup));
  std::printf("# Why Lattice is faster here: it computes the teacher's logits once per run, for "
              "all rows (no augmentation, so they never change), in large chunks, and reuses "
              "them every epoch; the plain loop runs the teacher forward on every batch of "
              "every epoch. With 1 epoch the two do the same teacher work. Student "
              "val_accuracy (Lattice): %.3f\n", lattice_accuracy);
  std::fflush(stdout);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("usage: checkpoint_bench [--data DIR] [--dir TMPDIR] [--min-seconds S] "
                  "[--steps N] ...\n(see the comment at the top of bench/checkpoint_bench.cc)\n");
      std::exit(0);
    }
    if (i + 1 >= argc) Die(Status::InvalidArgument(flag + " needs a value"));
    const char* v = argv[i + 1];
    if (flag == "--data")
      o.data = v;
    else if (flag == "--dir")
      o.dir = v;
    else if (flag == "--min-seconds")
      o.min_seconds = std::atof(v);
    else if (flag == "--steps")
      o.steps = std::atoll(v);
    else if (flag == "--pairs")
      o.pairs = std::atoi(v);
    else if (flag == "--resumes")
      o.resumes = std::atoi(v);
    else if (flag == "--distill-epochs")
      o.distill_epochs = std::atoll(v);
    else if (flag == "--distill-rounds")
      o.distill_rounds = std::atoi(v);
    else if (flag == "--only")
      o.only = v;
    else
      Die(Status::InvalidArgument("unknown flag " + flag));
  }
  if (o.steps < kEverySteps) Die(Status::InvalidArgument("--steps must be >= 100"));
  if (o.pairs < 1 || o.resumes < 1 || o.distill_rounds < 1 || o.distill_epochs < 1) {
    Die(Status::InvalidArgument("--pairs, --resumes, --distill-* must be >= 1"));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseArgs(argc, argv);
  // As a worker limits a job: LibTorch's pool and OpenBLAS's, or the plain loops would run
  // on every core while the jobs run on one.
  lattice::jobs::internal::SetJobThreads(1);
  auto wanted = [&opt](const char* part) { return opt.only.empty() || opt.only == part; };
  const std::string scratch = MakeScratch(opt);
  std::printf("# checkpoint_bench: Fashion-MNIST (%s), 1 thread, batch %lld; files in %s\n",
              opt.data.c_str(), static_cast<long long>(kBatch), scratch.c_str());
  const double t0 = Now();
  lattice::jobs::DatasetCache cache;
  try {
    if (wanted("write")) BenchWrite(opt, &cache, scratch);
    std::shared_ptr<const std::string> step_checkpoint;
    if (wanted("steps")) step_checkpoint = BenchSteps(opt, &cache);
    if (wanted("resume")) {
      if (!step_checkpoint) step_checkpoint = CaptureCheckpoint(opt, &cache);
      BenchResume(opt, &cache, step_checkpoint);
    }
    if (wanted("distill")) BenchDistill(opt, &cache);
  } catch (const std::exception& e) {
    std::filesystem::remove_all(scratch);
    Die(Status::Internal(std::string("libtorch: ") + e.what()));
  }
  std::filesystem::remove_all(scratch);
  std::printf("# total %.1f s\n", Now() - t0);
  return 0;
}
