#include "scheduler/internal/spec_document.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <unordered_set>
#include <vector>

#include "scheduler/sweep_spec.h"

namespace lattice::scheduler::internal {
namespace {

using OrderedJson = nlohmann::ordered_json;

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

Status TooManyValues() {
  return Status::InvalidArgument("spec: more than " + std::to_string(kMaxSpecValues) +
                                 " values (aliases expanded); that is the limit");
}

Status TooDeep(const std::string& where) {
  return Status::InvalidArgument("spec: nesting deeper than " + std::to_string(kMaxSpecDepth) +
                                 " levels (at " + where + ")");
}

Status TooManyKeys(const std::string& where) {
  return Status::InvalidArgument(where + ": more than " + std::to_string(kMaxSpecKeysPerMapping) +
                                 " keys in one mapping; that is the limit");
}

// yaml-cpp writes the escapes \N and \_ (U+0085, U+00A0) as single Latin-1 bytes, and a
// NUL byte in the text can turn into one: text that is valid UTF-8 can give a scalar that
// is not, which nlohmann::json cannot serialise (the spec is stored as JSON).
Status NotUtf8(const std::string& where) {
  return Status::InvalidArgument(
      where + ": not valid UTF-8 once YAML escapes are applied (write \\N, \\_ as the "
              "characters themselves)");
}

Status NotFinite(const std::string& where) {
  return Status::InvalidArgument(where +
                                 ": .nan and .inf are not allowed (a spec is stored as JSON)");
}

// ---- YAML -----------------------------------------------------------------------------

// The YAML 1.2 core schema's number forms, matched by hand: std::regex (libstdc++)
// recurses once per character and overflows the stack on a scalar of ~100,000 digits,
// which a spec well under the 5 MB body limit can hold.
size_t Digits(const std::string& s, size_t i) {
  size_t n = 0;
  while (i + n < s.size() && s[i + n] >= '0' && s[i + n] <= '9') ++n;
  return n;
}
size_t Sign(const std::string& s) { return !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0; }

// [-+]?[0-9]+
bool IsYamlInt(const std::string& s) {
  const size_t i = Sign(s);
  return i < s.size() && i + Digits(s, i) == s.size();
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsYamlFloat(const std::string& s) {
  size_t i = Sign(s);
  const size_t whole = Digits(s, i);
  i += whole;
  if (i < s.size() && s[i] == '.') {
    const size_t fraction = Digits(s, i + 1);
    if (whole == 0 && fraction == 0) return false;
    i += 1 + fraction;
  } else if (whole == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    const size_t exponent = Digits(s, i);
    if (exponent == 0) return false;
    i += exponent;
  }
  return i == s.size();
}

// A plain (unquoted) scalar typed by the YAML 1.2 core schema.
OrderedJson PlainScalarToJson(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (IsYamlInt(s)) {
    errno = 0;
    const long long v = std::strtoll(s.c_str(), nullptr, 10);
    if (errno != ERANGE) return static_cast<int64_t>(v);
    return std::strtod(s.c_str(), nullptr);  // too big for int64: keep it as a float
  }
  if (IsYamlFloat(s)) return std::strtod(s.c_str(), nullptr);
  const std::string unsigned_part = s.substr(Sign(s));  // [-+]?\.(inf|Inf|INF)
  if (unsigned_part == ".inf" || unsigned_part == ".Inf" || unsigned_part == ".INF") {
    return s[0] == '-' ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  return s;
}

// Converts a yaml-cpp node graph (aliases are shared nodes, possibly cyclic) to JSON,
// expanding aliases, within the limits.
class YamlConverter {
 public:
  // `level`: how many mappings/lists enclose `node`, plus one if it is one itself.
  StatusOr<OrderedJson> Convert(const YAML::Node& node, const std::string& path, int level) {
    const std::string where = path.empty() ? "spec" : path;
    if (++values_ > kMaxSpecValues) return TooManyValues();
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return OrderedJson(nullptr);
      case YAML::NodeType::Scalar: {
        if (!CheckUtf8(node.Scalar()).ok()) return NotUtf8(where);
        // "!" marks a quoted scalar; an explicit !!str tag also forces a string.
        if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") {
          return OrderedJson(node.Scalar());
        }
        OrderedJson v = PlainScalarToJson(node.Scalar());
        if (v.is_number_float() && !std::isfinite(v.get<double>())) return NotFinite(where);
        return v;
      }
      case YAML::NodeType::Sequence:
      case YAML::NodeType::Map:
        break;
    }
    if (level > kMaxSpecDepth) return TooDeep(where);
    for (const YAML::Node& ancestor : ancestors_) {
      if (node.is(ancestor)) {
        return Status::InvalidArgument(where +
                                       ": alias refers to a mapping or list that contains it "
                                       "(a recursive alias)");
      }
    }
    ancestors_.push_back(node);
    StatusOr<OrderedJson> out =
        node.IsSequence() ? Sequence(node, where, level) : Map(node, path, where, level);
    ancestors_.pop_back();
    return out;
  }

 private:
  StatusOr<OrderedJson> Sequence(const YAML::Node& node, const std::string& where, int level) {
    OrderedJson out = OrderedJson::array();
    for (size_t i = 0; i < node.size(); ++i) {
      LATTICE_ASSIGN_OR_RETURN(OrderedJson v,
                               Convert(node[i], where + "[" + std::to_string(i) + "]", level + 1));
      out.push_back(std::move(v));
    }
    return out;
  }

  StatusOr<OrderedJson> Map(const YAML::Node& node, const std::string& path,
                            const std::string& where, int level) {
    OrderedJson out = OrderedJson::object();
    std::unordered_set<std::string> keys;  // ordered_json lookups are linear
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) return Status::InvalidArgument(where + ": keys must be text");
      const std::string key = kv.first.Scalar();
      if (!CheckUtf8(key).ok()) return NotUtf8(where + " (a key)");
      if (keys.size() >= static_cast<size_t>(kMaxSpecKeysPerMapping)) return TooManyKeys(where);
      if (!keys.insert(key).second) {
        return Status::InvalidArgument(Join(path, key) + ": duplicate key");
      }
      LATTICE_ASSIGN_OR_RETURN(OrderedJson v, Convert(kv.second, Join(path, key), level + 1));
      // The vector under ordered_json's map: its operator[] would search linearly again.
      out.get_ref<OrderedJson::object_t&>().emplace_back(key, std::move(v));
    }
    return out;
  }

