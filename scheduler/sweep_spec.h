// Sweep specs: parse a YAML or JSON sweep document, validate it, expand it into trials.
//
//   name: digits-probe-grid            # required, [A-Za-z0-9_.-]{1,64}
//   kind: train                        # required: train | embed | noop
//   seed: 42                           # optional int
//   dataset: {...}  model: {...}  train: {...}   # job sections, passed to the job config
//   search:                            # required, except for kinds noop and distill (one trial)
//     method: grid | random
//     metric: {name: val_accuracy, goal: maximize | minimize}   # this is the default
//     parameters: {lr: [1.0e-3, 7.0e-4], hidden: [[128], [256, 128]]}
//     seed: 7                          # random only; default 0
//     max_trials: 20                   # random only, required, >= 1; rejected for grid
//     (train / distill: metric.name must be a result metric of the job, jobs::CheckSweepMetric;
//      an unknown name is rejected listing the valid ones)
//   repeats: 3                         # optional int in [1, 1000]: each point runs 3 times,
//                                      # seeds seed, seed+1, seed+2 (seed becomes a parameter)
//   max_concurrent_trials: 8           # optional int >= 1; default unlimited (0)
//   max_attempts: 3                    # optional int >= 1; default 3
//   resources: {workers_per_trial: 1}  # optional int in [1, 1024]; default 1. k > 1: each
//                                      # trial runs on a gang of k workers at once (train /
//                                      # distill: data-parallel; noop: every member sleeps);
//                                      # not for embed. More than the cluster's workers is
//                                      # refused at submit (the coordinator knows that).
//
// Protocol of ParseSweepSpec:
//   1. The text (UTF-8) is read as JSON when it is a JSON object, else by yaml-cpp (JSON
//      is YAML, but yaml-cpp rejects surrogate-pair escapes); scheduler/internal/
//      spec_document.h. A YAML error becomes InvalidArgument "spec: line L, column C:
//      <what>" (1-based). Scalars keep their YAML 1.2 core type: ints stay ints, floats
//      floats, true/false bools, null/~ null, quoted text strings. Aliases are expanded;
//      a recursive alias, .nan/.inf, and a document over the limits below are rejected
//      before anything else is looked at.
//   2. Top-level keys, types and ranges are checked; search.parameters is validated by
//      ParseSearchSpace (search_space.h), which resolves each name to a config path.
//   3. The searcher expands the points (grid: at most 100,000; random: max_trials), once
//      trials x values per trial config is known to be within kMaxSweepValues.
//   4. Each trial config = the spec minus name/search/max_concurrent_trials/max_attempts/
//      resources, with the point applied (ApplyParameters); each goes through
//      jobs::ValidateJobConfig, whose error is returned as "trial 3 (lr=-1): <error>".
//   5. Random search only: every value a draw could give (each choice, each range bound)
//      is validated the same way in trial 0's point, so a bad value is rejected at
//      submit even when no trial drew it ("search.parameters.dropout: value 2 can be
//      drawn, but a trial with it is invalid: model.dropout: ...").
// Every error is InvalidArgument (except file errors of LoadSweepSpecFile) and its
// message starts with the key path it is about ("search.parameters.lr: ...").
//
// Thread-safety: pure functions. ValidateJobConfig stats dataset files, so parsing a spec
// touches the file system read-only.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/job_kind.h"
#include "common/status.h"

namespace lattice::scheduler {

// Defaults and limits.
inline constexpr int kDefaultMaxAttempts = 3;
inline constexpr const char* kDefaultMetric = "val_accuracy";

// Limits on the document, so that no spec (e.g. a few hundred bytes of nested YAML aliases
// that expand to 10^8 values) costs more than they allow. The example specs use < 100
// values, < 6 levels and < 20 keys per mapping.
// Values (mappings, lists and scalars, keys not counted) after aliases are expanded.
inline constexpr int64_t kMaxSpecValues = 100000;
// Mappings/lists nested in each other; the document itself is level 1.
inline constexpr int kMaxSpecDepth = 64;
// Keys of one mapping (search.parameters included).
inline constexpr int kMaxSpecKeysPerMapping = 1000;
// Values in all trial configs of a sweep together (trials x values per config, counted
// before expanding), which the coordinator keeps in memory: 100,000 trials (the most,
// kMaxTrialsPerSweep) of 50 values each.
inline constexpr int64_t kMaxSweepValues = 5000000;

// The most workers one trial may ask for (resources.workers_per_trial).
inline constexpr int kMaxWorkersPerTrial = 1024;

struct SweepSpec {
  std::string name;
  JobKind kind = JobKind::kTrain;
  // The validated spec, normalised to JSON with defaults filled in (search.metric,
  // search.seed for random, max_attempts). nlohmann::json sorts object keys, so the
  // parameter order is NOT kept here: re-expanding spec.dump() may order grid points
  // differently. Store points/trial_configs per trial; never re-expand a stored spec.
  nlohmann::json spec;
  std::string method;      // "grid" or "random"; "" for a noop spec without search
  std::string metric;      // e.g. "val_accuracy"
  bool maximize = true;    // goal of the metric
  int max_concurrent = 0;  // 0 = unlimited
  int max_attempts = kDefaultMaxAttempts;
  int workers_per_trial = 1;  // resources.workers_per_trial: the gang size
  std::vector<std::string> parameter_names;   // in spec order (JSON objects sort keys)
  std::vector<nlohmann::json> points;         // params per trial, in expansion order
  std::vector<nlohmann::json> trial_configs;  // job config per trial, same order as points
};

// Parses and validates YAML or JSON text; see the protocol above.
StatusOr<SweepSpec> ParseSweepSpec(const std::string& text);

// Reads `path` and parses it. NotFound "spec file <path>: not found" if it does not
// exist, IoError if it cannot be read; a parse error is returned with the file name
// as context ("<path>: search.method: ...").
StatusOr<SweepSpec> LoadSweepSpecFile(const std::string& path);

// Makes the spec's relative file paths absolute against `base_dir` (an absolute directory:
// the spec file's), as `lattice submit` does before sending a spec: every path-valued field
// of the job sections (jobs::IsPathField: dataset files, model / teacher / encoder files,
// corpus files and folders), also inside search.parameters values that set such a field
// (encoder.path: [a.pt, b.pt], or an object such as dataset: [{features: x.npy, ...}]).
// Absolute paths, empty strings and non-string values are left as they are. Returns the
// document as JSON text (key order kept; YAML comments and anchors are gone). Errors: the
// document's parse errors (ParseSweepSpec gives the same ones).
StatusOr<std::string> ResolveSpecPaths(const std::string& text, const std::string& base_dir);

// Returns `base` with each params[name] set at jobs::ResolveParameterPath(name) (a
// dotted path, e.g. "train.lr"), creating objects on the way; an intermediate value that
// is not an object is replaced by one. A name that does not resolve is used as the path
// itself (ParseSweepSpec rejects such names before this is called).
nlohmann::json ApplyParameters(const nlohmann::json& base, const nlohmann::json& params);

// "lr=0.001, dropout=0.1": a point in the given parameter order (strings unquoted);
// for messages and logs.
std::string DescribePoint(const nlohmann::json& params, const std::vector<std::string>& order);

}  // namespace lattice::scheduler
