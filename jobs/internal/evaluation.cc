#include "jobs/internal/evaluation.h"

#include <algorithm>
#include <utility>

namespace lattice::jobs::internal {

namespace F = torch::nn::functional;

StatusOr<EvalResult> Evaluate(DataParallel& dp, TrainModel& model,
                              const torch::Tensor& x, const torch::Tensor& y, int64_t classes,
                              const torch::Tensor& teacher_logits,
                              const FeatureMatch* feature_match,
                              const torch::Tensor& teacher_features) {
  torch::InferenceMode inference;
  model.eval();
  constexpr int64_t kChunk = 8192;
  const int64_t n = x.size(0);
  const std::pair<int64_t, int64_t> rows_of_member = dp.EvalRows(n);
  double loss_sum = 0, feature_sum = 0;
  int64_t correct = 0, agree = 0;
  torch::Tensor confusion = torch::zeros({classes * classes}, torch::kLong).to(x.device());
  for (int64_t start = rows_of_member.first; start < rows_of_member.second; start += kChunk) {
    int64_t len = std::min(kChunk, rows_of_member.second - start);
    torch::Tensor feature;
    torch::Tensor logits = feature_match
                               ? feature_match->Forward(model, x.narrow(0, start, len), &feature)
                               : model.forward(x.narrow(0, start, len));
    if (feature_match) {
      feature_sum += F::mse_loss(feature, teacher_features.narrow(0, start, len),
                                 F::MSELossFuncOptions().reduction(torch::kSum))
                         .item<double>();
    }
    torch::Tensor yb = y.narrow(0, start, len);
    loss_sum += F::cross_entropy(logits, yb, F::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    torch::Tensor predicted = logits.argmax(1);
    correct += predicted.eq(yb).sum().item<int64_t>();
    confusion += torch::bincount(yb * classes + predicted, {}, classes * classes);
    if (teacher_logits.defined()) {
      agree += predicted.eq(teacher_logits.narrow(0, start, len).argmax(1)).sum().item<int64_t>();
    }
  }
  model.train();
  confusion = confusion.cpu();
  // Every sum over the members (counts are exact in double up to 2^53).
  std::vector<double> sums = {loss_sum, feature_sum, static_cast<double>(correct),
                              static_cast<double>(agree)};
  const int64_t* cells = confusion.data_ptr<int64_t>();
  for (int64_t i = 0; i < confusion.numel(); ++i) sums.push_back(static_cast<double>(cells[i]));
  LATTICE_RETURN_IF_ERROR(dp.SumOverMembers(sums.data(), sums.size()));
  const double rows = static_cast<double>(n);
  const double features = feature_match ? rows * teacher_features.size(1) : 1.0;
  EvalResult result{sums[0] / rows, sums[2] / rows, sums[3] / rows, sums[1] / features, {}};
  for (size_t i = 4; i < sums.size(); ++i) result.confusion.push_back(static_cast<int64_t>(sums[i]));
  return result;
}

EvalResult EvaluateLogits(const torch::Tensor& logits, const torch::Tensor& y) {
  torch::InferenceMode inference;
  const double rows = static_cast<double>(y.size(0));
  return {F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>() / rows,
          logits.argmax(1).eq(y).sum().item<double>() / rows, 1.0, 0.0, {}};
}

}  // namespace lattice::jobs::internal
