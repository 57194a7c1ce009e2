#include "jobs/internal/prepared_data.h"

#include <vector>

#include "jobs/internal/class_weights.h"

namespace lattice::jobs::internal {
namespace {

torch::Tensor FeaturesTensor(const FeatureMatrix& m) {
  // from_blob does not copy; the tensors built from it are only read.
  return torch::from_blob(const_cast<float*>(m.data.data()), {m.rows, m.cols}, torch::kFloat);
}

torch::Tensor LabelsTensor(const std::vector<int64_t>& labels) {
  return torch::from_blob(const_cast<int64_t*>(labels.data()),
                          {static_cast<int64_t>(labels.size())}, torch::kLong);
}

torch::Tensor IndexTensor(const std::vector<int64_t>& idx) {
  return LabelsTensor(idx).clone();
}

// What a part's rows are trained towards: its labels, or for an alignment job its target
// embeddings [n, Dt] (jobs/token_data.h).
torch::Tensor YTensor(const DatasetPart& part) {
  return part.targets.rows > 0 ? FeaturesTensor(part.targets) : LabelsTensor(part.labels);
}

}  // namespace

// Splits (or takes the explicit validation part) and standardizes. The returned tensors
// own their memory unless they alias `data` read-only (explicit validation, no scaling).
StatusOr<PreparedData> Prepare(const LoadedDataset& data, const DatasetConfig& cfg,
                               bool keep_raw) {
  PreparedData p;
  p.num_classes = data.num_classes;
  torch::Tensor x = FeaturesTensor(data.train.features);
  torch::Tensor y = YTensor(data.train);
  if (data.validation) {
    p.x_train = x;
    p.y_train = y;
    p.x_val = FeaturesTensor(data.validation->features);
    p.y_val = YTensor(*data.validation);
  } else {
    LATTICE_ASSIGN_OR_RETURN(SplitIndices split, MakeDatasetSplit(data.train.labels, cfg));
    torch::Tensor ti = IndexTensor(split.train);
    torch::Tensor vi = IndexTensor(split.validation);
    p.x_train = x.index_select(0, ti);
    p.y_train = y.index_select(0, ti);
    p.x_val = x.index_select(0, vi);
    p.y_val = y.index_select(0, vi);
    if (!split.test.empty()) {
      torch::Tensor si = IndexTensor(split.test);
      p.x_test = x.index_select(0, si);
      p.y_test = y.index_select(0, si);
    }
  }
  if (data.test) {
    p.x_test = FeaturesTensor(data.test->features);
    p.y_test = YTensor(*data.test);
  }
  if (keep_raw) {
    p.raw_train = p.x_train;
    p.raw_val = p.x_val;
  }
  if (cfg.standardize) {
    torch::Tensor mean = p.x_train.mean(0);
    torch::Tensor std = p.x_train.std(0, /*unbiased=*/false);
    // Constant features keep their scale (as in scikit-learn's StandardScaler).
    std = torch::where(std < 1e-12, torch::ones_like(std), std);
    p.x_train = (p.x_train - mean) / std;
    p.x_val = (p.x_val - mean) / std;
    if (p.x_test.defined()) p.x_test = (p.x_test - mean) / std;
    p.mean = mean;
    p.std = std;
  }
  p.x_train = p.x_train.contiguous();
  p.x_val = p.x_val.contiguous();
  if (p.x_test.defined()) p.x_test = p.x_test.contiguous();
  return p;
}

// Moves the tensors the loop reads to `device` (no-ops on the CPU). The standardisation
// stays on the CPU: it only goes into the checkpoint.
void MoveTo(PreparedData& p, const torch::Device& device) {
  p.x_train = p.x_train.to(device);
  p.y_train = p.y_train.to(device);
  p.x_val = p.x_val.to(device);
  p.y_val = p.y_val.to(device);
  if (p.x_test.defined()) {
    p.x_test = p.x_test.to(device);
    p.y_test = p.y_test.to(device);
  }
  if (p.class_weights.defined()) p.class_weights = p.class_weights.to(device);
}

// train.class_weights for the training split (undefined tensor: no weights).
StatusOr<torch::Tensor> LossWeights(const ClassWeightsConfig& config, const PreparedData& p) {
  if (config.empty()) return torch::Tensor();
  torch::Tensor counts = torch::bincount(p.y_train, {}, p.num_classes).to(torch::kLong);
  std::vector<int64_t> c(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
  LATTICE_ASSIGN_OR_RETURN(std::vector<double> w, ClassWeights(config, c));
  return torch::tensor(w, torch::kDouble).to(torch::kFloat);
}

}  // namespace lattice::jobs::internal
