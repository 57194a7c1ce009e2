// Job configs: validation of a trial's job config, torch-free (library lattice_jobs_config).
//
// A trial config is the sweep spec with the trial's parameters applied, minus the
// scheduler-only sections (search, max_*, resources):
//
//   {"kind": "train",
//    "seed": 42,                                   // optional, default 0
//    "dataset": {...}, "model": {...}, "train": {...}}
//
// The scheduler calls ValidateJobConfig on every expanded trial config at submit time,
// so a bad value anywhere in a grid (lr: -1) is rejected before anything is stored.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice::jobs {

// Checks every key and value of `config` for its kind. Unknown keys, wrong types, bad
// ranges and missing dataset files give InvalidArgument whose message names the key
// path, e.g. "train.lr: must be > 0, got -1" or "dataset.features: file not found: x.npy".
Status ValidateJobConfig(const nlohmann::json& config);
// The same for the many configs of one sweep: dataset and teacher files already in
// `*found_files` are not looked up again, and those found now are added (a 100,000-point
// grid stats its dataset once, not 100,000 times).
Status ValidateJobConfig(const nlohmann::json& config, std::set<std::string>* found_files);

// Checks that a sweep of trials with this config can rank them by `metric`: for train and
// distill jobs it must be one of jobs::ResultMetricNames (jobs/train_config.h), else
// InvalidArgument "search.metric.name: \"val_f2\" is not a metric of a train job (one of:
// ...)"; test_* metrics get their own message (they never select). Other kinds: any name.
Status CheckSweepMetric(const nlohmann::json& config, const std::string& metric);

// Maps a search parameter name to the config path it sets: a dotted name is a path
// already ("model.hidden", "train.schedule.type", "train.clip_grad_norm"); short aliases: lr, weight_decay, batch_size, epochs, momentum,
// label_smoothing, optimizer -> "train.<name>"; dropout, hidden, batchnorm -> "model.<name>";
// model -> "model.type"; expansion -> "model.expansion", l1_coefficient -> "train.l1_coefficient"
// (sae); seed, sleep_ms (noop), pooling, normalize (embed) -> top level.
// Note: "batch_size" always maps to train.batch_size, so an embed job's top-level
// batch_size cannot be swept by name. Returns nullopt for an unknown bare name.
std::optional<std::string> ResolveParameterPath(const std::string& name);

// True when the config value at `config_path` (dotted, as ResolveParameterPath gives it)
// names a file or folder: dataset.{features,labels,images,path} (also under
// dataset.validation and dataset.test), model.path, teacher.path, encoder.path,
// corpus.{images,features,labels,dir,ids}, crash.once_file, and an embed spec's
// metric.qrels (a scheduler section, not a job config field). The CLI makes these
// absolute against the spec file's directory before it submits (scheduler::ResolveSpecPaths).
bool IsPathField(const std::string& config_path);

}  // namespace lattice::jobs
