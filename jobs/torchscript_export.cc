#include "jobs/torchscript_export.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <sstream>

#include "jobs/checkpoint.h"
#include "jobs/internal/model.h"
#include "jobs/internal/torchscript_model.h"
#include "jobs/train_config.h"

namespace lattice::jobs {
namespace {

// "0.weight" -> "l0_weight".
std::string AttributeName(const std::string& name) {
  std::string out = "l" + name;
  for (char& c : out) {
    if (c == '.') c = '_';
  }
  return out;
}

// A TorchScript float literal that round-trips the double.
std::string Literal(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  std::string out = s.str();
  if (out.find_first_of(".eE") == std::string::npos) out += ".0";
  return out;
}

// The start of forward: the trial's input preparation on float32 rows [B, in_dim].
std::string PrepareSource(const DatasetConfig& dataset, bool standardized) {
  std::string src =
      "def forward(self, x):\n"
      "    x = x.to(6).reshape([x.size(0), -1])\n";  // 6: ScalarType Float (float32)
  if (dataset.scale) src += "    x = x * " + Literal(*dataset.scale) + "\n";
  if (standardized) src += "    x = (x - self.input_mean) / self.input_std\n";
  return src;
}

// The forward method's source: one statement per Sequential module.
StatusOr<std::string> ForwardSource(torch::nn::Sequential& model, const DatasetConfig& dataset,
                                    bool standardized) {
  std::string src = PrepareSource(dataset, standardized);
  size_t i = 0;
  for (const auto& child : model->named_children()) {
    const std::string l = "self.l" + std::to_string(i);
    const torch::nn::Module& m = *child.value();
    if (const auto* linear = m.as<torch::nn::Linear>()) {
      (void)linear;
      src += "    x = torch.linear(x, " + l + "_weight, " + l + "_bias)\n";
    } else if (const auto* bn = m.as<torch::nn::BatchNorm1d>()) {
      src += "    x = torch.batch_norm(x, " + l + "_weight, " + l + "_bias, " + l +
             "_running_mean, " + l + "_running_var, False, 0.0, " + Literal(bn->options.eps()) +
             ", False)\n";
    } else if (m.as<torch::nn::ReLU>()) {
      src += "    x = torch.relu(x)\n";
    } else if (m.as<torch::nn::GELU>()) {
      src += "    x = torch.gelu(x)\n";
    } else if (m.as<torch::nn::Tanh>()) {
      src += "    x = torch.tanh(x)\n";
    } else if (m.as<torch::nn::Dropout>()) {
      // eval mode: the identity
    } else {
      return Status::Internal("export: no TorchScript for module " + child.key() + " (" +
                              m.name() + ")");
    }
    ++i;
  }
  return src + "    return x\n";
}

// The user's TorchScript module (model {type: torchscript}): its checkpoint is the trained
// module itself; the export wraps it as the submodule `net` behind the input preparation,
// reshaping each prepared row to the trial's model.input_shape.
Status WrapTorchScript(const std::string& blob, size_t offset, const DatasetConfig& dataset,
                       torch::jit::Module* module, torch::Tensor* mean, torch::Tensor* std,
                       std::string* source) {
  StatusOr<internal::LoadedTorchScript> loaded =
      internal::LoadTorchScriptCheckpoint(blob, offset);
  if (!loaded.ok()) return loaded.status().WithContext("export");
  module->register_module("net", loaded->module);
  *mean = loaded->input_mean;
  *std = loaded->input_std;
  *source = PrepareSource(dataset, mean->defined());
  if (!loaded->input_shape.empty()) {
    std::string shape = "[x.size(0)";
    for (int64_t d : loaded->input_shape) shape += ", " + std::to_string(d);
    *source += "    x = x.reshape(" + shape + "])\n";
  }
  *source += "    return self.net.forward(x)\n";
  return Status::Ok();
}

// The built-in network: rebuilt from the config, its weights and buffers copied in as
// attributes l<i>_<name>, and one forward statement per Sequential module.
Status BuildBuiltIn(const std::string& blob, size_t offset, const CheckpointHeader& header,
                    const JobConfig& config, torch::jit::Module* module, torch::Tensor* mean,
                    torch::Tensor* std, std::string* source) {
  torch::nn::Sequential model = internal::BuildModel(config.model, header.in_dim, header.classes);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(blob.data() + offset, blob.size() - offset);
    model->load(archive);
    if (config.dataset.standardize) {
      archive.read("input.mean", *mean);
      archive.read("input.std", *std);
    }
  } catch (const c10::Error& e) {
    return Status::InvalidArgument(std::string("export: cannot load the checkpoint's weights: ") +
                                   e.what_without_backtrace());
  }
  model->eval();
  for (const auto& p : model->named_parameters()) {
    module->register_parameter(AttributeName(p.key()), p.value().detach(), /*is_buffer=*/false);
  }
  for (const auto& b : model->named_buffers()) {
    module->register_buffer(AttributeName(b.key()), b.value().detach());
  }
  LATTICE_ASSIGN_OR_RETURN(*source, ForwardSource(model, config.dataset, mean->defined()));
  return Status::Ok();
}

StatusOr<std::string> Export(const std::string& blob) {
  size_t offset = 0;
  LATTICE_ASSIGN_OR_RETURN(CheckpointHeader header, ReadCheckpointHeader(blob, &offset));
  if (!header.resume.is_null()) {
    return Status::InvalidArgument("export: a step checkpoint; export a trial's final one");
  }
  auto config = ParseJobConfig(header.config);
  if (!config.ok()) return config.status().WithContext("export: checkpoint config");
  if (config->kind != JobKind::kTrain && config->kind != JobKind::kDistill) {
    return Status::InvalidArgument(std::string("export: the checkpoint is of a ") +
                                   JobKindName(config->kind) + " job, not train or distill");
  }
  torch::jit::Module module("LatticeClassifier");
  torch::Tensor mean, std;
  std::string source;
  if (config->model.type == ModelType::kTorchScript) {
    LATTICE_RETURN_IF_ERROR(
        WrapTorchScript(blob, offset, config->dataset, &module, &mean, &std, &source));
  } else {
    LATTICE_RETURN_IF_ERROR(
        BuildBuiltIn(blob, offset, header, *config, &module, &mean, &std, &source));
  }
  if (mean.defined()) {
    module.register_buffer("input_mean", mean);
    module.register_buffer("input_std", std);
  }
  module.register_attribute("classes", c10::IntType::get(), header.classes);
  module.register_attribute("in_dim", c10::IntType::get(), header.in_dim);
  module.register_attribute("lattice_header", c10::StringType::get(), header.ToJson().dump());
  module.define(source);
  module.eval();
  std::ostringstream out;
  module.save(out);
  return out.str();
}

}  // namespace

StatusOr<std::string> ExportTorchScript(const std::string& checkpoint) {
  try {
    return Export(checkpoint);
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("export: libtorch: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("export: ") + e.what());
  }
}

}  // namespace lattice::jobs
