#include "jobs/internal/model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

#include "jobs/internal/torchscript_model.h"

namespace lattice::jobs::internal {
namespace {

constexpr char kMeanKey[] = "input.mean";
constexpr char kStdKey[] = "input.std";

// Number of Sequential modules of each hidden block of BuildModel.
size_t ModulesPerBlock(const ModelConfig& m) {
  return 2 + (m.batchnorm ? 1 : 0) + (m.dropout > 0 ? 1 : 0);
}

}  // namespace

torch::nn::Sequential BuildModel(const ModelConfig& m, int64_t in, int64_t out) {
  torch::nn::Sequential seq;
  if (m.type == ModelType::kMlp) {
    for (int64_t width : m.hidden) {
      seq->push_back(torch::nn::Linear(in, width));
      if (m.batchnorm) seq->push_back(torch::nn::BatchNorm1d(width));
      switch (m.activation) {
        case Activation::kRelu: seq->push_back(torch::nn::ReLU()); break;
        case Activation::kGelu: seq->push_back(torch::nn::GELU()); break;
        case Activation::kTanh: seq->push_back(torch::nn::Tanh()); break;
      }
      if (m.dropout > 0) seq->push_back(torch::nn::Dropout(m.dropout));
      in = width;
    }
  }
  seq->push_back(torch::nn::Linear(in, out));
  return seq;
}

std::vector<size_t> LayerEnds(const ModelConfig& m) {
  std::vector<size_t> ends;
  const size_t hidden = static_cast<size_t>(m.HiddenLayers());
  for (size_t l = 0; l <= hidden; ++l) ends.push_back(l * ModulesPerBlock(m));
  ends.push_back(hidden * ModulesPerBlock(m) + 1);  // + the output Linear
  return ends;
}

int64_t LayerWidth(const ModelConfig& m, int64_t layer, int64_t in, int64_t out) {
  if (layer == 0) return in;
  if (layer > m.HiddenLayers()) return out;
  return m.hidden.at(static_cast<size_t>(layer - 1));
}

KeepCpuGeneratorState::KeepCpuGeneratorState() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  state_ = gen.get_state();
}

KeepCpuGeneratorState::~KeepCpuGeneratorState() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state_);
}

void CopyWeights(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src = from.parameters(), dst = to.parameters();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
  auto src_buffers = from.buffers(), dst_buffers = to.buffers();
  for (size_t i = 0; i < dst_buffers.size(); ++i) dst_buffers[i].copy_(src_buffers[i]);
}

NamedWeights CloneWeights(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  NamedWeights out;
  for (const auto& p : model.named_parameters()) out.emplace_back(p.key(), p.value().clone());
  for (const auto& b : model.named_buffers()) out.emplace_back(b.key(), b.value().clone());
  return out;
}

void LoadWeights(const NamedWeights& weights, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  auto load = [&](const std::string& name, torch::Tensor& t) {
    LATTICE_CHECK(i < weights.size() && weights[i].first == name);
    t.copy_(weights[i++].second);
  };
  for (auto& p : to.named_parameters()) load(p.key(), p.value());
  for (auto& b : to.named_buffers()) load(b.key(), b.value());
  LATTICE_CHECK(i == weights.size());
}

std::string EncodeCheckpoint(
    torch::nn::Module& model, const CheckpointHeader& header, const torch::Tensor& input_mean,
    const torch::Tensor& input_std,
    const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  torch::serialize::OutputArchive archive;
  model.save(archive);
  if (input_mean.defined()) {
    archive.write(kMeanKey, input_mean.contiguous());
    archive.write(kStdKey, input_std.contiguous());
  }
  if (extra) extra(archive);
  // Appended to one string reserved up front: an ostringstream would grow by reallocation
  // and then copy everything once more in str() (a 70 MB step checkpoint: ~200 ms -> ~65 ms,
  // bench/checkpoint_bench.cc). The reserve covers weights, two optimizer moments and slack.
  int64_t tensor_bytes = 0;
  for (const auto& t : model.parameters()) tensor_bytes += t.numel() * t.element_size();
  for (const auto& t : model.buffers()) tensor_bytes += t.numel() * t.element_size();
  std::string out = header.ToJson().dump();
  out.reserve(out.size() + 1 + static_cast<size_t>(3 * tensor_bytes) + (size_t{1} << 20));
  out.push_back('\n');
  archive.save_to([&out](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
    return size;
  });
  return out;
}

