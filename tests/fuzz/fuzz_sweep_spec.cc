// Fuzz target: the sweep spec parser (scheduler/sweep_spec.h), YAML and JSON, all kinds
// (train, noop, distill, and embed: scheduler/embed_spec.h), as POST /v1/sweeps runs it on
// a request body.
//
// Input: the spec text.
// Files: specs name dataset and corpus files; the parser stats them and reads corpus
// headers. Reads are confined (jobs::SetDataRoots) to the example data sets' folders
// (/usr/share/datasets, scikit-learn's data), so the example specs validate and nothing
// else on the machine is read; without those folders, to an empty temp folder.
// Budget: a spec the parser accepts may expand to 100,000 trials (the designed limit),
// which under ASan + UBSan + coverage takes ~30 s (a release build: a small fraction of
// that). Such inputs are skipped (Expensive below) so that -timeout flags only real
// hangs; specs over the limits are still parsed, as they are rejected before expanding.
// Checks, besides ASan / UBSan:
//   * no exception escapes ParseSweepSpec (the route would answer 500);
//   * an accepted spec has one trial config per point, at least one point, and stays
//     within kMaxSweepValues;
//   * the normalised spec (SweepSpec::spec, what the coordinator stores) serialises to
//     JSON and parses again into the same sweep (name, kind, method, number of trials).
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "jobs/data_roots.h"
#include "scheduler/internal/spec_document.h"
#include "scheduler/search_space.h"
#include "scheduler/sweep_spec.h"

namespace {

void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_sweep_spec: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Trials (or values to check) above which an accepted spec is skipped.
constexpr int64_t kBudget = 2000;

// True when `text` may be accepted and expand to more than kBudget trials: a grid whose
// lists multiply to (kBudget, kMaxTrialsPerSweep], random max_trials in that range or
// lists of more than kBudget values in all, or an embed spec with shard_size < 50 (the
// example corpora have up to 60,000 rows).
bool Expensive(const std::string& text) {
  auto doc = lattice::scheduler::internal::ParseSpecDocument(text);
  if (!doc.ok() || !doc->is_object()) return false;
  const auto& d = *doc;
  if (d.contains("shard_size") && d["shard_size"].is_number_integer() &&
      d["shard_size"].get<int64_t>() < 50) {
    return true;
  }
  if (!d.contains("search") || !d["search"].is_object()) return false;
  const auto& search = d["search"];
  const auto max = static_cast<double>(lattice::scheduler::kMaxTrialsPerSweep);
  if (search.contains("max_trials") && search["max_trials"].is_number_integer()) {
    const auto n = search["max_trials"].get<int64_t>();
    if (n > kBudget && n <= max) return true;
  }
  if (search.contains("parameters") && search["parameters"].is_object()) {
    double product = 1;
    double values = 0;
    for (const auto& item : search["parameters"].items()) {
      if (!item.value().is_array()) continue;
      product *= std::max<double>(1, static_cast<double>(item.value().size()));
      values += static_cast<double>(item.value().size());
    }
    if ((product > kBudget && product <= max) || values > kBudget) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::vector<std::string> roots;
  for (const char* dir : {"/usr/share/datasets", "/usr/lib/python3/dist-packages/sklearn/datasets/data"}) {
    if (access(dir, R_OK | X_OK) == 0) roots.push_back(dir);
  }
  if (roots.empty()) {
    static char empty[] = "/tmp/lattice-fuzz-XXXXXX";
    if (mkdtemp(empty) == nullptr) Fail("init", "mkdtemp failed");
    std::atexit([] { rmdir(empty); });
    roots.push_back(empty);
  }
  lattice::Status s = lattice::jobs::SetDataRoots(roots, {});
  if (!s.ok()) Fail("init", s.ToString());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (Expensive(text)) return 0;
  auto spec = lattice::scheduler::ParseSweepSpec(text);
  if (!spec.ok()) return 0;
  if (spec->points.empty() || spec->points.size() != spec->trial_configs.size()) {
    Fail("trials", std::to_string(spec->points.size()) + " points, " +
                       std::to_string(spec->trial_configs.size()) + " configs");
  }
  int64_t values = 0;
  for (const auto& config : spec->trial_configs) {
    values += lattice::scheduler::internal::CountSpecValues(config);
  }
  // Counted before expanding, per trial: the base plus the largest value of each
  // parameter (and 3 for an embed shard); the configs themselves may be a little larger.
  if (values > 2 * lattice::scheduler::kMaxSweepValues) {
    Fail("size", std::to_string(values) + " values in the trial configs");
  }
  const std::string stored = spec->spec.dump();  // throws on invalid UTF-8, as storing would
  auto again = lattice::scheduler::ParseSweepSpec(stored);
  if (!again.ok()) Fail("re-parse of the normalised spec", again.status().ToString() + "\n" + stored);
  if (again->name != spec->name || again->kind != spec->kind || again->method != spec->method ||
      again->points.size() != spec->points.size()) {
    Fail("re-parse of the normalised spec", "a different sweep:\n" + stored);
  }
  return 0;
}
