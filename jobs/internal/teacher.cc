#include "jobs/internal/teacher.h"

#include <torch/script.h>

#include <vector>

#include "jobs/internal/model.h"

namespace lattice::jobs::internal {
namespace {

constexpr int64_t kChunk = 4096;

// Applies `forward` to `x` in chunks of rows and concatenates the outputs.
template <typename Forward>
torch::Tensor InChunks(const torch::Tensor& x, Forward forward) {
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < x.size(0); start += kChunk) {
    parts.push_back(forward(x.narrow(0, start, std::min(kChunk, x.size(0) - start))));
  }
  return parts.empty() ? torch::empty({0, 0}) : torch::cat(parts, 0);
}

Status CheckClasses(const std::string& where, const torch::Tensor& logits, int64_t rows,
                    int64_t classes) {
  if (logits.dim() != 2 || logits.size(0) != rows) {
    return Status::InvalidArgument(where + ": output shape " + c10::str(logits.sizes()) +
                                   ", expected [" + std::to_string(rows) + ", classes]");
  }
  if (logits.size(1) != classes) {
    return Status::InvalidArgument(where + " gives " + std::to_string(logits.size(1)) +
                                   " classes, the dataset has " + std::to_string(classes));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<TeacherLogits> ComputeTeacherLogits(
    const TeacherConfig& teacher, const torch::Tensor& raw_train, const torch::Tensor& raw_val,
    int64_t classes, std::optional<double> rows_scale, const torch::Device& device,
    const std::function<std::shared_ptr<const std::string>(const std::string&)>& checkpoint,
    std::optional<int64_t> feature_layer) {
  torch::InferenceMode inference;
  TeacherLogits out;
  const int64_t cols = raw_train.size(1);
  if (teacher.type == TeacherConfig::Type::kTrial) {
    const std::string where = "teacher " + teacher.trial;
    std::shared_ptr<const std::string> blob = checkpoint ? checkpoint(teacher.trial) : nullptr;
    if (blob == nullptr) {
      return Status::FailedPrecondition("teacher.trial: no checkpoint of trial " + teacher.trial +
                                        " was given to this worker");
    }
    auto decoded = CheckpointModel::Decode(*blob);
    if (!decoded.ok()) return decoded.status().WithContext(where);
    CheckpointModel model = std::move(decoded).value();
    if (model.header().in_dim != cols) {
      return Status::InvalidArgument(where + ": the model takes " +
                                     std::to_string(model.header().in_dim) +
                                     " features per row, the dataset has " + std::to_string(cols) +
                                     " columns");
    }
    model.To(device);
    const int64_t logits_layer = model.hidden_layers() + 1;
    auto at_layer = [&](int64_t layer) {
      return [&model, layer, rows_scale](const torch::Tensor& x) {
        return model.Forward(x, layer, rows_scale);
      };
    };
    const torch::Tensor train = raw_train.to(device), val = raw_val.to(device);
    out.train = InChunks(train, at_layer(logits_layer));
    out.val = InChunks(val, at_layer(logits_layer));
    if (feature_layer) {
      LATTICE_ASSIGN_OR_RETURN(int64_t layer, ResolveLayer(*feature_layer, model.hidden_layers(),
                                                           "distill.feature_match.teacher_layer"));
      out.features_train = InChunks(train, at_layer(layer));
      out.features_val = InChunks(val, at_layer(layer));
    }
    out.params = model.parameter_count();
    LATTICE_RETURN_IF_ERROR(CheckClasses(where, out.train, raw_train.size(0), classes));
    LATTICE_RETURN_IF_ERROR(CheckClasses(where, out.val, raw_val.size(0), classes));
    return out;
  }
  if (feature_layer) {  // rejected by the config parser
    return Status::InvalidArgument("distill.feature_match: needs a teacher of type trial");
  }
  const std::string where = "teacher " + teacher.path;
  try {
    torch::jit::Module module = torch::jit::load(teacher.path, device);
    module.eval();
    std::vector<int64_t> shape = {0};
    if (teacher.input_shape.empty()) {
      shape.push_back(cols);
    } else {
      shape.insert(shape.end(), teacher.input_shape.begin(), teacher.input_shape.end());
    }
    std::vector<torch::jit::IValue> inputs(1);
    auto forward = [&](const torch::Tensor& x) {
      shape[0] = x.size(0);
      inputs[0] = x.reshape(shape);
      return module.forward(inputs).toTensor().to(torch::kFloat);
    };
    out.train = InChunks(raw_train.to(device), forward);
    out.val = InChunks(raw_val.to(device), forward);
    for (const auto& p : module.parameters()) out.params += p.numel();
  } catch (const c10::Error& e) {
    return Status::InvalidArgument(where + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(where + ": " + e.what());
  }
  LATTICE_RETURN_IF_ERROR(CheckClasses(where, out.train, raw_train.size(0), classes));
  LATTICE_RETURN_IF_ERROR(CheckClasses(where, out.val, raw_val.size(0), classes));
  return out;
}

}  // namespace lattice::jobs::internal
