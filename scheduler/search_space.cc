#include "scheduler/search_space.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "jobs/job_config.h"

namespace lattice::scheduler {
namespace {

using OrderedJson = nlohmann::ordered_json;

std::string Key(const std::string& name) { return "search.parameters." + name; }

bool IsNumber(const OrderedJson& v) { return v.is_number(); }  // bools are not numbers

// True when one dotted path equals the other or is a prefix of it at a '.' boundary.
bool PathsOverlap(const std::string& a, const std::string& b) {
  const std::string& shorter = a.size() <= b.size() ? a : b;
  const std::string& longer = a.size() <= b.size() ? b : a;
  if (longer.compare(0, shorter.size(), shorter) != 0) return false;
  return longer.size() == shorter.size() || longer[shorter.size()] == '.';
}

Status ParseRangeType(const OrderedJson& range, const std::string& key, ParameterDomain* d) {
  if (range.contains("log")) {
    if (!range["log"].is_boolean()) return Status::InvalidArgument(key + ".log: must be a bool");
    d->log = range["log"].get<bool>();
  }
  if (range.contains("type")) {
    const OrderedJson& t = range["type"];
    if (!t.is_string() || (t != "float" && t != "int")) {
      return Status::InvalidArgument(key + ".type: must be float or int, got " + t.dump());
    }
    d->is_int = t == "int";
  }
  return Status::Ok();
}

// {min, max, log, type} for random search.
Status ParseRange(const OrderedJson& range, const std::string& key, ParameterDomain* d) {
  for (const auto& item : range.items()) {
    const std::string& k = item.key();
    if (k != "min" && k != "max" && k != "log" && k != "type") {
      return Status::InvalidArgument(key + "." + k +
                                     ": unknown key (a range has min, max, log, type)");
    }
  }
  for (const char* bound : {"min", "max"}) {
    if (!range.contains(bound)) return Status::InvalidArgument(key + "." + bound + ": required");
    if (!IsNumber(range[bound])) {
      return Status::InvalidArgument(key + "." + bound + ": must be a number, got " +
                                     range[bound].dump());
    }
  }
  LATTICE_RETURN_IF_ERROR(ParseRangeType(range, key, d));
  if (d->is_int && (!range["min"].is_number_integer() || !range["max"].is_number_integer())) {
    return Status::InvalidArgument(key + ": type int needs integer min and max, got min=" +
                                   range["min"].dump() + " max=" + range["max"].dump());
  }
  d->kind = ParameterDomain::Kind::kRange;
  d->min = range["min"].get<double>();
  d->max = range["max"].get<double>();
  constexpr double kMaxExactInt = 9007199254740992.0;  // 2^53: ints stay exact as doubles
  if (d->is_int && (std::fabs(d->min) >= kMaxExactInt || std::fabs(d->max) >= kMaxExactInt)) {
    return Status::InvalidArgument(key + ": type int needs |min|, |max| < 2^53");
  }
  if (!std::isfinite(d->min) || !std::isfinite(d->max) || !(d->min < d->max)) {
    return Status::InvalidArgument(key + ": min must be < max, got min=" + range["min"].dump() +
                                   " max=" + range["max"].dump());
  }
  if (d->log && d->min <= 0) {
    return Status::InvalidArgument(key +
                                   ": log: true needs min > 0, got min=" + range["min"].dump());
  }
  return Status::Ok();
}

StatusOr<ParameterDomain> ParseDomain(const std::string& name, const OrderedJson& value,
                                      bool grid) {
  const std::string key = Key(name);
  ParameterDomain d;
  d.name = name;
  std::optional<std::string> path = jobs::ResolveParameterPath(name);
  if (!path) {
    return Status::InvalidArgument(
        key +
        ": unknown parameter (use a known name such as lr, or a config path such as "
        "train." +
        name + ")");
  }
  d.path = *path;
  if (value.is_array() && !value.empty()) {
    for (const OrderedJson& v : value) d.values.emplace_back(v);  // ordered -> plain json
    return d;
  }
  if (grid) return Status::InvalidArgument(key + ": grid values must be a non-empty list");
  if (!value.is_object()) {
    return Status::InvalidArgument(
        key + ": must be a non-empty list or a range {min, max, log, type}, got " + value.dump());
  }
  LATTICE_RETURN_IF_ERROR(ParseRange(value, key, &d));
  return d;
}

// Uniform double in [0, 1) from the top 53 bits of one draw.
double Uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

nlohmann::json DrawRange(const ParameterDomain& d, std::mt19937_64& rng) {
  if (d.is_int) {
    const auto lo = static_cast<int64_t>(d.min);
    const auto hi = static_cast<int64_t>(d.max);
    if (!d.log) {
      const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
      return lo + static_cast<int64_t>(rng() % span);
    }
    // Log-uniform over [lo, hi + 1), floored: each integer weighted by its log width.
    const double x =
        std::exp(std::log(d.min) + Uniform01(rng) * (std::log(d.max + 1) - std::log(d.min)));
    return std::clamp(static_cast<int64_t>(std::floor(x)), lo, hi);
  }
  const double u = Uniform01(rng);
  const double x = d.log ? std::exp(std::log(d.min) + u * (std::log(d.max) - std::log(d.min)))
                         : (1 - u) * d.min + u * d.max;  // no overflow for huge ranges
  return std::clamp(x, d.min, d.max);
}

}  // namespace

StatusOr<SearchSpace> ParseSearchSpace(const OrderedJson& parameters, const std::string& method) {
  if (method != "grid" && method != "random") {
    return Status::InvalidArgument("search.method: must be grid or random, got '" + method + "'");
  }
  if (!parameters.is_object()) {
    return Status::InvalidArgument("search.parameters: must be a mapping of name -> values");
  }
  if (parameters.empty()) return Status::InvalidArgument("search.parameters: must not be empty");
  SearchSpace space;
  for (const auto& item : parameters.items()) {
    LATTICE_ASSIGN_OR_RETURN(ParameterDomain d,
                             ParseDomain(item.key(), item.value(), method == "grid"));
    for (const ParameterDomain& prev : space.parameters) {
      if (PathsOverlap(prev.path, d.path)) {
        return Status::InvalidArgument(Key(d.name) + ": sets " + d.path +
                                       ", which overlaps parameter " + prev.name + " (" +
                                       prev.path + ")");
      }
    }
    space.parameters.push_back(std::move(d));
  }
  return space;
}

uint64_t GridSize(const SearchSpace& space) {
  uint64_t n = 1;
  for (const ParameterDomain& d : space.parameters) {
    const uint64_t k = d.kind == ParameterDomain::Kind::kChoice ? d.values.size() : 1;
    if (k != 0 && n > std::numeric_limits<uint64_t>::max() / k) {
      return std::numeric_limits<uint64_t>::max();
    }
    n *= k;
  }
  return n;
}

StatusOr<std::vector<nlohmann::json>> GridSearcher::Expand() const {
  for (const ParameterDomain& d : space_.parameters) {
    if (d.kind != ParameterDomain::Kind::kChoice || d.values.empty()) {
      return Status::InvalidArgument(Key(d.name) + ": grid values must be a non-empty list");
    }
  }
  const uint64_t n = GridSize(space_);
  if (n > kMaxTrialsPerSweep) {
    return Status::InvalidArgument("search.parameters: grid has " + std::to_string(n) +
                                   " points, more than the limit of " +
                                   std::to_string(kMaxTrialsPerSweep));
  }
  std::vector<nlohmann::json> points;
  points.reserve(n);
  std::vector<size_t> index(space_.parameters.size(), 0);  // odometer, last digit fastest
  for (uint64_t p = 0; p < n; ++p) {
    nlohmann::json point = nlohmann::json::object();
    for (size_t i = 0; i < index.size(); ++i) {
      point[space_.parameters[i].name] = space_.parameters[i].values[index[i]];
    }
    points.push_back(std::move(point));
    for (size_t i = index.size(); i-- > 0;) {
      if (++index[i] < space_.parameters[i].values.size()) break;
      index[i] = 0;
    }
  }
  return points;
}

StatusOr<std::vector<nlohmann::json>> RandomSearcher::Expand() const {
  if (max_trials_ < 1 || static_cast<uint64_t>(max_trials_) > kMaxTrialsPerSweep) {
    return Status::InvalidArgument("search.max_trials: must be in [1, " +
                                   std::to_string(kMaxTrialsPerSweep) + "], got " +
                                   std::to_string(max_trials_));
  }
  std::mt19937_64 rng(seed_);
  std::vector<nlohmann::json> points;
  points.reserve(static_cast<size_t>(max_trials_));
  for (int64_t t = 0; t < max_trials_; ++t) {
    nlohmann::json point = nlohmann::json::object();
    for (const ParameterDomain& d : space_.parameters) {
      if (d.kind == ParameterDomain::Kind::kChoice) {
        point[d.name] = d.values[rng() % d.values.size()];
      } else {
        point[d.name] = DrawRange(d, rng);
      }
    }
    points.push_back(std::move(point));
  }
  return points;
}

StatusOr<std::unique_ptr<Searcher>> MakeSearcher(const std::string& method, SearchSpace space,
                                                 uint64_t seed, int64_t max_trials) {
  if (method == "grid") return std::unique_ptr<Searcher>(new GridSearcher(std::move(space)));
  if (method == "random") {
    return std::unique_ptr<Searcher>(new RandomSearcher(std::move(space), seed, max_trials));
  }
  return Status::InvalidArgument("search.method: must be grid or random, got '" + method + "'");
}

}  // namespace lattice::scheduler
