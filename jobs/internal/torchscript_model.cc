#include "jobs/internal/torchscript_model.h"

#include <torch/csrc/jit/python/update_graph_executor_opt.h>

#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/data_roots.h"

namespace lattice::jobs::internal {
namespace {

constexpr char kInfoFormat[] = "lattice-torchscript/1";

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<float> ToFloats(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

template <typename List>
std::vector<std::pair<std::string, torch::Tensor>> Named(const List& list) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& e : list) out.emplace_back(e.name, e.value);
  return out;
}

// Copies every parameter and buffer of `from` into `to` in place, in order; the names must
// agree (the same module type). Throws std::runtime_error naming the first difference.
void CopyModuleWeights(const torch::jit::Module& from, torch::jit::Module& to) {
  torch::NoGradGuard no_grad;
  auto copy = [](const auto& src, const auto& dst, const std::string& what) {
    for (size_t i = 0; i < dst.size(); ++i) {
      if (i >= src.size() || src[i].first != dst[i].first) {
        throw std::runtime_error("the checkpoint's module has no " + what + " " + dst[i].first +
                                 " at its place (a different module)");
      }
      dst[i].second.copy_(src[i].second);
    }
    if (src.size() > dst.size()) {
      throw std::runtime_error("the checkpoint's module has an extra " + what + " " +
                               src[dst.size()].first);
    }
  };
  copy(Named(from.named_parameters()), Named(to.named_parameters()), "parameter");
  copy(Named(from.named_buffers()), Named(to.named_buffers()), "buffer");
}

}  // namespace

NoGraphOptimization::NoGraphOptimization() : previous_(torch::jit::getGraphExecutorOptimize()) {
  torch::jit::setGraphExecutorOptimize(false);
}

NoGraphOptimization::~NoGraphOptimization() { torch::jit::setGraphExecutorOptimize(previous_); }

TorchScriptModel::TorchScriptModel(torch::jit::Module module, std::vector<int64_t> input_shape)
    : module_(std::move(module)), input_shape_(std::move(input_shape)) {
  for (const auto& b : module_.named_buffers()) {
    const std::string& name = b.name;
    const std::string suffix = "running_mean";
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      needs_two_rows_ = true;
    }
  }
}

StatusOr<std::unique_ptr<TorchScriptModel>> TorchScriptModel::Load(const ModelConfig& m,
                                                                   int64_t classes,
                                                                   const torch::Tensor& probe,
                                                                   const torch::Device& device) {
  LATTICE_RETURN_IF_ERROR(CheckDataPath(m.path).WithContext("model.path"));
  const std::string where = "model.path: " + m.path;
  const int64_t cols = probe.size(1);
  if (!m.input_shape.empty()) {
    int64_t values = 1;
    for (int64_t d : m.input_shape) values *= d;
    if (values != cols) {
      return Status::InvalidArgument("model.input_shape: " + ShapeText(m.input_shape) + " is " +
                                     std::to_string(values) + " values per row, the dataset has " +
                                     std::to_string(cols) + " columns");
    }
  }
  std::unique_ptr<TorchScriptModel> model;
  try {
    model.reset(new TorchScriptModel(torch::jit::load(m.path, device), m.input_shape));
  } catch (const std::exception& e) {
    const c10::Error* c10 = dynamic_cast<const c10::Error*>(&e);
    return Status::InvalidArgument(
        where + ": cannot load TorchScript module (save one with "
                "torch.jit.script(model).save(path)): " +
        (c10 ? c10->what_without_backtrace() : e.what()));
  }
  int64_t trainable = 0;
  for (const auto& p : model->module_.named_parameters()) {
    if (!p.value.requires_grad()) continue;
    if (p.value.scalar_type() != torch::kFloat) {
      return Status::InvalidArgument(where + ": parameter " + p.name + " is " +
                                     std::string(c10::toString(p.value.scalar_type())) +
                                     ", expected Float (float32)");
    }
    ++trainable;
  }
  if (trainable == 0) {
    return Status::InvalidArgument(
        where + ": the module has no trainable parameters (none, or all with requires_grad False)");
  }
  std::vector<int64_t> in_shape = {probe.size(0)};
  if (m.input_shape.empty()) {
    in_shape.push_back(cols);
  } else {
    in_shape.insert(in_shape.end(), m.input_shape.begin(), m.input_shape.end());
  }
  torch::Tensor out;
  {
    // Eval mode and no autograd: no dropout draw, no batchnorm statistics update.
    KeepCpuGeneratorState keep;
    torch::NoGradGuard no_grad;
    model->eval();
    try {
      out = model->forward(probe);
    } catch (const std::exception& e) {
      const c10::Error* c10 = dynamic_cast<const c10::Error*>(&e);
      return Status::InvalidArgument(where + ": forward on an input of shape " +
                                     ShapeText(in_shape) + " fails: " +
                                     (c10 ? c10->what_without_backtrace() : e.what()));
    }
  }
  const std::vector<int64_t> expected = {probe.size(0), classes};
  if (out.dim() != 2 || out.size(0) != probe.size(0) || out.size(1) != classes ||
      !out.is_floating_point()) {
    return Status::InvalidArgument(
        where + ": forward on an input of shape " + ShapeText(in_shape) + " gives " +
        std::string(c10::toString(out.scalar_type())) + " " + ShapeText(out.sizes().vec()) +
        ", expected floats " + ShapeText(expected) + " (the logits of " +
        std::to_string(classes) + " classes)");
  }
  model->train();
  return model;
}

torch::Tensor TorchScriptModel::Shape(const torch::Tensor& x) const {
  if (input_shape_.empty()) return x;
  std::vector<int64_t> shape = {x.size(0)};
  shape.insert(shape.end(), input_shape_.begin(), input_shape_.end());
  return x.reshape(shape);
}

