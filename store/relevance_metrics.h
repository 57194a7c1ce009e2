// Retrieval quality against relevance judgments (store/qrels.h), with trec_eval's
// definitions. (store/retrieval_metrics.h is the other kind: ANN results against exact
// nearest neighbours.) Torch-free.
//
// Inputs: per query a ranked list of item ids, best first (as the index returned them;
// rank = position, 1-based; equal distances keep the index's order — trec_eval would
// instead re-sort ties by docid). Only the first D = max(ks) items are read. An item that
// appears again lower in the same list counts at its first position only (later copies
// are not relevant and gain nothing). Unjudged items are not relevant (grade 0).
//
// Per query q, with rel(d) = grade(q, d) >= relevant_at, R = number of judged items of q
// with rel, and r_i = 1 when the item at rank i is rel:
//   recall@k     = Σ_{i<=k} r_i / R
//   hit@k        = 1 if Σ_{i<=k} r_i > 0 else 0           (trec_eval "success_k")
//   precision@k  = Σ_{i<=k} r_i / k                        (k even if fewer were returned)
//   ndcg@k       = DCG@k / IDCG@k, DCG@k = Σ_{i<=k} max(grade_i, 0) / log2(i + 1), IDCG@k
//                  the same over q's judged grades sorted descending (graded; trec_eval
//                  "ndcg_cut_k", gain = grade; relevant_at does not apply)
//   mrr@D        = 1 / (rank of the first rel item within D), 0 if none ("recip_rank")
//   map@D        = Σ_{i<=D, r_i} precision@i / R          ("map" of the run cut at D)
// Reported values are means over the evaluated queries. Queries with no relevant item
// (R = 0: nothing judged at or above relevant_at) are left out of every mean — every
// metric above is undefined or trivially 0 for them — and counted in
// `without_relevant`; a ranked list whose query has no judgments at all is left out and
// counted in `without_judgments`. (trec_eval averages such queries in as 0 for recall,
// MAP and NDCG: multiply by queries / (queries + without_relevant) to compare.)
//
// Errors (InvalidArgument): empty ks or k < 1, relevant_at < 1, a query listed twice.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "store/qrels.h"

namespace lattice::store {

struct RankedList {
  std::string query;               // query id, as in the qrels
  std::vector<std::string> items;  // retrieved item ids, best first
};

struct RelevanceOptions {
  // A grade at or above this counts as relevant for the binary metrics. Default: 1.
  int relevant_at = 1;
  // Cutoffs. Default: {1, 3, 5, 10}.
  std::vector<int> ks = {1, 3, 5, 10};
};

// Metric names in report order: recall@k..., hit@k..., precision@k..., ndcg@k... (each in
// the order of ks), then mrr@D and map@D (D = max(ks)).
std::vector<std::string> RelevanceMetricNames(const std::vector<int>& ks);

// The cutoffs a single metric name needs: {k} for "recall@k", "hit@k", "precision@k",
// "ndcg@k", "mrr@k" and "map@k" (k in [1, kMaxRelevanceCutoff]), so that `name` is one of
// RelevanceMetricNames(result). InvalidArgument listing the valid forms otherwise.
inline constexpr int kMaxRelevanceCutoff = 1000;
StatusOr<std::vector<int>> RelevanceMetricCutoffs(const std::string& name);

// The metrics of one query (in RelevanceMetricNames order), given its judgments (item ->
// grade). FailedPrecondition when no judged item reaches relevant_at.
StatusOr<std::vector<double>> QueryRelevanceMetrics(
    const std::vector<std::string>& items, const std::unordered_map<std::string, int>& judged,
    const RelevanceOptions& options);

struct RelevanceReport {
  std::vector<std::string> names;  // RelevanceMetricNames(ks)
  std::vector<double> means;       // one per name
  int64_t queries = 0;             // ranked lists averaged
  int64_t without_relevant = 0;    // left out: judged, but nothing at or above relevant_at
  int64_t without_judgments = 0;   // left out: the query has no judgments
};

StatusOr<RelevanceReport> EvaluateRankings(const std::vector<RankedList>& lists,
                                           const Qrels& qrels, const RelevanceOptions& options);

}  // namespace lattice::store
