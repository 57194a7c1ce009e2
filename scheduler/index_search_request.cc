#include "scheduler/index_search_request.h"

#include <cmath>
#include <limits>
#include <string>

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
  bool boolean(bool) override { return Scalar(Kind::kBool, 0, 0); }
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
  bool string(string_t&) override { return Scalar(Kind::kString, 0, 0); }
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
    } else {
      return Fail("params." + key + ": unknown key (expected ef_search, nprobe)");
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
      const std::string at = "items[" + std::to_string(out_->items.size()) + "]";
      if (kind != Kind::kInteger) return Fail(at + ": expected an integer item id" + got);
      if (static_cast<int64_t>(out_->items.size()) >= limits_.max_batch) return TooMany();
      out_->items.push_back(i);
      return true;
    }
    const std::string at = "params." + param_name_;
    if (kind != Kind::kInteger) return Fail(at + ": expected an integer" + got);
    if (i < 1 || i > (1 << 20)) {
      return Fail(at + ": must be between 1 and 1048576, got " + std::to_string(i));
    }
    *param_ = static_cast<int>(i);
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

}  // namespace

StatusOr<SearchRequest> ParseSearchRequest(std::string_view body,
                                           const SearchRequestLimits& limits) {
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
  if (handler.seen_vectors() == handler.seen_items()) {
    return Status::InvalidArgument(handler.seen_vectors()
                                       ? "give either vectors or items, not both"
                                       : "one of vectors or items is required");
  }
  if (handler.seen_items()) out.nq = static_cast<int64_t>(out.items.size());
  if (out.nq == 0) {
    return Status::InvalidArgument(std::string(handler.seen_items() ? "items" : "vectors") +
                                   ": must hold at least one query");
  }
  if (handler.k() < 1 || handler.k() > limits.max_k) {
    return Status::InvalidArgument("k: must be between 1 and " + std::to_string(limits.max_k) +
                                   ", got " + std::to_string(handler.k()));
  }
  out.k = static_cast<int>(handler.k());
  return out;
}

}  // namespace lattice