StatusOr<CheckpointModel> CheckpointModel::Decode(const std::string& blob) {
  size_t offset = 0;
  CheckpointModel m;
  LATTICE_ASSIGN_OR_RETURN(m.header_, ReadCheckpointHeader(blob, &offset));
  auto config = ParseJobConfig(m.header_.config);
  if (!config.ok()) return config.status().WithContext("checkpoint: config");
  if (config->kind != JobKind::kTrain && config->kind != JobKind::kDistill) {
    return Status::InvalidArgument(std::string("checkpoint: config is of kind ") +
                                   JobKindName(config->kind) + ", not train or distill");
  }
  if (config->alignment) {  // a projector (jobs/internal/projectors.h) is no classifier
    return Status::InvalidArgument(
        "checkpoint: the trial trained a projector (alignment: siglip); it has no layers to "
        "embed with or logits to distil from");
  }
  const ModelConfig& mc = config->model;
  m.scale_ = config->dataset.scale;
  m.layer_ends_ = LayerEnds(mc);
  if (mc.type == ModelType::kTorchScript) {
    LATTICE_ASSIGN_OR_RETURN(LoadedTorchScript loaded, LoadTorchScriptCheckpoint(blob, offset));
    m.script_ = std::make_shared<torch::jit::Module>(std::move(loaded.module));
    m.input_shape_ = std::move(loaded.input_shape);
    m.mean_ = loaded.input_mean;
    m.std_ = loaded.input_std;
    if (m.mean_.defined() && m.mean_.numel() != m.header_.in_dim) {
      return Status::InvalidArgument("checkpoint: standardisation has " +
                                     std::to_string(m.mean_.numel()) + " values for in_dim " +
                                     std::to_string(m.header_.in_dim));
    }
    return m;
  }
  m.model_ = BuildModel(mc, m.header_.in_dim, m.header_.classes);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(blob.data() + offset, blob.size() - offset);
    m.model_->load(archive);
    if (config->dataset.standardize) {
      archive.read(kMeanKey, m.mean_);
      archive.read(kStdKey, m.std_);
      if (m.mean_.numel() != m.header_.in_dim || m.std_.numel() != m.header_.in_dim) {
        return Status::InvalidArgument("checkpoint: standardisation has " +
                                       std::to_string(m.mean_.numel()) + " values for in_dim " +
                                       std::to_string(m.header_.in_dim));
      }
    }
  } catch (const c10::Error& e) {
    return Status::InvalidArgument(std::string("checkpoint: cannot load the weights: ") +
                                   e.what_without_backtrace());
  }
  m.model_->eval();
  return m;
}

int64_t CheckpointModel::parameter_count() const {
  int64_t n = 0;
  if (script_) {
    for (const auto& p : script_->parameters()) n += p.numel();
    return n;
  }
  for (const auto& p : model_->parameters()) n += p.numel();
  return n;
}

void CheckpointModel::To(const torch::Device& device) {
  if (device == device_) return;
  if (script_) {
    script_->to(device);
  } else {
    model_->to(device);
  }
  if (mean_.defined()) mean_ = mean_.to(device);
  if (std_.defined()) std_ = std_.to(device);
  device_ = device;
}

torch::Tensor CheckpointModel::Forward(const torch::Tensor& x, int64_t layer,
                                       std::optional<double> input_scale) {
  // The same operations as training (scale, then (h - mean) / std: bit-identical values),
  // in place on one temporary.
  torch::Tensor h = x;
  std::optional<double> scale = scale_;
  if (input_scale && scale_ == input_scale) {
    scale.reset();  // already scaled exactly as in training
  } else if (input_scale) {
    scale = scale_.value_or(1.0) / *input_scale;
  }
  if (scale) h = h * *scale;
  if (mean_.defined()) h = (scale ? h.sub_(mean_) : h - mean_).div_(std_);
  const size_t end = layer_ends_.at(static_cast<size_t>(layer));
  if (script_) {
    if (end == 0) return h;
    if (!input_shape_.empty()) {
      std::vector<int64_t> shape = {h.size(0)};
      shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
      h = h.reshape(shape);
    }
    NoGraphOptimization no_optimization;  // the same ops as in training
    return script_->forward({h}).toTensor();
  }
  size_t i = 0;
  for (auto it = model_->begin(); it != model_->end() && i < end; ++it, ++i) {
    h = it->forward(h);
  }
  return h;
}

}  // namespace lattice::jobs::internal