torch::Tensor TorchScriptModel::forward(const torch::Tensor& x) {
  NoGraphOptimization no_optimization;
  std::vector<torch::jit::IValue> inputs = {Shape(x)};
  torch::jit::IValue out = module_.forward(std::move(inputs));
  if (!out.isTensor()) {
    throw std::runtime_error("forward returned " + out.tagKind() + ", expected a Tensor");
  }
  return out.toTensor();
}

std::vector<torch::Tensor> TorchScriptModel::parameters() const {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& p : module_.parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

std::vector<torch::Tensor> TorchScriptModel::buffers() const {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& b : module_.buffers()) out.push_back(b);
  return out;
}

NamedWeights TorchScriptModel::CloneWeights() const {
  torch::NoGradGuard no_grad;
  NamedWeights out;
  for (const auto& p : module_.named_parameters()) out.emplace_back(p.name, p.value.clone());
  for (const auto& b : module_.named_buffers()) out.emplace_back(b.name, b.value.clone());
  return out;
}

void TorchScriptModel::LoadWeights(const NamedWeights& weights) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  auto load = [&](const std::string& name, const torch::Tensor& t) {
    LATTICE_CHECK(i < weights.size() && weights[i].first == name);
    t.copy_(weights[i++].second);
  };
  for (const auto& p : module_.named_parameters()) load(p.name, p.value);
  for (const auto& b : module_.named_buffers()) load(b.name, b.value);
  LATTICE_CHECK(i == weights.size());
}

std::unique_ptr<TrainModel> TorchScriptModel::Twin() const {
  // Through save + load, not Module::deepcopy: deepcopy memoises tensors by storage, and the
  // trainer's parameters all share the flat buffer's, so every copy would be the first one.
  std::stringstream bytes;
  module_.save(bytes);
  torch::jit::Module copy = torch::jit::load(bytes, (*module_.parameters().begin()).device());
  // Saved as the original is (a downloaded step checkpoint trains on in Python).
  auto src = module_.parameters();
  auto dst = copy.parameters();
  auto s = src.begin();
  for (auto d = dst.begin(); d != dst.end(); ++d, ++s) (*d).requires_grad_((*s).requires_grad());
  std::unique_ptr<TorchScriptModel> twin(new TorchScriptModel(std::move(copy), input_shape_));
  twin->eval();
  return twin;
}

void TorchScriptModel::CopyWeightsFrom(const TrainModel& from) {
  const auto* other = dynamic_cast<const TorchScriptModel*>(&from);
  LATTICE_CHECK(other != nullptr);
  CopyModuleWeights(other->module_, module_);
}

std::string TorchScriptModel::Encode(
    const CheckpointHeader& header, const torch::Tensor& input_mean,
    const torch::Tensor& input_std,
    const std::function<void(torch::serialize::OutputArchive&)>& extra) {
  nlohmann::json info = {{"format", kInfoFormat}, {"input_shape", input_shape_}};
  if (input_mean.defined()) {
    info["input_mean"] = ToFloats(input_mean);
    info["input_std"] = ToFloats(input_std);
  }
  torch::jit::ExtraFilesMap files = {{kTorchScriptInfoFile, info.dump()}};
  if (extra) {
    torch::serialize::OutputArchive archive;
    extra(archive);
    std::string state;
    archive.save_to([&state](const void* data, size_t size) {
      state.append(static_cast<const char*>(data), size);
      return size;
    });
    files[kTorchScriptStateFile] = std::move(state);
  }
  const bool training = module_.is_training();
  module_.eval();  // Python gets the module ready for inference
  std::ostringstream out;
  out << header.ToJson().dump() << '\n';
  module_.save(out, files);
  if (training) module_.train(true);
  return std::move(out).str();
}

void TorchScriptModel::Decode(const std::string& blob, size_t offset,
                              torch::serialize::InputArchive* state) {
  std::istringstream in(blob.substr(offset));
  torch::jit::ExtraFilesMap files = {{kTorchScriptStateFile, ""}};
  torch::jit::Module saved = torch::jit::load(in, torch::kCPU, files);
  CopyModuleWeights(saved, module_);
  const std::string& bytes = files[kTorchScriptStateFile];
  if (bytes.empty()) throw std::runtime_error("the checkpoint has no trainer state");
  state->load_from(bytes.data(), bytes.size());
}

StatusOr<LoadedTorchScript> LoadTorchScriptCheckpoint(const std::string& blob, size_t offset) {
  LoadedTorchScript out;
  try {
    std::istringstream in(blob.substr(offset));
    torch::jit::ExtraFilesMap files = {{kTorchScriptInfoFile, ""}};
    out.module = torch::jit::load(in, torch::kCPU, files);
    out.module.eval();
    const nlohmann::json info = nlohmann::json::parse(files[kTorchScriptInfoFile]);
    if (info.value("format", "") != kInfoFormat) {
      return Status::InvalidArgument(std::string("checkpoint: the module has no ") +
                                     kTorchScriptInfoFile + " of format " + kInfoFormat);
    }
    out.input_shape = info.at("input_shape").get<std::vector<int64_t>>();
    if (info.contains("input_mean")) {
      out.input_mean = torch::tensor(info.at("input_mean").get<std::vector<float>>());
      out.input_std = torch::tensor(info.at("input_std").get<std::vector<float>>());
    }
  } catch (const c10::Error& e) {
    return Status::InvalidArgument(std::string("checkpoint: cannot load the TorchScript module: ") +
                                   e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("checkpoint: cannot load the TorchScript module: ") +
                                   e.what());
  }
  return out;
}

}  // namespace lattice::jobs::internal
