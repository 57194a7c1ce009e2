#include "jobs/internal/classification_metrics.h"

namespace lattice::jobs::internal {

ClassificationReport MakeReport(std::vector<int64_t> confusion, int64_t classes) {
  ClassificationReport r;
  r.classes = classes;
  r.confusion = std::move(confusion);
  const size_t k = static_cast<size_t>(classes);
  std::vector<int64_t> predicted(k, 0);
  r.support.assign(k, 0);
  int64_t total = 0, correct = 0;
  for (size_t t = 0; t < k; ++t) {
    for (size_t p = 0; p < k; ++p) {
      const int64_t n = r.confusion[t * k + p];
      r.support[t] += n;
      predicted[p] += n;
      total += n;
      if (t == p) correct += n;
    }
  }
  double f1_sum = 0;
  int64_t labels = 0;
  for (size_t c = 0; c < k; ++c) {
    const double tp = static_cast<double>(r.confusion[c * k + c]);
    const double precision = predicted[c] > 0 ? tp / static_cast<double>(predicted[c]) : 0.0;
    const double recall = r.support[c] > 0 ? tp / static_cast<double>(r.support[c]) : 0.0;
    const double f1 =
        precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
    r.precision.push_back(precision);
    r.recall.push_back(recall);
    r.f1.push_back(f1);
    if (predicted[c] > 0 || r.support[c] > 0) {
      f1_sum += f1;
      ++labels;
    }
  }
  r.macro_f1 = labels > 0 ? f1_sum / static_cast<double>(labels) : 0.0;
  r.accuracy = total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
  return r;
}

void AddReport(const ClassificationReport& r, const std::string& prefix,
               std::map<std::string, double>* metrics) {
  (*metrics)[prefix + "_accuracy"] = r.accuracy;
  (*metrics)[prefix + "_f1"] = r.macro_f1;
  if (r.classes > kMaxReportedClasses) return;
  const size_t k = static_cast<size_t>(r.classes);
  for (size_t c = 0; c < k; ++c) {
    const std::string s = std::to_string(c);
    (*metrics)[prefix + "_precision_" + s] = r.precision[c];
    (*metrics)[prefix + "_recall_" + s] = r.recall[c];
    (*metrics)[prefix + "_f1_" + s] = r.f1[c];
    (*metrics)[prefix + "_support_" + s] = static_cast<double>(r.support[c]);
    for (size_t p = 0; p < k; ++p) {
      (*metrics)[prefix + "_confusion_" + s + "_" + std::to_string(p)] =
          static_cast<double>(r.confusion[c * k + p]);
    }
  }
}

}  // namespace lattice::jobs::internal
