#include "jobs/internal/sae.h"

#include <algorithm>

#include "common/status.h"

namespace lattice::jobs::internal {
namespace {

namespace F = torch::nn::functional;

constexpr char kMeanKey[] = "input.mean";
constexpr char kStdKey[] = "input.std";
const char* const kNames[] = {"b_pre", "W_enc", "b_enc", "W_dec"};

}  // namespace

SaeModel::SaeModel(int64_t in, int64_t features, bool)
    : in_(in), features_(features),
      b_pre_(torch::zeros({in})), w_enc_(torch::zeros({features, in})),
      b_enc_(torch::zeros({features})), w_dec_(torch::zeros({in, features})) {
  for (torch::Tensor* t : {&b_pre_, &w_enc_, &b_enc_, &w_dec_}) t->set_requires_grad(true);
}

SaeModel::SaeModel(int64_t in, int64_t features, const torch::Tensor& b_pre_init)
    : SaeModel(in, features, true) {
  torch::NoGradGuard no_grad;
  torch::Tensor w = torch::randn({in, features});
  w_dec_.copy_(w / w.norm(2, {0}, /*keepdim=*/true));
  w_enc_.copy_(w_dec_.t());
  if (b_pre_init.defined()) b_pre_.copy_(b_pre_init.to(torch::kFloat).cpu());
}

torch::Tensor SaeModel::Forward(const torch::Tensor& x, torch::Tensor* features) {
  torch::Tensor f = torch::relu(torch::addmm(b_enc_, x - b_pre_, w_enc_.t()));
  if (features != nullptr) *features = f;
  return torch::addmm(b_pre_, f, w_dec_.t());
}

torch::Tensor SaeModel::forward(const torch::Tensor& x) { return Forward(x, nullptr); }

void SaeModel::RenormaliseDecoder() {
  torch::NoGradGuard no_grad;
  w_dec_.div_(w_dec_.norm(2, {0}, /*keepdim=*/true).clamp_min(1e-12));
}

torch::Tensor SaeModel::DecoderNorms() const { return w_dec_.norm(2, {0}); }

std::vector<torch::Tensor> SaeModel::parameters() const { return {b_pre_, w_enc_, b_enc_, w_dec_}; }

NamedWeights SaeModel::CloneWeights() const {
  NamedWeights out;
  const std::vector<torch::Tensor> p = parameters();
  for (size_t i = 0; i < p.size(); ++i) out.emplace_back(kNames[i], p[i].detach().clone());
  return out;
}

void SaeModel::LoadWeights(const NamedWeights& weights) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> p = parameters();
  LATTICE_CHECK(weights.size() == p.size());
  for (size_t i = 0; i < p.size(); ++i) p[i].copy_(weights[i].second);
}

std::unique_ptr<TrainModel> SaeModel::Twin() const {
  auto twin = std::unique_ptr<SaeModel>(new SaeModel(in_, features_, true));
  twin->to(w_dec_.device());
  twin->CopyWeightsFrom(*this);
  return twin;
}

void SaeModel::CopyWeightsFrom(const TrainModel& from) {
  const auto* other = dynamic_cast<const SaeModel*>(&from);
  LATTICE_CHECK(other != nullptr);
  LoadWeights(other->CloneWeights());
}

void SaeModel::to(const torch::Device& device) {
  for (torch::Tensor* t : {&b_pre_, &w_enc_, &b_enc_, &w_dec_}) {
    if (t->device() == device) continue;
    *t = t->detach().to(device).set_requires_grad(true);
  }
}

std::string SaeModel::Encode(const CheckpointHeader& header, const torch::Tensor& input_mean,
                             const torch::Tensor& input_std,
                             const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  torch::serialize::OutputArchive archive;
  const std::vector<torch::Tensor> p = parameters();
  for (size_t i = 0; i < p.size(); ++i) archive.write(kNames[i], p[i].detach().cpu());
  if (input_mean.defined()) {
    archive.write(kMeanKey, input_mean.contiguous().cpu());
    archive.write(kStdKey, input_std.contiguous().cpu());
  }
  if (extra) extra(archive);
  std::string out = header.ToJson().dump();
  out.push_back('\n');
  archive.save_to([&out](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
    return size;
  });
  return out;
}

void SaeModel::Decode(const std::string& blob, size_t offset,
                      torch::serialize::InputArchive* state) {
  state->load_from(blob.data() + offset, blob.size() - offset);
  NamedWeights weights = CloneWeights();
  for (auto& [name, t] : weights) {
    torch::Tensor saved;
    state->read(name, saved);
    if (!saved.sizes().equals(t.sizes())) {
      throw std::runtime_error("checkpoint: " + name + " has shape " +
                               c10::str(saved.sizes()) + ", the model " + c10::str(t.sizes()));
    }
    t = saved;
  }
  LoadWeights(weights);
}