  int64_t values_ = 0;
  std::vector<YAML::Node> ancestors_;  // the mappings/lists being converted, outermost first
};

StatusOr<OrderedJson> ParseYaml(const std::string& text) {
  try {
    const YAML::Node root = YAML::Load(text);
    return YamlConverter().Convert(root, "", 1);
  } catch (const YAML::DeepRecursion& e) {  // yaml-cpp's own guard, at ~1000 levels
    return TooDeep("line " + std::to_string(e.mark.line + 1));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument("spec: line " + std::to_string(e.mark.line + 1) + ", column " +
                                   std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

// ---- JSON -----------------------------------------------------------------------------

// Thrown by the parser callback to stop at the first limit passed.
struct LimitPassed {
  Status status;
};

// The JSON object in `text`, or nullopt when `text` is not (entirely) a JSON object.
StatusOr<std::optional<OrderedJson>> ParseJson(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') return std::optional<OrderedJson>();
  int64_t values = 0;
  std::vector<std::unordered_set<std::string>> keys;  // one set per open object
  auto callback = [&](int depth, nlohmann::ordered_json::parse_event_t event, OrderedJson& parsed) {
    using Event = nlohmann::ordered_json::parse_event_t;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (++values > kMaxSpecValues) throw LimitPassed{TooManyValues()};
        if (depth + 1 > kMaxSpecDepth) throw LimitPassed{TooDeep("JSON nesting")};
        if (event == Event::object_start) keys.emplace_back();
        break;
      case Event::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Event::key: {
        const std::string key = parsed.get<std::string>();
        if (keys.back().size() >= static_cast<size_t>(kMaxSpecKeysPerMapping)) {
          throw LimitPassed{TooManyKeys("spec: key \"" + key + "\"")};
        }
        if (!keys.back().insert(key).second) {
          throw LimitPassed{Status::InvalidArgument(key + ": duplicate key")};
        }
        break;
      }
      case Event::value:
        if (++values > kMaxSpecValues) throw LimitPassed{TooManyValues()};
        if (parsed.is_number_unsigned()) {  // as the YAML path types integers
          const uint64_t u = parsed.get<uint64_t>();
          if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            parsed = static_cast<int64_t>(u);
          } else {
            parsed = static_cast<double>(u);
          }
        }
        break;
      case Event::array_end:
        break;
    }
    return true;
  };
  try {
    OrderedJson doc = OrderedJson::parse(text, callback, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return std::optional<OrderedJson>();  // not JSON: try YAML
    return std::optional<OrderedJson>(std::move(doc));
  } catch (const LimitPassed& e) {
    return e.status;
  }
}

}  // namespace

Status CheckUtf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    }
    bool ok = len != 0 && i + len <= n && s[i + 1] >= lo && s[i + 1] <= hi;
    for (size_t k = 2; ok && k < len; ++k) ok = s[i + k] >= 0x80 && s[i + k] <= 0xBF;
    if (!ok) return Status::InvalidArgument("spec: invalid UTF-8 at byte " + std::to_string(i));
    i += len;
  }
  return Status::Ok();
}

int64_t CountSpecValues(const nlohmann::json& v) {
  int64_t n = 1;
  if (v.is_structured()) {
    for (const auto& child : v) n += CountSpecValues(child);
  }
  return n;
}

StatusOr<OrderedJson> ParseSpecDocument(const std::string& text) {
  LATTICE_RETURN_IF_ERROR(CheckUtf8(text));
  LATTICE_ASSIGN_OR_RETURN(std::optional<OrderedJson> json, ParseJson(text));
  if (json) return std::move(*json);
  return ParseYaml(text);
}

}  // namespace lattice::scheduler::internal
