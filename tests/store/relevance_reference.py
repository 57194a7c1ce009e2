#!/usr/bin/python3
"""Reference for store/relevance_metrics.h: trec_eval's formulas, written independently.

Usage: relevance_reference.py INPUT.json
INPUT: {"qrels": {qid: {docid: grade}}, "runs": [[qid, [docid, ...]], ...],
        "relevant_at": 3, "ks": [1, 3, 5, 10]}
Prints {"per_query": {qid: {metric: value}}, "means": {metric: value},
        "queries": n, "without_relevant": n, "without_judgments": n}.

As trec_eval (trec_eval.c, m_*.c), per query: the run is cut at depth max(ks); a docid
repeated in the run counts once, at its first rank; rel = grade >= relevant_at.
Unlike trec_eval, queries with no relevant judged item are left out of the means (and
counted), and ties keep the run's order.
"""
import json
import sys

import numpy as np


def query_metrics(run, judged, relevant_at, ks):
    depth = max(ks)
    num_rel = sum(1 for g in judged.values() if g >= relevant_at)
    if num_rel == 0:
        return None
    seen = set()
    rel = np.zeros(depth)
    gain = np.zeros(depth)
    for rank, doc in enumerate(run[:depth]):
        if doc in seen:
            continue
        seen.add(doc)
        grade = judged.get(doc, 0)
        rel[rank] = 1.0 if grade >= relevant_at else 0.0
        gain[rank] = max(grade, 0)
    discount = 1.0 / np.log2(np.arange(depth) + 2.0)
    ideal = np.zeros(max(depth, len(judged)))
    positive = sorted((g for g in judged.values() if g > 0), reverse=True)
    ideal[: len(positive)] = positive
    out = {}
    for k in ks:
        out["recall@%d" % k] = rel[:k].sum() / num_rel
    for k in ks:
        out["hit@%d" % k] = 1.0 if rel[:k].sum() > 0 else 0.0
    for k in ks:
        out["precision@%d" % k] = rel[:k].sum() / k
    for k in ks:
        out["ndcg@%d" % k] = float((gain[:k] * discount[:k]).sum() / (ideal[:k] * discount[:k]).sum())
    ranks = np.nonzero(rel)[0] + 1  # 1-based ranks of the relevant retrieved
    out["mrr@%d" % depth] = 1.0 / ranks[0] if len(ranks) else 0.0
    out["map@%d" % depth] = float(sum((i + 1) / r for i, r in enumerate(ranks)) / num_rel)
    return {name: float(v) for name, v in out.items()}


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    qrels, ks, relevant_at = spec["qrels"], spec["ks"], spec["relevant_at"]
    per_query, without_rel, without_judged = {}, 0, 0
    for qid, run in spec["runs"]:
        if qid not in qrels:
            without_judged += 1
            continue
        m = query_metrics(run, qrels[qid], relevant_at, ks)
        if m is None:
            without_rel += 1
            continue
        per_query[qid] = m
    names = list(next(iter(per_query.values())).keys()) if per_query else []
    means = {n: float(np.mean([m[n] for m in per_query.values()])) for n in names}
    json.dump({"per_query": per_query, "means": means, "queries": len(per_query),
               "without_relevant": without_rel, "without_judgments": without_judged},
              sys.stdout)


if __name__ == "__main__":
    main()
