#include "index/search_request.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

namespace lattice {
namespace {

using nlohmann::json;

enum class Kind { kNull, kBool, kInteger, kFloat, kString, kBinary, kObject, kArray };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kNull: return "null";
    case Kind::kBool: return "boolean";
    case Kind::kInteger: return "integer";
    case Kind::kFloat: return "number";
    case Kind::kString: return "string";
    case Kind::kBinary: return "binary";
    case Kind::kObject: return "object";
    case Kind::kArray: return "array";
  }
  return "value";
}

enum class Field { kNone, kVectors, kItems, kK, kParams };

// SAX handler. `depth_` counts the containers open around the next value: 0 = the body
// itself, 1 = a top-level value, 2 = an element of vectors / items or a params value,
// 3 = one number of a vector.
class Handler final : public nlohmann::json_sax<json> {
 public:
  Handler(const SearchRequestLimits& limits, SearchRequest* out) : limits_(limits), out_(out) {}

  const std::string& error() const { return error_; }
  bool seen_vectors() const { return seen_[static_cast<int>(Field::kVectors)]; }
  bool seen_items() const { return seen_[static_cast<int>(Field::kItems)]; }
  int64_t k() const { return k_; }

  bool null() override { return Scalar(Kind::kNull, 0, 0); }
  bool boolean(bool v) override { return Scalar(Kind::kBool, v ? 1 : 0, v ? 1 : 0); }
  bool number_integer(number_integer_t v) override {
    return Scalar(Kind::kInteger, static_cast<double>(v), v);
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Scalar(Kind::kFloat, static_cast<double>(v), 0);
    }
    return Scalar(Kind::kInteger, static_cast<double>(v), static_cast<int64_t>(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return Scalar(Kind::kFloat, v, 0); }
  bool string(string_t& v) override {
    if (depth_ == 2 && field_ == Field::kItems) return ItemName(v);
    return Scalar(Kind::kString, 0, 0);
  }
  bool binary(binary_t&) override { return Scalar(Kind::kBinary, 0, 0); }

  bool start_object(std::size_t) override {
    if (depth_ == 0 || (depth_ == 1 && field_ == Field::kParams)) {
      ++depth_;
      return true;
    }
    return Scalar(Kind::kObject, 0, 0);
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool key(string_t& key) override { return depth_ == 1 ? TopKey(key) : ParamKey(key); }

  bool start_array(std::size_t) override {
    if (depth_ == 1 && (field_ == Field::kVectors || field_ == Field::kItems)) {
      ++depth_;
      return true;
    }
    if (depth_ == 2 && field_ == Field::kVectors) {
      if (out_->nq >= limits_.max_batch) return TooMany();
      column_ = 0;
      ++depth_;
      return true;
    }
    return Scalar(Kind::kArray, 0, 0);
  }
  bool end_array() override {
    if (depth_ == 3) {
      if (column_ != limits_.dim) {
        return Fail(Row() + ": expected " + std::to_string(limits_.dim) + " values, got " +
                    std::to_string(column_));
      }
      ++out_->nq;
    }
    --depth_;
    return true;
  }

  bool parse_error(std::size_t, const std::string& token,
                   const nlohmann::detail::exception& e) override {
    if (e.id == 406 && depth_ == 3) {  // out_of_range: a number such as 1e999 overflows
      return Fail(Row() + "[" + std::to_string(column_) + "]: not a finite float32 (" + token +
                  ")");
    }
    return Fail(std::string("malformed JSON: ") + e.what());
  }

 private:
  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  bool TooMany() {
    return Fail("too many queries: more than " + std::to_string(limits_.max_batch) +
                " in one request (max_batch)");
  }
  std::string Row() const { return "vectors[" + std::to_string(out_->nq) + "]"; }

  bool TopKey(const std::string& key) {
    if (key == "vectors") {
      field_ = Field::kVectors;
    } else if (key == "items") {
      field_ = Field::kItems;
    } else if (key == "k") {
      field_ = Field::kK;
    } else if (key == "params") {
      field_ = Field::kParams;
    } else {
      return Fail("unknown key '" + key + "' (expected vectors, items, k, params)");
    }
    bool& seen = seen_[static_cast<int>(field_)];
    if (seen) return Fail("duplicate key '" + key + "'");
    seen = true;
    return true;
  }

  bool ParamKey(const std::string& key) {
    if (key == "ef_search") {
      param_ = &out_->params.ef_search;
    } else if (key == "nprobe") {
      param_ = &out_->params.nprobe;
    } else if (key == "exact") {
      param_ = nullptr;
    } else {
      return Fail("params." + key + ": unknown key (expected ef_search, nprobe, exact)");
    }
    param_name_ = key;
    return true;
  }

  // Any value that is not a container this handler descends into.
  bool Scalar(Kind kind, double d, int64_t i) {
    if (depth_ == 3) return Number(kind, d);
    if (depth_ == 0) return Fail("the request body must be a JSON object");
    const std::string got = std::string(", got ") + KindName(kind);
    if (depth_ == 1) {
      switch (field_) {
        case Field::kVectors: return Fail("vectors: expected an array of arrays of numbers" + got);
        case Field::kItems: return Fail("items: expected an array of item ids" + got);
        case Field::kParams: return Fail("params: expected an object" + got);
        default: break;
      }
      if (kind != Kind::kInteger) return Fail("k: expected an integer" + got);
      k_ = i;
      return true;
    }
    if (field_ == Field::kVectors) return Fail(Row() + ": expected an array of numbers" + got);
    if (field_ == Field::kItems) {
      if (kind != Kind::kInteger) {
        return Fail("items[" + std::to_string(Items()) +
                    "]: expected an item id (an integer or a string)" + got);
      }
      if (Items() >= limits_.max_batch) return TooMany();
      if (out_->item_names.empty()) {
        out_->items.push_back(i);
      } else {
        out_->item_names.push_back(std::to_string(i));
      }
      return true;
    }
    const std::string at = "params." + param_name_;
    if (param_ == nullptr) {  // exact
      if (kind != Kind::kBool) return Fail(at + ": expected true or false" + got);
      out_->params.exact = i != 0;
      return true;
    }
    if (kind != Kind::kInteger) return Fail(at + ": expected an integer" + got);
    const int64_t max = param_ == &out_->params.nprobe ? limits_.max_nprobe : limits_.max_ef_search;
    if (i < 1 || i > max) {
      return Fail(at + ": must be between 1 and " + std::to_string(max) + ", got " +
                  std::to_string(i) + " (max_" + param_name_ + ")");
    }
    *param_ = static_cast<int>(i);
    return true;
  }

  // Items so far (integers, or every item as text once one was a string).
  int64_t Items() const {
    return static_cast<int64_t>(out_->items.size() + out_->item_names.size());
  }

  // A string item: from now on every item is kept as text.
  bool ItemName(const std::string& name) {
    if (name.empty()) return Fail("items[" + std::to_string(Items()) + "]: empty item id");
    if (Items() >= limits_.max_batch) return TooMany();
    for (int64_t earlier : out_->items) out_->item_names.push_back(std::to_string(earlier));
    out_->items.clear();
    out_->item_names.push_back(name);
    return true;
  }

  bool Number(Kind kind, double d) {
    const std::string at = Row() + "[" + std::to_string(column_) + "]";
    if (kind != Kind::kInteger && kind != Kind::kFloat) {
      return Fail(at + ": expected a number, got " + KindName(kind));
    }
    if (column_ >= limits_.dim) {  // too long: count on, end_array reports the length
      ++column_;
      return true;
    }
    const float f = static_cast<float>(d);
    if (!std::isfinite(f)) return Fail(at + ": not a finite float32");
    out_->vectors.push_back(f);
    ++column_;
    return true;
  }

  const SearchRequestLimits limits_;
  SearchRequest* out_;
  std::string error_;
  int depth_ = 0;
  Field field_ = Field::kNone;
  bool seen_[5] = {false, false, false, false, false};
  int column_ = 0;
  int64_t k_ = 10;
  int* param_ = nullptr;
  std::string param_name_;
};

// ---------------------------------------------------------------------------------------
// Fast path: a hand-written scanner over the raw bytes for the usual shape, numbers
// converted with std::from_chars. It accepts only what the SAX parser above accepts and
// yields the very same floats (JSON integers and decimals go through double, as
// nlohmann does). On anything unusual or wrong (escapes in keys, unknown or duplicate
// keys, a row of the wrong length, a non-finite value, a limit hit, malformed JSON) it
// gives up, and ParseSearchRequest runs the SAX parser, whose message names the fault.
class FastScanner {
 public:
  FastScanner(std::string_view body, const SearchRequestLimits& limits, SearchRequest* out)
      : p_(body.data()), end_(body.data() + body.size()), limits_(limits), out_(out) {}

  bool seen_vectors() const { return seen_[static_cast<int>(Field::kVectors)]; }
  bool seen_items() const { return seen_[static_cast<int>(Field::kItems)]; }
  int64_t k() const { return k_; }

  // True when the whole body parsed and broke no rule checked while parsing.
  bool Run() {
    if (!Consume('{')) return false;
    if (!Consume('}')) {
      do {
        if (!Member()) return false;
      } while (Consume(','));
      if (!Consume('}')) return false;
    }
    SkipSpace();
    return p_ == end_;
  }

 private:
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  static bool Digit(char c) { return c >= '0' && c <= '9'; }

  // A key without escapes, and the ':' after it.
  bool Key(std::string_view* key) {
    if (!Consume('"')) return false;
    const char* start = p_;
    while (p_ < end_ && *p_ != '"') {
      if (*p_ == '\\' || static_cast<unsigned char>(*p_) < 0x20) return false;
      ++p_;
    }
    if (p_ == end_) return false;
    *key = std::string_view(start, static_cast<size_t>(p_ - start));
    ++p_;
    return Consume(':');
  }

  bool Member() {
    std::string_view key;
    if (!Key(&key)) return false;
    Field field;
    if (key == "vectors") {
      field = Field::kVectors;
    } else if (key == "items") {
      field = Field::kItems;
    } else if (key == "k") {
      field = Field::kK;
    } else if (key == "params") {
      field = Field::kParams;
    } else {
      return false;
    }
    bool& seen = seen_[static_cast<int>(field)];
    if (seen) return false;
    seen = true;
    switch (field) {
      case Field::kVectors: return Vectors();
      case Field::kItems: return Items();
      case Field::kK: return Integer(&k_);
      default: return Params();
    }
  }

  // One JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? .
  // `integral`: no fraction and no exponent (nlohmann's integer kinds).
  bool Number(double* value, bool* integral) {
    SkipSpace();
    const char* start = p_;
    const char* q = p_;
    const bool negative = q < end_ && *q == '-';
    if (negative) ++q;
    if (q == end_) return false;
    uint64_t mantissa = 0;
    int digits = 0;
    if (*q == '0') {
      ++q;
      digits = 1;
    } else if (*q >= '1' && *q <= '9') {
      for (; q < end_ && Digit(*q); ++q, ++digits) {
        mantissa = mantissa * 10 + static_cast<uint64_t>(*q - '0');  // exact while <= 19
      }
    } else {
      return false;
    }
    if (q < end_ && Digit(*q)) return false;  // a leading zero
    bool fraction = false, zero_fraction = true, exponent = false;
    if (q < end_ && *q == '.') {
      fraction = true;
      if (++q == end_ || !Digit(*q)) return false;
      for (; q < end_ && Digit(*q); ++q) zero_fraction &= *q == '0';
    }
    if (q < end_ && (*q == 'e' || *q == 'E')) {
      exponent = true;
      if (++q < end_ && (*q == '+' || *q == '-')) ++q;
      if (q == end_ || !Digit(*q)) return false;
      while (q < end_ && Digit(*q)) ++q;
    }
    *integral = !fraction && !exponent;
    p_ = q;
    if (!exponent && zero_fraction && digits <= 15) {  // exactly a double: 12, 255.0
      const double d = static_cast<double>(mantissa);
      // nlohmann reads "-0" as the integer 0 but "-0.0" as the double -0.0.
      *value = negative && !(*integral && mantissa == 0) ? -d : d;
      return true;
    }
    const auto [end, ec] = std::from_chars(start, q, *value);
    return ec == std::errc() && end == q;  // out of range: the SAX parser reports it
  }

  bool Integer(int64_t* value) {
    SkipSpace();
    const char* start = p_;
    double unused;
    bool integral = false;
    if (!Number(&unused, &integral) || !integral) return false;
    const auto [end, ec] = std::from_chars(start, p_, *value);
    return ec == std::errc() && end == p_;
  }

  bool Vectors() {
    if (!Consume('[')) return false;
    if (Consume(']')) return true;
    const size_t dim = static_cast<size_t>(limits_.dim);
    // Each value takes at least two bytes ("0,"): never reallocate while parsing.
    const size_t bound = static_cast<size_t>(end_ - p_) / 2 + 1;
    out_->vectors.reserve(std::min(bound, static_cast<size_t>(limits_.max_batch) * dim));
    do {
      if (out_->nq >= limits_.max_batch || !Consume('[')) return false;
      for (size_t column = 0;; ++column) {
        double d;
        bool integral;
        if (column == dim || !Number(&d, &integral)) return false;
        const float f = static_cast<float>(d);
        if (!std::isfinite(f)) return false;
        out_->vectors.push_back(f);
        if (p_ < end_ && *p_ == ',') {  // the common case: no whitespace
          ++p_;
          continue;
        }
        if (Consume(']')) {
          if (column + 1 != dim) return false;
          break;
        }
        if (!Consume(',')) return false;
      }
      ++out_->nq;
    } while (Consume(','));
    return Consume(']');
  }

  bool Items() {
    if (!Consume('[')) return false;
    if (Consume(']')) return true;
    do {
      int64_t id;
      if (static_cast<int64_t>(out_->items.size()) >= limits_.max_batch || !Integer(&id)) {
        return false;
      }
      out_->items.push_back(id);
    } while (Consume(','));
    return Consume(']');
  }

  bool Params() {
    if (!Consume('{')) return false;
    if (Consume('}')) return true;
    do {
      std::string_view key;
      int64_t v;
      if (!Key(&key) || !Integer(&v) || v < 1) return false;
      if (key == "ef_search" && v <= limits_.max_ef_search) {
        out_->params.ef_search = static_cast<int>(v);
      } else if (key == "nprobe" && v <= limits_.max_nprobe) {
        out_->params.nprobe = static_cast<int>(v);
      } else {
        return false;  // the SAX parser names the fault (and reads "exact")
      }
    } while (Consume(','));
    return Consume('}');
  }

  const char* p_;
  const char* const end_;
  const SearchRequestLimits& limits_;
  SearchRequest* out_;
  bool seen_[5] = {false, false, false, false, false};
  int64_t k_ = 10;
};

// queries x max(k, ef_search) against max_query_work: the candidates one request may
// make the index keep, summed over its queries.
Status CheckWork(const SearchRequest& r, const SearchRequestLimits& limits) {
  const int64_t per_query = std::max<int64_t>(r.k, r.params.ef_search);
  if (r.nq * per_query > limits.max_query_work) {
    return Status::InvalidArgument(
        "too much work in one request: " + std::to_string(r.nq) + " queries x " +
        (r.params.ef_search > r.k ? "ef_search " : "k ") + std::to_string(per_query) + " = " +
        std::to_string(r.nq * per_query) + " exceeds " + std::to_string(limits.max_query_work) +
        " (max_query_work); split the batch");
  }
  return Status::Ok();
}

// The checks that need the whole body, shared by both parsers.
StatusOr<SearchRequest> Finish(SearchRequest out, bool seen_vectors, bool seen_items, int64_t k,
                               const SearchRequestLimits& limits) {
  if (seen_vectors == seen_items) {
    return Status::InvalidArgument(seen_vectors ? "give either vectors or items, not both"
                                                : "one of vectors or items is required");
  }
  if (seen_items) out.nq = static_cast<int64_t>(out.items.size() + out.item_names.size());
  if (out.nq == 0) {
    return Status::InvalidArgument(std::string(seen_items ? "items" : "vectors") +
                                   ": must hold at least one query");
  }
  if (k < 1 || k > limits.max_k) {
    return Status::InvalidArgument("k: must be between 1 and " + std::to_string(limits.max_k) +
                                   ", got " + std::to_string(k));
  }
  out.k = static_cast<int>(k);
  LATTICE_RETURN_IF_ERROR(CheckWork(out, limits));
  return out;
}

// A query-string integer in [lo, hi].
Status QueryInt(const std::string& name, const std::string& text, int64_t lo, int64_t hi,
                int64_t* out, const std::string& limit_name = "") {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return Status::InvalidArgument(name + ": expected an integer, got '" + text + "'");
  }
  if (*out < lo || *out > hi) {
    return Status::InvalidArgument(name + ": must be between " + std::to_string(lo) + " and " +
                                   std::to_string(hi) + ", got " + std::to_string(*out) +
                                   limit_name);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<SearchRequest> ParseBinarySearchRequest(
    std::string_view body, const std::map<std::string, std::string>& query,
    const SearchRequestLimits& limits) {
  SearchRequest out;
  for (const auto& [name, text] : query) {
    int64_t v = 0;
    if (name == "k") {
      LATTICE_RETURN_IF_ERROR(QueryInt(name, text, 1, limits.max_k, &v));
      out.k = static_cast<int>(v);
    } else if (name == "ef_search" || name == "nprobe") {
      const int64_t max = name == "nprobe" ? limits.max_nprobe : limits.max_ef_search;
      LATTICE_RETURN_IF_ERROR(QueryInt(name, text, 1, max, &v, " (max_" + name + ")"));
      (name == "nprobe" ? out.params.nprobe : out.params.ef_search) = static_cast<int>(v);
    } else if (name == "exact") {
      if (text != "true" && text != "false" && text != "1" && text != "0") {
        return Status::InvalidArgument("exact: expected true or false, got '" + text + "'");
      }
      out.params.exact = text == "true" || text == "1";
    } else {
      return Status::InvalidArgument("unknown query parameter '" + name +
                                     "' (expected k, ef_search, nprobe, exact)");
    }
  }
  if (out.k > limits.max_k) {  // the default k (10) with max_k below it, as for JSON
    return Status::InvalidArgument("k: must be between 1 and " + std::to_string(limits.max_k) +
                                   ", got " + std::to_string(out.k));
  }
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(limits.dim);
  if (row_bytes == 0 || body.size() % row_bytes != 0) {
    return Status::InvalidArgument("body: " + std::to_string(body.size()) +
                                   " bytes is not a multiple of " + std::to_string(row_bytes) +
                                   " (rows of dim " + std::to_string(limits.dim) +
                                   " float32 values)");
  }
  out.nq = static_cast<int64_t>(body.size() / row_bytes);
  if (out.nq == 0) return Status::InvalidArgument("vectors: must hold at least one query");
  if (out.nq > limits.max_batch) {
    return Status::InvalidArgument("too many queries: more than " +
                                   std::to_string(limits.max_batch) +
                                   " in one request (max_batch)");
  }
  LATTICE_RETURN_IF_ERROR(CheckWork(out, limits));
  out.vectors.resize(body.size() / sizeof(float));
  std::memcpy(out.vectors.data(), body.data(), body.size());
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  for (float& f : out.vectors) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    bits = __builtin_bswap32(bits);
    std::memcpy(&f, &bits, sizeof bits);
  }
#endif
  for (size_t i = 0; i < out.vectors.size(); ++i) {
    if (!std::isfinite(out.vectors[i])) {
      const size_t dim = static_cast<size_t>(limits.dim);
      return Status::InvalidArgument("vectors[" + std::to_string(i / dim) + "][" +
                                     std::to_string(i % dim) + "]: not a finite float32");
    }
  }
  return out;
}

StatusOr<SearchRequest> ParseSearchRequest(std::string_view body,
                                           const SearchRequestLimits& limits) {
  {
    SearchRequest out;
    FastScanner scanner(body, limits, &out);
    if (scanner.Run()) {
      return Finish(std::move(out), scanner.seen_vectors(), scanner.seen_items(), scanner.k(),
                    limits);
    }
  }
  SearchRequest out;
  Handler handler(limits, &out);
  bool ok = false;
  try {
    ok = json::sax_parse(body.begin(), body.end(), &handler);
  } catch (const std::exception& e) {  // nlohmann reports through parse_error; be safe
    return Status::InvalidArgument(std::string("malformed JSON: ") + e.what());
  }
  if (!ok) {
    return Status::InvalidArgument(handler.error().empty() ? "malformed JSON"
                                                           : handler.error());
  }
  return Finish(std::move(out), handler.seen_vectors(), handler.seen_items(), handler.k(), limits);
}

}  // namespace lattice
