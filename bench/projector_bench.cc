// projector_bench: the step time (forward + backward + optimizer step) of each projector
// (jobs/internal/projectors.h) trained by Lattice's job code vs a plain LibTorch loop on the
// same batches and the same model, one intra-op thread (as a worker limits it).
//
//   Lattice: RunJob of an alignment job (alignment: siglip; jobs/projector_config.h) on token
//     data in .npy files (N x T x Dv, targets N x Dt, a 16-row explicit validation part so
//     that the per-epoch evaluation costs next to nothing); the time from the end of epoch 1
//     to the end of the last epoch (on_epoch), divided by the optimizer steps in between.
//   Plain: the loop a user writes: the same projector module (MakeProjectorBody, the same
//     shapes and initial draws) plus t' and b, torch::optim::AdamW, per epoch a randperm
//     shuffle and index_select, per batch zero_grad, the SigLIP loss written out (mean over
//     tokens, L2 normalisation, logits, -sum log sigmoid / B), backward, step; timed over
//     the same epochs after one warm-up epoch.
// Runs alternate (Lattice, plain, plain, Lattice, ...); medians of --rounds per side.
//
// usage: projector_bench [--rows N] [--epochs E] [--rounds R] [--batch B]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/internal/projectors.h"
#include "jobs/internal/threads.h"
#include "jobs/projector_config.h"
#include "jobs/train_job.h"

