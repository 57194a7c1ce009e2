// Readers for the fields of JSON job configs, shared by the config parsers of every job
// kind (torch-free; internal to lattice_jobs_config).
//
// Every reader names the full key path in its InvalidArgument message
// ("train.lr: must be > 0, got -1"). Optional readers leave *out untouched when the key is
// absent. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice::jobs::internal {

// "path.key" (or "key" when path is empty).
std::string Join(const std::string& path, const std::string& key);
// "%g" formatting.
std::string FormatNumber(double v);
// "integer", "number", "string", ... for messages.
std::string TypeName(const nlohmann::json& v);
// InvalidArgument "<path>: <msg>".
Status Bad(const std::string& path, const std::string& msg);
// Rejects keys of `obj` outside `allowed` ("path.key: unknown key"); `obj` must be an object.
Status CheckObject(const nlohmann::json& obj, const std::string& path,
                   const std::set<std::string>& allowed);
// The member `key` of `obj`, or null.
const nlohmann::json* Find(const nlohmann::json& obj, const char* key);
// An integer (a float with an integral value is accepted too: 30.0 -> 30).
StatusOr<int64_t> AsInt(const nlohmann::json& v, const std::string& path);
// A finite number.
StatusOr<double> AsNumber(const nlohmann::json& v, const std::string& path);
// Reads an optional integer field into *out, checking min <= value (<= max).
Status GetInt(const nlohmann::json& obj, const char* key, const std::string& path, int64_t* out,
              int64_t min, std::optional<int64_t> max = std::nullopt);

enum class Bound { kClosed, kOpen, kNone };

// Reads an optional number into *out, checking it lies in the given interval.
Status GetNumber(const nlohmann::json& obj, const char* key, const std::string& path, double* out,
                 Bound lo_kind, double lo, Bound hi_kind = Bound::kNone, double hi = 0);
Status GetBool(const nlohmann::json& obj, const char* key, const std::string& path, bool* out);
// A non-empty string.
Status GetString(const nlohmann::json& obj, const char* key, const std::string& path,
                 std::string* out);

// Reads an optional string that must be one of `choices`; returns its index in *out.
template <typename E>
Status GetEnum(const nlohmann::json& obj, const char* key, const std::string& path,
               const std::vector<std::pair<const char*, E>>& choices, E* out) {
  std::string s;
  LATTICE_RETURN_IF_ERROR(GetString(obj, key, path, &s));
  if (s.empty()) return Status::Ok();
  std::string names;
  for (const auto& [name, value] : choices) {
    if (s == name) {
      *out = value;
      return Status::Ok();
    }
    names += (names.empty() ? "" : "|") + std::string(name);
  }
  return Bad(Join(path, key), "must be one of " + names + ", got \"" + s + "\"");
}

}  // namespace lattice::jobs::internal
