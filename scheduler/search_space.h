// Search spaces and searchers: what values a sweep's parameters take, and the list of
// points (one per trial) that a grid or random search expands to.
//
// A search space is the validated form of a spec's `search.parameters` mapping, with the
// parameters in the order they were written:
//
//   grid:    every parameter is a non-empty list          lr: [1.0e-3, 7.0e-4]
//   random:  a non-empty list (chosen uniformly), or a range
//            {min: 1.0e-4, max: 1.0e-1, log: true, type: float}   (log, type optional;
//            defaults log: false, type: float; type: int needs integer min and max)
//
// Expansion is deterministic:
//   * grid: cartesian product, parameters in spec order, the LAST parameter varies
//     fastest (so the first point takes every parameter's first value);
//   * random: one std::mt19937_64 seeded with `search.seed`; for each trial, each
//     parameter in spec order draws from it. The draws are computed here from raw 64-bit
//     outputs (not std::*_distribution, whose results differ between standard libraries),
//     so a seed gives the same points on every platform.
//
// A point is a JSON object {parameter name as written -> value}; ints stay ints.
//
// Thread-safety: all types are values; searchers are immutable after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace lattice::scheduler {

// Largest grid (number of points) a spec may expand to; also the cap on random max_trials.
inline constexpr uint64_t kMaxTrialsPerSweep = 100000;

// One parameter's domain.
struct ParameterDomain {
  enum class Kind { kChoice, kRange };

  std::string name;  // as written in the spec ("lr", "model.hidden")
  std::string path;  // config path it sets (jobs::ResolveParameterPath), e.g. "train.lr"
  Kind kind = Kind::kChoice;
  std::vector<nlohmann::json> values;  // kChoice: the values, in spec order
  double min = 0;                      // kRange: inclusive bounds
  double max = 0;
  bool log = false;     // kRange: log-uniform (min > 0)
  bool is_int = false;  // kRange: integer values in [min, max]
};

struct SearchSpace {
  std::vector<ParameterDomain> parameters;  // in spec order
};

// Validates `parameters` (the spec's search.parameters, key order preserved) for
// `method` ("grid" or "random") and resolves each name to its config path.
// Errors: InvalidArgument naming the key, e.g.
//   "search.parameters.lr: grid values must be a non-empty list",
//   "search.parameters.lr: min must be < max, got min=1 max=0.1",
//   "search.parameters.foo: unknown parameter ...".
StatusOr<SearchSpace> ParseSearchSpace(const nlohmann::ordered_json& parameters,
                                       const std::string& method);

// Number of grid points (product of list sizes), saturating at UINT64_MAX.
// Choice parameters only; a range parameter counts as 1.
uint64_t GridSize(const SearchSpace& space);

// Expands a search space into the points to run, one per trial, in trial order.
class Searcher {
 public:
  virtual ~Searcher() = default;
  // InvalidArgument when the expansion is not allowed (grid over a range, too many
  // points); otherwise the points in deterministic order.
  virtual StatusOr<std::vector<nlohmann::json>> Expand() const = 0;
};

// Cartesian product of choice parameters; last parameter fastest.
class GridSearcher : public Searcher {
 public:
  explicit GridSearcher(SearchSpace space) : space_(std::move(space)) {}
  StatusOr<std::vector<nlohmann::json>> Expand() const override;

 private:
  SearchSpace space_;
};

// `max_trials` independent draws from a generator seeded with `seed`.
class RandomSearcher : public Searcher {
 public:
  RandomSearcher(SearchSpace space, uint64_t seed, int64_t max_trials)
      : space_(std::move(space)), seed_(seed), max_trials_(max_trials) {}
  StatusOr<std::vector<nlohmann::json>> Expand() const override;

 private:
  SearchSpace space_;
  uint64_t seed_;
  int64_t max_trials_;
};

// Picks the searcher for `method`: "grid" ignores seed and max_trials; "random" uses
// both. Unknown method -> InvalidArgument("search.method: ...").
StatusOr<std::unique_ptr<Searcher>> MakeSearcher(const std::string& method, SearchSpace space,
                                                 uint64_t seed, int64_t max_trials);

}  // namespace lattice::scheduler
