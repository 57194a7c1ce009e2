#!/usr/bin/python3
"""Graded relevance judgments (TREC qrels) for Fashion-MNIST, derived from the labels.

Usage: label_qrels.py [--queries 200] [--corpus 10000] [-o fmnist.qrels]
Query q (an item id: the corpus row, searched with `--by-item`) judges every other corpus
item: grade 3 when it has q's label, grade 1 when its label is of the same kind
(tops: T-shirt, pullover, coat, shirt; footwear: sandal, sneaker, ankle boot), else
unjudged (grade 0). With `--relevant-at 3` the binary metrics count same-label items.
Plain python3, no numpy.
"""
import argparse
import gzip
import struct

LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
GROUP = [0, 1, 0, 2, 0, 3, 0, 3, 4, 3]  # label -> kind


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--corpus", type=int, default=10000)
    ap.add_argument("-o", "--output", default="fmnist.qrels")
    args = ap.parse_args()
    with gzip.open(LABELS, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        if magic != 2049:
            raise SystemExit("%s: not an idx1 labels file" % LABELS)
        labels = list(f.read(n))[: args.corpus]
    with open(args.output, "w") as out:
        for q in range(args.queries):
            for d, label in enumerate(labels):
                if d == q:
                    continue
                if label == labels[q]:
                    out.write("%d 0 %d 3\n" % (q, d))
                elif GROUP[label] == GROUP[labels[q]]:
                    out.write("%d 0 %d 1\n" % (q, d))
    print("wrote %s: %d queries over %d items" % (args.output, args.queries, len(labels)))


if __name__ == "__main__":
    main()