SaeLossParts SaeLoss(const torch::Tensor& x, const torch::Tensor& x_hat,
                     const torch::Tensor& features, const torch::Tensor& decoder_norms,
                     double l1_coefficient) {
  torch::Tensor mse = F::mse_loss(x_hat, x);
  torch::Tensor sparsity = (features * decoder_norms).sum(1).mean();
  SaeLossParts parts;
  parts.loss = mse + l1_coefficient * sparsity;
  parts.mse = mse.item<double>();
  parts.sparsity = sparsity.item<double>();
  return parts;
}

DeadFeatureTracker::DeadFeatureTracker(int64_t features, int64_t window)
    : window_(window), last_fired_(torch::full({features}, int64_t{-1}, torch::kLong)) {}

void DeadFeatureTracker::Record(const torch::Tensor& features) {
  torch::NoGradGuard no_grad;
  seen_ += features.size(0);
  // Features are ReLU outputs (>= 0): a column fired iff its sum is > 0. A sum along the
  // rows vectorises across the columns; a comparison and any() is twice the passes.
  torch::Tensor fired = features.sum(0).gt(0).cpu();
  last_fired_.masked_fill_(fired, seen_);
}

int64_t DeadFeatureTracker::Dead() const {
  // Fired within the last window_ inputs: last_fired_ > seen_ - window_ (inputs are
  // counted in whole batches, so "last fired" is the end of its batch).
  const int64_t since = std::max<int64_t>(seen_ - window_, 0);
  return (last_fired_ <= since).sum().item<int64_t>();
}

double LabelPurity(const torch::Tensor& features, const torch::Tensor& labels, int64_t top,
                   int64_t* live) {
  torch::NoGradGuard no_grad;
  const int64_t k = std::min<int64_t>(top, features.size(0));
  auto [values, index] = features.topk(k, /*dim=*/0);  // [k, m] each
  torch::Tensor active = values > 0;
  torch::Tensor top_labels = labels.index_select(0, index.reshape(-1)).reshape(index.sizes());
  const int64_t classes = labels.max().item<int64_t>() + 1;
  torch::Tensor majority = torch::zeros({features.size(1)}, torch::kLong).to(features.device());
  for (int64_t c = 0; c < classes; ++c) {
    majority = torch::maximum(majority, (top_labels.eq(c) & active).sum(0));
  }
  torch::Tensor counted = active.sum(0);
  torch::Tensor is_live = counted > 0;
  const int64_t n_live = is_live.sum().item<int64_t>();
  if (live != nullptr) *live = n_live;
  if (n_live == 0) return -1;
  torch::Tensor purity = majority.to(torch::kDouble) / counted.clamp_min(1).to(torch::kDouble);
  return purity.masked_select(is_live).mean().item<double>();
}

SaeEval EvaluateSae(SaeModel& model, const torch::Tensor& x, const torch::Tensor& labels,
                    double l1_coefficient, int64_t top) {
  torch::NoGradGuard no_grad;
  constexpr int64_t kChunk = 8192;
  const int64_t n = x.size(0);
  const torch::Tensor norms = model.DecoderNorms();
  torch::Tensor all_features =
      labels.defined() ? torch::empty({n, model.features()}, x.options()) : torch::Tensor();
  double sq_err = 0, sparsity = 0, active = 0;
  torch::Tensor live = torch::zeros({model.features()}, torch::kBool).to(x.device());
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t len = std::min(kChunk, n - start);
    torch::Tensor xb = x.narrow(0, start, len), f;
    torch::Tensor x_hat = model.Forward(xb, &f);
    sq_err += (x_hat - xb).pow(2).sum().item<double>();
    sparsity += (f * norms).sum().item<double>();
    torch::Tensor fired = f > 0;
    active += fired.sum().item<double>();
    live.logical_or_(fired.any(0));
    if (all_features.defined()) all_features.narrow(0, start, len).copy_(f);
  }
  const double rows = static_cast<double>(n);
  const double total_var = (x - x.mean(0, /*keepdim=*/true)).pow(2).sum().item<double>();
  SaeEval e;
  e.mse = sq_err / (rows * static_cast<double>(x.size(1)));
  e.loss = e.mse + l1_coefficient * sparsity / rows;
  e.explained_variance = total_var > 0 ? 1.0 - sq_err / total_var : 0.0;
  e.l0 = active / rows;
  e.live_features = live.sum().item<int64_t>();
  if (all_features.defined()) e.label_purity = LabelPurity(all_features, labels, top);
  return e;
}

}  // namespace lattice::jobs::internal
