#include "jobs/internal/projectors.h"

#include <cmath>
#include <utility>

#include "jobs/internal/model.h"

namespace lattice::jobs::internal {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

class LinearProjector : public ProjectorBodyImpl {
 public:
  explicit LinearProjector(const ProjectorShape& s)
      : fc_(register_module("fc", nn::Linear(s.dim, s.target_dim))) {}
  torch::Tensor forward(const torch::Tensor& tokens) override { return fc_(tokens); }

 private:
  nn::Linear fc_;
};

class Mlp2Projector : public ProjectorBodyImpl {
 public:
  explicit Mlp2Projector(const ProjectorShape& s)
      : fc1_(register_module("fc1", nn::Linear(s.dim, s.width))),
        fc2_(register_module("fc2", nn::Linear(s.width, s.target_dim))) {}
  torch::Tensor forward(const torch::Tensor& tokens) override {
    return fc2_(F::gelu(fc1_(tokens)));
  }

 private:
  nn::Linear fc1_, fc2_;
};

// Pre-activation ResNet block on [B, C, H, W].
class ResBlockImpl : public nn::Module {
 public:
  explicit ResBlockImpl(int64_t channels)
      : norm1_(register_module("norm1", nn::GroupNorm(1, channels))),
        conv1_(register_module(
            "conv1", nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)))),
        norm2_(register_module("norm2", nn::GroupNorm(1, channels))),
        conv2_(register_module(
            "conv2", nn::Conv2d(nn::Conv2dOptions(channels, channels, 3).padding(1)))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = conv1_(F::silu(norm1_(x)));
    return x + conv2_(F::silu(norm2_(h)));
  }

 private:
  nn::GroupNorm norm1_;
  nn::Conv2d conv1_;
  nn::GroupNorm norm2_;
  nn::Conv2d conv2_;
};
TORCH_MODULE(ResBlock);

// (side, side) when n is a square, else (1, n).
std::pair<int64_t, int64_t> Grid(int64_t n) {
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  if (side * side == n) return {side, side};
  return {1, n};
}

class CAbstractor : public ProjectorBodyImpl {
 public:
  explicit CAbstractor(const ProjectorShape& s)
      : grid_(Grid(s.tokens)), pooled_(Grid(s.queries)),
        pos_(register_parameter("pos", torch::randn({1, s.tokens, s.dim}) * 0.02)),
        in_(register_module("input", nn::Linear(s.dim, s.width))),
        stage1_(register_module("stage1", nn::Sequential())),
        stage2_(register_module("stage2", nn::Sequential())),
        out1_(register_module("out1", nn::Linear(s.width, s.target_dim))),
        out2_(register_module("out2", nn::Linear(s.target_dim, s.target_dim))) {
    for (int64_t i = 0; i < s.depth; ++i) stage1_->push_back(ResBlock(s.width));
    for (int64_t i = 0; i < s.depth; ++i) stage2_->push_back(ResBlock(s.width));
  }
  torch::Tensor forward(const torch::Tensor& tokens) override {
    const int64_t b = tokens.size(0);
    torch::Tensor h = in_(tokens + pos_);                                  // [B, T, W]
    h = h.transpose(1, 2).reshape({b, h.size(2), grid_.first, grid_.second});  // [B, W, H, W']
    h = stage1_->forward(h);
    h = F::adaptive_avg_pool2d(h, F::AdaptiveAvgPool2dFuncOptions({pooled_.first, pooled_.second}));
    h = stage2_->forward(h);
    h = h.flatten(2).transpose(1, 2);  // [B, M, W]
    return out2_(F::silu(out1_(h)));
  }

 private:
  std::pair<int64_t, int64_t> grid_, pooled_;
  torch::Tensor pos_;
  nn::Linear in_;
  nn::Sequential stage1_, stage2_;
  nn::Linear out1_, out2_;
};

class PerceiverLayerImpl : public nn::Module {
 public:
  PerceiverLayerImpl(int64_t width, int64_t heads)
      : heads_(heads),
        norm_media_(register_module("norm_media", nn::LayerNorm(nn::LayerNormOptions({width})))),
        norm_latents_(
            register_module("norm_latents", nn::LayerNorm(nn::LayerNormOptions({width})))),
        q_(register_module("q", nn::Linear(nn::LinearOptions(width, width).bias(false)))),
        kv_(register_module("kv", nn::Linear(nn::LinearOptions(width, 2 * width).bias(false)))),
        out_(register_module("out", nn::Linear(nn::LinearOptions(width, width).bias(false)))),
        norm_ff_(register_module("norm_ff", nn::LayerNorm(nn::LayerNormOptions({width})))),
        ff1_(register_module("ff1", nn::Linear(nn::LinearOptions(width, 4 * width).bias(false)))),
        ff2_(register_module("ff2", nn::Linear(nn::LinearOptions(4 * width, width).bias(false)))) {}

  // x [B, T, W], latents [B, M, W] -> the new latents.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor latents) {
    const int64_t b = x.size(0), m = latents.size(1), w = latents.size(2), hd = w / heads_;
    torch::Tensor l = norm_latents_(latents);
    torch::Tensor kv_in = torch::cat({norm_media_(x), l}, 1);  // [B, T + M, W]
    auto split = [&](const torch::Tensor& t) {              // [B, n, W] -> [B, heads, n, hd]
      return t.view({b, t.size(1), heads_, hd}).transpose(1, 2);
    };
    torch::Tensor q = split(q_(l)) * (1.0 / std::sqrt(static_cast<double>(hd)));
    std::vector<torch::Tensor> kv = kv_(kv_in).chunk(2, -1);
    torch::Tensor attn = torch::softmax(torch::matmul(q, split(kv[0]).transpose(-2, -1)), -1);
    torch::Tensor o = torch::matmul(attn, split(kv[1])).transpose(1, 2).reshape({b, m, w});
    latents = latents + out_(o);
    return latents + ff2_(F::gelu(ff1_(norm_ff_(latents))));
  }

 private:
  int64_t heads_;
  nn::LayerNorm norm_media_, norm_latents_;
  nn::Linear q_, kv_, out_;
  nn::LayerNorm norm_ff_;
  nn::Linear ff1_, ff2_;
};
TORCH_MODULE(PerceiverLayer);

