#include "jobs/internal/feature_match.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/status.h"
#include "jobs/checkpoint.h"

namespace lattice::jobs::internal {

FeatureMatch::FeatureMatch(const FeatureMatchConfig& config, const ModelConfig& model, int64_t in,
                           int64_t classes, int64_t teacher_width, uint64_t seed,
                           const torch::Device& device)
    : weight_(config.weight) {
  const StatusOr<int64_t> layer = ResolveLayer(config.student_layer, model.HiddenLayers(),
                                               "distill.feature_match.student_layer");
  LATTICE_CHECK(layer.ok() && *layer > 0);
  end_ = LayerEnds(model).at(static_cast<size_t>(*layer));
  const int64_t width = LayerWidth(model, *layer, in, classes);
  if (width == teacher_width) return;
  {
    KeepCpuGeneratorState keep;  // Linear's constructor draws from the global generator
    map_ = torch::nn::Linear(width, teacher_width);
  }
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(width));
  map_->weight.uniform_(-bound, bound, gen);
  map_->bias.uniform_(-bound, bound, gen);
  map_->to(device);
}

torch::Tensor FeatureMatch::Forward(TrainModel& model, const torch::Tensor& x,
                                    torch::Tensor* feature) const {
  torch::nn::Sequential* student = model.sequential();
  torch::Tensor h = x;
  size_t i = 0;
  if (student == nullptr) {
    h = model.forward(x);
    i = end_;  // a TorchScript student: the logits
  } else {
    for (auto it = (*student)->begin(); it != (*student)->end(); ++it, ++i) {
      if (i == end_) *feature = h;
      h = it->forward(h);
    }
  }
  if (i == end_) *feature = h;  // the logits
  if (map_) *feature = torch::nn::functional::linear(*feature, map_->weight, map_->bias);
  return h;
}

torch::Tensor FeatureMatch::Loss(const torch::Tensor& feature, const torch::Tensor& teacher) const {
  return weight_ * torch::nn::functional::mse_loss(feature, teacher);
}

std::vector<torch::Tensor> FeatureMatch::parameters() const {
  if (!map_) return {};
  return map_->parameters();
}

NamedWeights FeatureMatch::CloneMap() const {
  if (!map_) return {};
  return CloneWeights(*map_);
}

void FeatureMatch::LoadMap(const NamedWeights& weights) {
  if (map_) LoadWeights(weights, *map_);
}

}  // namespace lattice::jobs::internal
