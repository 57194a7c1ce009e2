#include "store/relevance_metrics.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <unordered_set>

namespace lattice::store {
namespace {

Status CheckOptions(const RelevanceOptions& options) {
  if (options.ks.empty()) return Status::InvalidArgument("k: at least one cutoff is needed");
  for (int k : options.ks) {
    if (k < 1) return Status::InvalidArgument("k: cutoffs must be >= 1, got " + std::to_string(k));
  }
  if (options.relevant_at < 1) {
    return Status::InvalidArgument("relevant_at: must be >= 1, got " +
                                   std::to_string(options.relevant_at));
  }
  return Status::Ok();
}

int Depth(const std::vector<int>& ks) { return *std::max_element(ks.begin(), ks.end()); }

}  // namespace

std::vector<std::string> RelevanceMetricNames(const std::vector<int>& ks) {
  std::vector<std::string> names;
  for (const char* family : {"recall", "hit", "precision", "ndcg"}) {
    for (int k : ks) names.push_back(std::string(family) + "@" + std::to_string(k));
  }
  if (!ks.empty()) {
    const std::string depth = std::to_string(Depth(ks));
    names.push_back("mrr@" + depth);
    names.push_back("map@" + depth);
  }
  return names;
}

StatusOr<std::vector<int>> RelevanceMetricCutoffs(const std::string& name) {
  const std::string valid =
      "recall@k, hit@k, precision@k, ndcg@k, mrr@k or map@k, k an integer in [1, " +
      std::to_string(kMaxRelevanceCutoff) + "]";
  const size_t at = name.find('@');
  const std::string digits = at == std::string::npos ? "" : name.substr(at + 1);
  const bool numeric =
      !digits.empty() && digits.size() <= 4 && digits[0] != '0' &&
      std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  const int k = numeric ? std::stoi(digits) : 0;
  if (k < 1 || k > kMaxRelevanceCutoff) {
    return Status::InvalidArgument("unknown relevance metric \"" + name + "\" (valid: " + valid +
                                   ")");
  }
  const std::vector<std::string> names = RelevanceMetricNames({k});
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    return Status::InvalidArgument("unknown relevance metric \"" + name + "\" (valid: " + valid +
                                   ")");
  }
  return std::vector<int>{k};
}

StatusOr<std::vector<double>> QueryRelevanceMetrics(
    const std::vector<std::string>& items, const std::unordered_map<std::string, int>& judged,
    const RelevanceOptions& options) {
  LATTICE_RETURN_IF_ERROR(CheckOptions(options));
  const int depth = Depth(options.ks);
  std::vector<int> ideal;  // positive grades, descending
  int64_t relevant = 0;
  for (const auto& [item, grade] : judged) {
    if (grade >= options.relevant_at) ++relevant;
    if (grade > 0) ideal.push_back(grade);
  }
  if (relevant == 0) return Status::FailedPrecondition("no relevant item");
  std::sort(ideal.begin(), ideal.end(), std::greater<int>());

  // Per rank i (0-based, < depth): the grade counted (0 for a repeat) and whether rel.
  std::vector<int> gains(static_cast<size_t>(depth), 0);
  std::vector<int> rel(static_cast<size_t>(depth), 0);
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < items.size() && i < static_cast<size_t>(depth); ++i) {
    if (!seen.insert(items[i]).second) continue;
    const auto it = judged.find(items[i]);
    if (it == judged.end()) continue;
    gains[i] = std::max(it->second, 0);
    rel[i] = it->second >= options.relevant_at ? 1 : 0;
  }
  auto rel_in_top = [&](int k) {
    int64_t n = 0;
    for (int i = 0; i < k; ++i) n += rel[static_cast<size_t>(i)];
    return n;
  };
  auto dcg = [](const std::vector<int>& g, int k) {
    double sum = 0;
    for (int i = 0; i < k && i < static_cast<int>(g.size()); ++i) {
      sum += g[static_cast<size_t>(i)] / std::log2(i + 2.0);
    }
    return sum;
  };
  std::vector<double> out;
  const double r_total = static_cast<double>(relevant);
  for (int k : options.ks) out.push_back(static_cast<double>(rel_in_top(k)) / r_total);
  for (int k : options.ks) out.push_back(rel_in_top(k) > 0 ? 1.0 : 0.0);
  for (int k : options.ks) out.push_back(static_cast<double>(rel_in_top(k)) / k);
  for (int k : options.ks) out.push_back(dcg(gains, k) / dcg(ideal, k));
  double rr = 0, ap = 0;
  int64_t found = 0;
  for (int i = 0; i < depth; ++i) {
    if (!rel[static_cast<size_t>(i)]) continue;
    ++found;
    if (rr == 0) rr = 1.0 / (i + 1);
    ap += static_cast<double>(found) / (i + 1);
  }
  out.push_back(rr);
  out.push_back(ap / r_total);
  return out;
}

StatusOr<RelevanceReport> EvaluateRankings(const std::vector<RankedList>& lists,
                                           const Qrels& qrels, const RelevanceOptions& options) {
  LATTICE_RETURN_IF_ERROR(CheckOptions(options));
  RelevanceReport report;
  report.names = RelevanceMetricNames(options.ks);
  report.means.assign(report.names.size(), 0.0);
  std::unordered_set<std::string> queries;
  for (const RankedList& list : lists) {
    if (!queries.insert(list.query).second) {
      return Status::InvalidArgument("query '" + list.query + "' is listed twice");
    }
    const auto judged = qrels.judgments.find(list.query);
    if (judged == qrels.judgments.end()) {
      ++report.without_judgments;
      continue;
    }
    auto values = QueryRelevanceMetrics(list.items, judged->second, options);
    if (!values.ok()) {
      if (values.status().code() != StatusCode::kFailedPrecondition) return values.status();
      ++report.without_relevant;
      continue;
    }
    for (size_t i = 0; i < values->size(); ++i) report.means[i] += (*values)[i];
    ++report.queries;
  }
  if (report.queries > 0) {
    for (double& m : report.means) m /= static_cast<double>(report.queries);
  }
  return report;
}

}  // namespace lattice::store