class Perceiver : public ProjectorBodyImpl {
 public:
  explicit Perceiver(const ProjectorShape& s)
      : in_(register_module("input", nn::Linear(s.dim, s.width))),
        latents_(register_parameter("latents", torch::randn({s.queries, s.width}) * 0.02)),
        layers_(register_module("layers", nn::ModuleList())),
        norm_(register_module("norm", nn::LayerNorm(nn::LayerNormOptions({s.width})))),
        out_(register_module("out", nn::Linear(s.width, s.target_dim))) {
    for (int64_t i = 0; i < s.depth; ++i) layers_->push_back(PerceiverLayer(s.width, s.heads));
  }
  torch::Tensor forward(const torch::Tensor& tokens) override {
    torch::Tensor x = in_(tokens);
    torch::Tensor latents = latents_.unsqueeze(0).expand({x.size(0), -1, -1});
    for (const auto& layer : *layers_) latents = layer->as<PerceiverLayerImpl>()->forward(x, latents);
    return out_(norm_(latents));
  }

 private:
  nn::Linear in_;
  torch::Tensor latents_;
  nn::ModuleList layers_;
  nn::LayerNorm norm_;
  nn::Linear out_;
};

// The body and the SigLIP parameters (named_parameters lists a module's own parameters
// first: logit_scale, logit_bias, then the body's).
class ProjectorNet : public nn::Module {
 public:
  explicit ProjectorNet(const ProjectorShape& shape)
      : body(register_module("projector", MakeProjectorBody(shape))),
        logit_scale(register_parameter("logit_scale", torch::full({1}, std::log(10.0)))),
        logit_bias(register_parameter("logit_bias", torch::full({1}, -10.0))) {}

  std::shared_ptr<ProjectorBodyImpl> body;
  torch::Tensor logit_scale, logit_bias;
};

}  // namespace

std::shared_ptr<ProjectorBodyImpl> MakeProjectorBody(const ProjectorShape& shape) {
  switch (shape.type) {
    case ModelType::kMlp2: return std::make_shared<Mlp2Projector>(shape);
    case ModelType::kCAbstractor: return std::make_shared<CAbstractor>(shape);
    case ModelType::kPerceiver: return std::make_shared<Perceiver>(shape);
    default: return std::make_shared<LinearProjector>(shape);
  }
}

ProjectorModel::ProjectorModel(const ProjectorShape& shape, const torch::Device& device)
    : shape_(shape) {
  auto net = std::make_shared<ProjectorNet>(shape);
  logit_scale_ = net->logit_scale;
  logit_bias_ = net->logit_bias;
  net_ = std::move(net);
  net_->to(device);
}

torch::Tensor ProjectorModel::forward(const torch::Tensor& x) {
  const auto& body = static_cast<ProjectorNet&>(*net_).body;
  return body->forward(x.view({x.size(0), shape_.tokens, shape_.dim}));
}

NamedWeights ProjectorModel::CloneWeights() const { return internal::CloneWeights(*net_); }

void ProjectorModel::LoadWeights(const NamedWeights& weights) {
  internal::LoadWeights(weights, *net_);
}

std::unique_ptr<TrainModel> ProjectorModel::Twin() const {
  std::unique_ptr<ProjectorModel> twin;
  {
    KeepCpuGeneratorState keep;  // building draws initial weights: not from the run's draws
    twin = std::make_unique<ProjectorModel>(shape_, logit_scale_.device());
  }
  twin->CopyWeightsFrom(*this);
  twin->eval();
  return twin;
}

void ProjectorModel::CopyWeightsFrom(const TrainModel& from) {
  const auto* other = dynamic_cast<const ProjectorModel*>(&from);
  LATTICE_CHECK(other != nullptr);
  CopyWeights(*other->net_, *net_);
}

std::string ProjectorModel::Encode(
    const CheckpointHeader& header, const torch::Tensor& input_mean, const torch::Tensor& input_std,
    const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  return EncodeCheckpoint(*net_, header, input_mean, input_std, extra);
}

void ProjectorModel::Decode(const std::string& blob, size_t offset,
                            torch::serialize::InputArchive* state) {
  state->load_from(blob.data() + offset, blob.size() - offset);
  // Loaded into a twin, then copied in place (the parameters alias the flat buffer).
  std::unique_ptr<ProjectorModel> twin;
  {
    KeepCpuGeneratorState keep;
    twin = std::make_unique<ProjectorModel>(shape_, torch::kCPU);
  }
  twin->net_->load(*state);
  CopyWeightsFrom(*twin);
}

StatusOr<std::unique_ptr<ProjectorModel>> MakeProjectorModel(const ModelConfig& m, int64_t tokens,
                                                             int64_t dim, int64_t target_dim,
                                                             const torch::Device& device) {
  LATTICE_ASSIGN_OR_RETURN(ProjectorShape shape, ResolveProjector(m, tokens, dim, target_dim));
  return std::make_unique<ProjectorModel>(shape, device);
}

}  // namespace lattice::jobs::internal
