#!/usr/bin/python3
"""Plain numpy recomputation of `lattice index compare` for tests/integration/retrieval_test.cc.

Usage: retrieval_reference.py INPUT.json
INPUT: {"labels": [corpus label per item], "groups": [group per label],
        "ks": [1, 3, 5, 10], "indexes": {name: {"queries": [item, ...],
                                                 "hits": [[item, ...], ...]}}}
Judgments come from the labels, not from a qrels file: for query item q, every other item
with q's label has grade 3, every other item of q's label group (and another label) grade 1,
the rest 0; relevant = grade >= 3. Prints {name: {metric: value}} with the metric names of
store/relevance_metrics.h.
"""
import json
import sys

import numpy as np


def metrics(labels, groups, queries, hits, ks):
    labels = np.asarray(labels)
    group_of = np.asarray(groups)[labels]
    depth = max(ks)
    queries = np.asarray(queries)
    grades = np.zeros((len(queries), depth))
    for row, (q, h) in enumerate(zip(queries, hits)):
        h = np.asarray(h[:depth], dtype=np.int64)
        same = labels[h] == labels[q]
        near = (group_of[h] == group_of[q]) & ~same
        grades[row, : len(h)] = np.where(same, 3, np.where(near, 1, 0))
    rel = (grades >= 3).astype(float)
    num_rel = np.array([(labels == labels[q]).sum() - 1 for q in queries], dtype=float)
    num_near = np.array([((group_of == group_of[q]) & (labels != labels[q])).sum()
                         for q in queries])
    discount = 1.0 / np.log2(np.arange(depth) + 2.0)
    ideal = np.zeros((len(queries), depth))
    for row in range(len(queries)):
        g = [3] * int(num_rel[row]) + [1] * int(num_near[row])
        g = g[:depth]
        ideal[row, : len(g)] = g
    out = {}
    for k in ks:
        out["recall@%d" % k] = (rel[:, :k].sum(1) / num_rel).mean()
    for k in ks:
        out["hit@%d" % k] = (rel[:, :k].sum(1) > 0).mean()
    for k in ks:
        out["precision@%d" % k] = (rel[:, :k].sum(1) / k).mean()
    for k in ks:
        dcg = (grades[:, :k] * discount[:k]).sum(1)
        idcg = (ideal[:, :k] * discount[:k]).sum(1)
        out["ndcg@%d" % k] = (dcg / idcg).mean()
    first = np.where(rel.any(1), rel.argmax(1) + 1, np.inf)
    out["mrr@%d" % depth] = (1.0 / first).mean()
    precision_at = np.cumsum(rel, 1) / np.arange(1, depth + 1)
    out["map@%d" % depth] = ((precision_at * rel).sum(1) / num_rel).mean()
    return {name: float(v) for name, v in out.items()}


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    result = {name: metrics(spec["labels"], spec["groups"], run["queries"], run["hits"],
                            spec["ks"])
              for name, run in spec["indexes"].items()}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
