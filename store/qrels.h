// Relevance judgments ("qrels"): for each query id, the graded relevance of item ids, as
// IR teams write them. Torch-free, no I/O besides ReadQrelsFile.
//
// Two formats, told apart by the first non-blank character ('{' = JSON):
//   TREC   one judgment per line: "qid iteration docid grade", whitespace-separated;
//          the iteration column is ignored (trec_eval's convention); blank lines and
//          lines starting with '#' are skipped.
//   JSON   {"q1": {"doc7": 3, "doc9": 1}, "q2": {...}}: an object of objects; grades are
//          integers (a number with a fraction is rejected).
// Query and item ids are strings (an index's int64 item ids are matched by their decimal
// text). Grades are integers; 0 and negative grades mean "judged, not relevant".
//
// Errors (InvalidArgument, prefixed with `source`, e.g. the file name):
//   "q.txt: line 7: expected 4 fields (qid iteration docid grade), got 3"
//   "q.txt: line 7: grade 'high' is not an integer"
//   "q.txt: line 9: duplicate judgment of query 'q1', item 'd4' (first at line 3)"
//   "q.json: query 'q1': item 'd4': grade must be an integer, got string"
//   "q.json: malformed JSON: ...", "q.txt: no judgments"
// Thread-safety: pure functions.
#pragma once

#include <map>
#include <string>
#include <unordered_map>

#include "common/status.h"

namespace lattice::store {

struct Qrels {
  // query id -> (item id -> grade). Ordered by query id, so reports are deterministic.
  std::map<std::string, std::unordered_map<std::string, int>> judgments;
  size_t size() const;  // number of (query, item) judgments
};

StatusOr<Qrels> ParseQrels(const std::string& text, const std::string& source);

// Reads `path` and parses it. NotFound / IoError name the path.
StatusOr<Qrels> ReadQrelsFile(const std::string& path);

}  // namespace lattice::store
