// Confusion matrix and per-class precision / recall / F1 (torch-free; internal to
// lattice_jobs_config).
//
// The confusion matrix of k classes is k * k counts, row-major: confusion[t * k + p] rows
// of true class t predicted as p. Per class c: precision = C[c][c] / (predicted c), recall
// = C[c][c] / (true c), F1 their harmonic mean; 0 where a denominator is 0 (scikit-learn's
// zero_division=0). Macro F1 averages F1 over the classes that occur as a true or a
// predicted label (scikit-learn's f1_score(average="macro")).
//
// AddReport writes a report into a result's metrics under `prefix` ("val", "test"):
//   <p>_accuracy, <p>_f1 (macro), <p>_precision_<c>, <p>_recall_<c>, <p>_f1_<c>,
//   <p>_support_<c> and <p>_confusion_<t>_<p> for every class pair, for at most
//   kMaxReportedClasses classes (beyond that only accuracy and macro F1).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lattice::jobs::internal {

inline constexpr int64_t kMaxReportedClasses = 50;

struct ClassificationReport {
  int64_t classes = 0;
  std::vector<int64_t> confusion;  // classes * classes, [true * classes + predicted]
  std::vector<double> precision, recall, f1;
  std::vector<int64_t> support;  // rows of each true class
  double macro_f1 = 0;
  double accuracy = 0;
};

// `confusion` must have classes * classes entries.
ClassificationReport MakeReport(std::vector<int64_t> confusion, int64_t classes);

void AddReport(const ClassificationReport& report, const std::string& prefix,
               std::map<std::string, double>* metrics);

}  // namespace lattice::jobs::internal
