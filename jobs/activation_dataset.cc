#include "jobs/activation_dataset.h"

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

namespace lattice::jobs {

std::string EncodeActivations(const ActivationData& data) {
  const FeatureMatrix& f = data.features;
  nlohmann::json header = {{"name", data.name},
                           {"rows", f.rows},
                           {"dim", f.cols},
                           {"labels", !data.labels.empty()}};
  std::string out = std::string(kActivationsFormat) + "\n" + header.dump() + "\n";
  const size_t floats = f.data.size() * sizeof(float);
  const size_t labels = data.labels.size() * sizeof(int64_t);
  const size_t at = out.size();
  out.resize(at + floats + labels);
  std::memcpy(out.data() + at, f.data.data(), floats);
  if (labels > 0) std::memcpy(out.data() + at + floats, data.labels.data(), labels);
  return out;
}

StatusOr<ActivationData> DecodeActivations(const std::string& blob) {
  auto bad = [](const std::string& why) {
    return Status::InvalidArgument("activation dataset: " + why);
  };
  const size_t first = blob.find('\n');
  if (first == std::string::npos || blob.compare(0, first, kActivationsFormat) != 0) {
    return bad(std::string("not a ") + kActivationsFormat + " blob");
  }
  const size_t second = blob.find('\n', first + 1);
  if (second == std::string::npos) return bad("no header line");
  ActivationData d;
  bool has_labels = false;
  try {
    nlohmann::json h = nlohmann::json::parse(blob.substr(first + 1, second - first - 1));
    d.name = h.at("name").get<std::string>();
    d.features.rows = h.at("rows").get<int64_t>();
    d.features.cols = h.at("dim").get<int64_t>();
    has_labels = h.at("labels").get<bool>();
  } catch (const std::exception& e) {
    return bad(std::string("bad header: ") + e.what());
  }
  const int64_t rows = d.features.rows, cols = d.features.cols;
  if (rows < 1 || cols < 1) return bad("empty (" + std::to_string(rows) + " x " +
                                       std::to_string(cols) + ")");
  const size_t floats = static_cast<size_t>(rows * cols) * sizeof(float);
  const size_t labels = has_labels ? static_cast<size_t>(rows) * sizeof(int64_t) : 0;
  if (blob.size() - second - 1 != floats + labels) {
    return bad("size " + std::to_string(blob.size() - second - 1) + " bytes, header says " +
               std::to_string(floats + labels));
  }
  d.features.data.resize(static_cast<size_t>(rows * cols));
  std::memcpy(d.features.data.data(), blob.data() + second + 1, floats);
  for (size_t i = 0; i < d.features.data.size(); ++i) {
    const float v = d.features.data[i];
    if (!std::isfinite(v)) {
      return Status::FailedPrecondition(
          "dataset.activations " + d.name + ": row " + std::to_string(i / cols) + ", column " +
          std::to_string(i % cols) + " is " + (std::isnan(v) ? "NaN" : "Inf"));
    }
  }
  d.features.all_finite = true;
  if (has_labels) {
    d.labels.resize(static_cast<size_t>(rows));
    std::memcpy(d.labels.data(), blob.data() + second + 1 + floats, labels);
  }
  return d;
}

std::vector<int64_t> LabelsFromMetadata(const std::vector<std::string>& metadata) {
  std::vector<int64_t> labels;
  labels.reserve(metadata.size());
  for (const std::string& text : metadata) {
    nlohmann::json m = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!m.is_object() || !m.contains("label") || !m["label"].is_number_integer()) return {};
    labels.push_back(m["label"].get<int64_t>());
  }
  return labels;
}

}  // namespace lattice::jobs
