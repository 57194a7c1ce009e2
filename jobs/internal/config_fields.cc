// Shared readers for JSON config fields (see jobs/internal/config_fields.h).
#include "jobs/internal/config_fields.h"

#include <cmath>
#include <cstdio>

namespace lattice::jobs::internal {

using nlohmann::json;

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string FormatNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

std::string TypeName(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

Status Bad(const std::string& path, const std::string& msg) {
  return Status::InvalidArgument(path + ": " + msg);
}

// Rejects keys of `obj` outside `allowed`; `obj` must be an object.
Status CheckObject(const json& obj, const std::string& path, const std::set<std::string>& allowed) {
  if (!obj.is_object()) return Bad(path, "expected an object, got " + TypeName(obj));
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!allowed.count(it.key())) {
      std::string list;
      for (const std::string& key : allowed) list += (list.empty() ? "" : ", ") + key;
      return Bad(Join(path, it.key()), "unknown key (allowed: " + list + ")");
    }
  }
  return Status::Ok();
}

const json* Find(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// An integer (a float with an integral value is accepted too: 30.0 -> 30).
StatusOr<int64_t> AsInt(const json& v, const std::string& path) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
      return static_cast<int64_t>(d);
    }
  }
  return Bad(path, "expected an integer, got " + TypeName(v) + " " + v.dump());
}

StatusOr<double> AsNumber(const json& v, const std::string& path) {
  if (!v.is_number()) return Bad(path, "expected a number, got " + TypeName(v) + " " + v.dump());
  double d = v.get<double>();
  if (!std::isfinite(d)) return Bad(path, "must be finite");
  return d;
}

// Reads an optional integer field into *out, checking min <= value (<= max).
Status GetInt(const json& obj, const char* key, const std::string& path, int64_t* out,
              int64_t min, std::optional<int64_t> max) {
  const json* v = Find(obj, key);
  if (!v) return Status::Ok();
  std::string p = Join(path, key);
  LATTICE_ASSIGN_OR_RETURN(int64_t x, AsInt(*v, p));
  if (x < min) return Bad(p, "must be >= " + std::to_string(min) + ", got " + std::to_string(x));
  if (max && x > *max) {
    return Bad(p, "must be <= " + std::to_string(*max) + ", got " + std::to_string(x));
  }
  *out = x;
  return Status::Ok();
}

// Reads an optional number into *out, checking it lies in the given interval.
Status GetNumber(const json& obj, const char* key, const std::string& path, double* out,
                 Bound lo_kind, double lo, Bound hi_kind, double hi) {
  const json* v = Find(obj, key);
  if (!v) return Status::Ok();
  std::string p = Join(path, key);
  LATTICE_ASSIGN_OR_RETURN(double x, AsNumber(*v, p));
  bool lo_ok = lo_kind == Bound::kNone || (lo_kind == Bound::kOpen ? x > lo : x >= lo);
  bool hi_ok = hi_kind == Bound::kNone || (hi_kind == Bound::kOpen ? x < hi : x <= hi);
  if (!lo_ok || !hi_ok) {
    std::string range;
    if (hi_kind == Bound::kNone) {
      range = std::string(lo_kind == Bound::kOpen ? "> " : ">= ") + FormatNumber(lo);
    } else {
      range = std::string("in ") + (lo_kind == Bound::kOpen ? "(" : "[") + FormatNumber(lo) +
              ", " + FormatNumber(hi) + (hi_kind == Bound::kOpen ? ")" : "]");
    }
    return Bad(p, "must be " + range + ", got " + FormatNumber(x));
  }
  *out = x;
  return Status::Ok();
}

Status GetBool(const json& obj, const char* key, const std::string& path, bool* out) {
  const json* v = Find(obj, key);
  if (!v) return Status::Ok();
  if (!v->is_boolean()) {
    return Bad(Join(path, key), "expected a boolean, got " + TypeName(*v) + " " + v->dump());
  }
  *out = v->get<bool>();
  return Status::Ok();
}

Status GetString(const json& obj, const char* key, const std::string& path, std::string* out) {
  const json* v = Find(obj, key);
  if (!v) return Status::Ok();
  if (!v->is_string()) {
    return Bad(Join(path, key), "expected a string, got " + TypeName(*v) + " " + v->dump());
  }
  *out = v->get<std::string>();
  if (out->empty()) return Bad(Join(path, key), "must not be empty");
  return Status::Ok();
}

}  // namespace lattice::jobs::internal