namespace {

using lattice::jobs::JobContext;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int64_t kTokens = 49, kDim = 16, kTargetDim = 64, kValRows = 16;

void WriteNpy(const std::string& path, const std::string& shape, const std::vector<float>& v) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  FILE* f = std::fopen(path.c_str(), "wb");
  const char magic[] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  std::fwrite(magic, 1, 8, f);
  const uint16_t len = static_cast<uint16_t>(header.size());
  std::fwrite(&len, 2, 1, f);
  std::fwrite(header.data(), 1, header.size(), f);
  std::fwrite(v.data(), sizeof(float), v.size(), f);
  std::fclose(f);
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

json Config(const std::string& dir, const std::string& type, int64_t epochs, int64_t batch) {
  return {{"kind", "train"},
          {"seed", 1},
          {"alignment", "siglip"},
          {"dataset",
           {{"features", dir + "/x.npy"}, {"targets", dir + "/t.npy"},
            {"validation", {{"features", dir + "/xv.npy"}, {"targets", dir + "/tv.npy"}}}}},
          {"model", {{"type", type}}},
          {"train", {{"epochs", epochs}, {"batch_size", batch}, {"lr", 1e-3}, {"threads", 1},
                     {"checkpoint", false}}}};
}

// ms per step of RunJob between the end of epoch 1 and the end of the last one.
double LatticeStep(const json& config, int64_t rows, int64_t epochs, int64_t batch) {
  std::vector<Clock::time_point> ends;
  JobContext ctx;
  ctx.num_threads = 1;
  ctx.on_epoch = [&](int, const std::map<std::string, double>&) { ends.push_back(Clock::now()); };
  auto r = lattice::jobs::RunJob(config, ctx);
  if (!r.ok()) {
    std::fprintf(stderr, "lattice: %s\n", r.status().ToString().c_str());
    std::exit(1);
  }
  const int64_t steps = (epochs - 1) * ((rows + batch - 1) / batch);
  return std::chrono::duration<double, std::milli>(ends.back() - ends.front()).count() /
         static_cast<double>(steps);
}

// The plain loop (see the header); ms per step after a warm-up epoch.
double PlainStep(const lattice::jobs::ProjectorShape& shape, const torch::Tensor& x,
                 const torch::Tensor& t, int64_t epochs, int64_t batch) {
  torch::manual_seed(1);
  auto body = lattice::jobs::internal::MakeProjectorBody(shape);
  torch::Tensor scale = torch::full({1}, std::log(10.0)).requires_grad_();
  torch::Tensor bias = torch::full({1}, -10.0).requires_grad_();
  std::vector<torch::Tensor> params = body->parameters();
  params.push_back(scale);
  params.push_back(bias);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-3).weight_decay(0));
  namespace F = torch::nn::functional;
  const int64_t n = x.size(0);
  Clock::time_point start;
  for (int64_t e = 0; e < epochs; ++e) {
    if (e == 1) start = Clock::now();
    torch::Tensor perm = torch::randperm(n);
    torch::Tensor xs = x.index_select(0, perm), ts = t.index_select(0, perm);
    for (int64_t s = 0; s < n; s += batch) {
      const int64_t len = std::min(batch, n - s);
      opt.zero_grad();
      torch::Tensor out = body->forward(xs.narrow(0, s, len).view({len, shape.tokens, shape.dim}));
      torch::Tensor u = F::normalize(out.mean(1), F::NormalizeFuncOptions().dim(-1));
      torch::Tensor v = F::normalize(ts.narrow(0, s, len), F::NormalizeFuncOptions().dim(-1));
      torch::Tensor z = torch::matmul(u, v.t()) * scale.exp() + bias;
      torch::Tensor labels = 2 * torch::eye(len) - 1;
      torch::Tensor loss = -F::logsigmoid(labels * z).sum() / static_cast<double>(len);
      loss.backward();
      opt.step();
    }
  }
  const int64_t steps = (epochs - 1) * ((n + batch - 1) / batch);
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count() /
         static_cast<double>(steps);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 2048, epochs = 4, rounds = 3, batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int64_t value = std::atoll(argv[i + 1]);
    if (flag == "--rows") rows = value;
    else if (flag == "--epochs") epochs = value;
    else if (flag == "--rounds") rounds = value;
    else if (flag == "--batch") batch = value;
    else {
      std::fprintf(stderr, "usage: projector_bench [--rows N] [--epochs E] [--rounds R] [--batch B]\n");
      return 2;
    }
  }
  if (epochs < 2 || rows < 2 || rounds < 1 || batch < 2) {
    std::fprintf(stderr, "projector_bench: needs --epochs >= 2, --rows >= 2, --batch >= 2\n");
    return 2;
  }
  lattice::jobs::internal::SetJobThreads(1);
  char tmpl[] = "/tmp/projector_bench.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::vector<float> xv = Random(static_cast<size_t>(rows * kTokens * kDim), 1);
  const std::vector<float> tv = Random(static_cast<size_t>(rows * kTargetDim), 2);
  WriteNpy(dir + "/x.npy", "(" + std::to_string(rows) + ", 49, 16)", xv);
  WriteNpy(dir + "/t.npy", "(" + std::to_string(rows) + ", 64)", tv);
  WriteNpy(dir + "/xv.npy", "(16, 49, 16)", Random(kValRows * kTokens * kDim, 3));
  WriteNpy(dir + "/tv.npy", "(16, 64)", Random(kValRows * kTargetDim, 4));
  const torch::Tensor x = torch::from_blob(const_cast<float*>(xv.data()), {rows, kTokens * kDim});
  const torch::Tensor t = torch::from_blob(const_cast<float*>(tv.data()), {rows, kTargetDim});
  std::printf("rows %lld x %lld tokens x %lld -> targets %lld, batch %lld, %lld epochs (the "
              "first is warm-up), 1 thread, %lld rounds per side\n",
              static_cast<long long>(rows), static_cast<long long>(kTokens),
              static_cast<long long>(kDim), static_cast<long long>(kTargetDim),
              static_cast<long long>(batch), static_cast<long long>(epochs),
              static_cast<long long>(rounds));
  std::printf("%-13s %12s %12s %8s\n", "projector", "lattice ms", "plain ms", "ratio");
  for (const char* type : {"linear", "mlp2", "c_abstractor", "perceiver"}) {
    const json config = Config(dir, type, epochs, batch);
    auto parsed = lattice::jobs::ParseJobConfig(config);
    auto shape = lattice::jobs::ResolveProjector(parsed.value().model, kTokens, kDim, kTargetDim);
    std::vector<double> ours, plain;
    for (int64_t r = 0; r < rounds; ++r) {
      if (r % 2 == 0) {
        ours.push_back(LatticeStep(config, rows, epochs, batch));
        plain.push_back(PlainStep(shape.value(), x, t, epochs, batch));
      } else {
        plain.push_back(PlainStep(shape.value(), x, t, epochs, batch));
        ours.push_back(LatticeStep(config, rows, epochs, batch));
      }
    }
    const double a = Median(ours), b = Median(plain);
    std::printf("%-13s %12.3f %12.3f %8.3f\n", type, a, b, a / b);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
