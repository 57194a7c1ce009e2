// Fuzz target: the index search-request parsers (index/search_request.h), JSON (the
// hand-written fast scanner and the SAX fallback) and binary (raw float32 rows).
//
// Input: byte 0 picks the form and the limits, byte 1 the dimension (1..8), the rest is
//   JSON form (bit 0 clear):   the request body;
//   binary form (bit 0 set):   the query string ("k=3&ef_search=8") up to the first '\n',
//                              then the body (raw little-endian float32 rows).
// Bit 1 of byte 0 selects small limits (max_k 5, max_batch 3, ...) so that every limit
// is reachable with short inputs; otherwise the server's defaults apply.
// Checks, besides ASan / UBSan, on every accepted request:
//   * the counts agree (nq >= 1 rows of dim floats, or nq items) and every limit holds;
//   * every float is finite;
//   * JSON: nlohmann::json::parse accepts the same body and reads the same k, params,
//     items and floats (each number as a double rounded to float32), so the fast scanner
//     accepts nothing the SAX parser would reject and yields the same values;
//   * binary: the floats are the body's bytes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "index/search_request.h"

namespace {

using nlohmann::json;

void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_search_request: %s: %s\n", what, detail.c_str());
  std::abort();
}

std::map<std::string, std::string> ParseQuery(std::string_view text) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('&', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view pair = text.substr(start, end - start);
    const size_t eq = pair.find('=');
    out[std::string(pair.substr(0, eq))] =
        eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
    start = end + 1;
  }
  return out;
}

void CheckCommon(const lattice::SearchRequest& r, const lattice::SearchRequestLimits& limits) {
  if (r.nq < 1 || r.nq > limits.max_batch) Fail("nq", std::to_string(r.nq));
  if (r.by_items()) {
    if (static_cast<int64_t>(r.items.size() + r.item_names.size()) != r.nq ||
        !r.vectors.empty() || (!r.items.empty() && !r.item_names.empty())) {
      Fail("items", "count");
    }
    for (const std::string& name : r.item_names) {
      if (name.empty()) Fail("items", "an empty item id");
    }
  } else if (static_cast<int64_t>(r.vectors.size()) != r.nq * limits.dim) {
    Fail("vectors", std::to_string(r.vectors.size()) + " floats for nq " + std::to_string(r.nq));
  }
  if (r.k < 1 || r.k > limits.max_k) Fail("k", std::to_string(r.k));
  if (r.params.ef_search < 0 || r.params.ef_search > limits.max_ef_search) Fail("ef_search", "");
  if (r.params.nprobe < 0 || r.params.nprobe > limits.max_nprobe) Fail("nprobe", "");
  const int64_t per_query = r.k > r.params.ef_search ? r.k : r.params.ef_search;
  if (r.nq * per_query > limits.max_query_work) Fail("max_query_work", "");
  for (float f : r.vectors) {
    if (!std::isfinite(f)) Fail("vectors", "a non-finite float");
  }
}

// The accepted body read again by nlohmann's DOM parser must give the same request.
void CheckAgainstDom(std::string_view body, const lattice::SearchRequest& r) {
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const std::exception& e) {
    Fail("accepted a body nlohmann rejects", e.what());
  }
  if (!j.is_object()) Fail("dom", "not an object");
  const int64_t k = j.contains("k") ? j["k"].get<int64_t>() : 10;
  if (k != r.k) Fail("dom", "k differs");
  if (j.contains("params")) {
    const json& p = j["params"];
    if (p.value("ef_search", 0) != r.params.ef_search || p.value("nprobe", 0) != r.params.nprobe) {
      Fail("dom", "params differ");
    }
  }
  if (r.by_items()) {
    const json& items = j.at("items");
    for (size_t i = 0; i < r.items.size(); ++i) {
      if (items.at(i).get<int64_t>() != r.items[i]) Fail("dom", "items differ");
    }
    for (size_t i = 0; i < r.item_names.size(); ++i) {  // strings, or integers in decimal
      const json& item = items.at(i);
      const std::string text = item.is_string() ? item.get<std::string>() : item.dump();
      if (text != r.item_names[i]) Fail("dom", "item names differ");
    }
    return;
  }
  const json& rows = j.at("vectors");
  size_t at = 0;
  for (const json& row : rows) {
    for (const json& x : row) {
      const float want = static_cast<float>(x.get<double>());
      if (at >= r.vectors.size() || std::memcmp(&want, &r.vectors[at], sizeof want) != 0) {
        Fail("dom", "vectors differ at float " + std::to_string(at) + ": " + x.dump());
      }
      ++at;
    }
  }
  if (at != r.vectors.size()) Fail("dom", "vector count differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool binary = data[0] & 1;
  lattice::SearchRequestLimits limits;
  limits.dim = 1 + data[1] % 8;
  if (data[0] & 2) {
    limits.max_k = 5;
    limits.max_batch = 3;
    limits.max_ef_search = 8;
    limits.max_nprobe = 8;
    limits.max_query_work = 20;
  }
  const std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  if (!binary) {
    auto r = lattice::ParseSearchRequest(rest, limits);
    if (!r.ok()) return 0;
    CheckCommon(*r, limits);
    CheckAgainstDom(rest, *r);
    return 0;
  }
  const size_t nl = rest.find('\n');
  const std::string_view query = nl == std::string_view::npos ? std::string_view() : rest.substr(0, nl);
  const std::string_view body = nl == std::string_view::npos ? rest : rest.substr(nl + 1);
  auto r = lattice::ParseBinarySearchRequest(body, ParseQuery(query), limits);
  if (!r.ok()) return 0;
  CheckCommon(*r, limits);
  if (r->by_items() || r->vectors.size() * sizeof(float) != body.size() ||
      std::memcmp(r->vectors.data(), body.data(), body.size()) != 0) {
    Fail("binary", "floats differ from the body");
  }
  return 0;
}
