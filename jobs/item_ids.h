// The user's ids of an embed corpus's rows (`corpus.ids: FILE`), one per corpus row before
// `limit` (row i of the file names corpus row i), so that search hits, "more like this"
// items and relevance judgments speak of the user's items rather than of row numbers.
//
// File formats, by extension (gzip-transparent like every data file, and read only under
// the data roots, jobs/data_roots.h):
//   .npy    a 1-D integer array (<i8, <i4 or u1): integer ids
//   .json   a JSON array of strings or integers
//   other   text, one id per line (surrounding blanks trimmed; a final newline is optional):
//           string ids
// Ids are compared by their text (common/item_id.h): 42 and "42" are the same id.
//
// Thread-safety: pure functions (they read files).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/embed_config.h"

namespace lattice::jobs {

// Reads an ids file. Errors (InvalidArgument, naming the file and the line or element):
// "ids.txt: line 4 is empty", "ids.json: element 2: expected a string or an integer, got
// null", an unreadable file, a bad .npy.
StatusOr<std::vector<nlohmann::json>> LoadItemIds(const std::string& path);

// Checks ids read from `path` against a corpus of `rows` rows (before `limit`):
// InvalidArgument "<path>: 9999 ids for 10000 corpus rows" or "<path>: duplicate id
// 'doc-7' (rows 3 and 9)" (the first repeat, rows counted from 0).
Status CheckItemIds(const std::vector<nlohmann::json>& ids, int64_t rows,
                    const std::string& path);

// The ids of `corpus`'s rows after `limit` (empty when corpus.ids is not set): the file
// read (LoadItemIds) and checked against the corpus's rows before limit (CheckItemIds).
// Errors carry the key: "corpus.ids: ids.txt: duplicate id 'doc-7' (rows 3 and 9)".
StatusOr<std::vector<nlohmann::json>> LoadCorpusItemIds(const CorpusConfig& corpus);

}  // namespace lattice::jobs
