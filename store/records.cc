#include "store/records.h"

#include <chrono>
#include <cmath>
#include <iterator>
#include <limits>

namespace lattice {
namespace {

using nlohmann::json;

constexpr const char* kSweepStateNames[] = {"running", "completed", "cancelled", "failed"};
constexpr const char* kTrialStateNames[] = {"queued", "running", "completed", "failed",
                                            "cancelled"};

// Field readers. A missing optional field leaves *out unchanged; a present field of the
// wrong type (or out of range) is InvalidArgument naming the field.
Status TypeError(const char* key, const char* want, const json& v) {
  return Status::InvalidArgument(std::string(key) + ": expected " + want + ", got " +
                                 v.type_name());
}

const json* Find(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

Status Missing(const char* key) {
  return Status::InvalidArgument(std::string(key) + ": required field is missing");
}

Status ReadString(const json& j, const char* key, std::string* out, bool required = false) {
  const json* v = Find(j, key);
  if (v == nullptr) return required ? Missing(key) : Status::Ok();
  if (!v->is_string()) return TypeError(key, "string", *v);
  *out = v->get<std::string>();
  return Status::Ok();
}

Status ReadBool(const json& j, const char* key, bool* out) {
  const json* v = Find(j, key);
  if (v == nullptr) return Status::Ok();
  if (!v->is_boolean()) return TypeError(key, "boolean", *v);
  *out = v->get<bool>();
  return Status::Ok();
}

// Reads an integer in [lo, hi].
Status ReadInteger(const json& j, const char* key, int64_t lo, int64_t hi, int64_t* out) {
  const json* v = Find(j, key);
  if (v == nullptr) return Status::Ok();
  if (!v->is_number_integer()) return TypeError(key, "integer", *v);
  bool in_range;
  int64_t value = 0;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(hi);
    value = in_range ? static_cast<int64_t>(u) : 0;
  } else {
    value = v->get<int64_t>();
    in_range = value >= lo && value <= hi;
  }
  if (!in_range) {
    return Status::InvalidArgument(std::string(key) + ": out of range [" + std::to_string(lo) +
                                   ", " + std::to_string(hi) + "]: " + v->dump());
  }
  *out = value;
  return Status::Ok();
}

template <typename T>
Status ReadInt(const json& j, const char* key, T* out) {
  int64_t v = *out;
  LATTICE_RETURN_IF_ERROR(
      ReadInteger(j, key, std::numeric_limits<T>::min(), std::numeric_limits<T>::max(), &v));
  *out = static_cast<T>(v);
  return Status::Ok();
}

Status ReadJson(const json& j, const char* key, json* out) {
  const json* v = Find(j, key);
  if (v != nullptr) *out = *v;
  return Status::Ok();
}

Status RequireObject(const json& j, const char* what) {
  if (!j.is_object()) {
    return Status::InvalidArgument(std::string(what) + ": expected a JSON object, got " +
                                   j.type_name());
  }
  return Status::Ok();
}

// Reads and cross-checks the trial identity: "id" (required), "sweep" and "index" (optional,
// must agree with "id" when present).
Status ReadTrialId(const json& j, const char* key, TrialId* out) {
  std::string text;
  LATTICE_RETURN_IF_ERROR(ReadString(j, key, &text, /*required=*/true));
  auto id = TrialId::Parse(text);
  if (!id) return Status::InvalidArgument(std::string(key) + ": not a trial id: " + text);
  *out = *id;
  return Status::Ok();
}

Status CheckTrialIdParts(const json& j, const TrialId& id) {
  std::string sweep = id.sweep.ToString();
  LATTICE_RETURN_IF_ERROR(ReadString(j, "sweep", &sweep));
  int64_t index = id.index;
  LATTICE_RETURN_IF_ERROR(ReadInteger(j, "index", 0, 0xFFFFFFFFll, &index));
  if (sweep != id.sweep.ToString() || index != id.index) {
    return Status::InvalidArgument("sweep/index (" + sweep + ", " + std::to_string(index) +
                                   ") disagree with id " + id.ToString());
  }
  return Status::Ok();
}

StatusOr<SweepRecord> SweepFromJson(const json& j) {
  LATTICE_RETURN_IF_ERROR(RequireObject(j, "sweep record"));
  SweepRecord r;
  std::string text;
  LATTICE_RETURN_IF_ERROR(ReadString(j, "id", &text, /*required=*/true));
  auto id = SweepId::Parse(text);
  if (!id) return Status::InvalidArgument("id: not a sweep id: " + text);
  r.id = *id;
  LATTICE_RETURN_IF_ERROR(ReadString(j, "name", &r.name));
  text.clear();
  LATTICE_RETURN_IF_ERROR(ReadString(j, "kind", &text));
  if (!text.empty()) {
    auto kind = ParseJobKind(text);
    if (!kind) return Status::InvalidArgument("kind: unknown job kind: " + text);
    r.kind = *kind;
  }
  LATTICE_RETURN_IF_ERROR(ReadJson(j, "spec", &r.spec));
  LATTICE_RETURN_IF_ERROR(ReadString(j, "state", &text, /*required=*/true));
  auto state = ParseSweepState(text);
  if (!state) return Status::InvalidArgument("state: unknown sweep state: " + text);
  r.state = *state;
  LATTICE_RETURN_IF_ERROR(ReadString(j, "metric", &r.metric));
  LATTICE_RETURN_IF_ERROR(ReadBool(j, "maximize", &r.maximize));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "num_trials", &r.num_trials));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "max_concurrent", &r.max_concurrent));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "max_attempts", &r.max_attempts));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "created_ms", &r.created_ms));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "finished_ms", &r.finished_ms));
  LATTICE_RETURN_IF_ERROR(ReadString(j, "message", &r.message));
  return r;
}

Status ReadObjective(const json& j, std::optional<double>* out) {
  const json* v = Find(j, "objective");
  if (v == nullptr || v->is_null()) {
    out->reset();
    return Status::Ok();
  }
  if (!v->is_number()) return TypeError("objective", "number or null", *v);
  *out = v->get<double>();
  return Status::Ok();
}

StatusOr<TrialRecord> TrialFromJson(const json& j) {
  LATTICE_RETURN_IF_ERROR(RequireObject(j, "trial record"));
  TrialRecord r;
  LATTICE_RETURN_IF_ERROR(ReadTrialId(j, "id", &r.id));
  LATTICE_RETURN_IF_ERROR(CheckTrialIdParts(j, r.id));
  LATTICE_RETURN_IF_ERROR(ReadJson(j, "params", &r.params));
  LATTICE_RETURN_IF_ERROR(ReadJson(j, "config", &r.config));
  std::string text;
  LATTICE_RETURN_IF_ERROR(ReadString(j, "state", &text, /*required=*/true));
  auto state = ParseTrialState(text);
  if (!state) return Status::InvalidArgument("state: unknown trial state: " + text);
  r.state = *state;
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "attempts", &r.attempts));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "preemptions", &r.preemptions));  // absent before: 0
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "worker", &r.worker.value));
  LATTICE_RETURN_IF_ERROR(ReadJson(j, "metrics", &r.metrics));
  LATTICE_RETURN_IF_ERROR(ReadObjective(j, &r.objective));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "epochs_done", &r.epochs_done));
  LATTICE_RETURN_IF_ERROR(ReadString(j, "error", &r.error));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "started_ms", &r.started_ms));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "finished_ms", &r.finished_ms));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "checkpoint_bytes", &r.checkpoint_bytes));
  return r;
}

// Metric values: numbers, or null for a non-finite value (JSON has no NaN; nlohmann writes
// NaN and infinities as null, so they come back as NaN).
Status ReadMetricValues(const json& j, std::map<std::string, double>* out) {
  const json* v = Find(j, "values");
  if (v == nullptr) return Status::Ok();
  if (!v->is_object()) return TypeError("values", "object", *v);
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (it->is_null()) {
      (*out)[it.key()] = std::numeric_limits<double>::quiet_NaN();
    } else if (it->is_number()) {
      (*out)[it.key()] = it->get<double>();
    } else {
      return TypeError(("values." + it.key()).c_str(), "number", *it);
    }
  }
  return Status::Ok();
}

StatusOr<EpochMetrics> EpochMetricsFromJson(const json& j) {
  LATTICE_RETURN_IF_ERROR(RequireObject(j, "epoch metrics"));
  EpochMetrics m;
  LATTICE_RETURN_IF_ERROR(ReadTrialId(j, "trial", &m.trial));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "attempt", &m.attempt));
  LATTICE_RETURN_IF_ERROR(ReadInt(j, "epoch", &m.epoch));
  LATTICE_RETURN_IF_ERROR(ReadMetricValues(j, &m.values));
  return m;
}

StatusOr<SweepCounts> SweepCountsFromJson(const json& j) {
  LATTICE_RETURN_IF_ERROR(RequireObject(j, "sweep counts"));
  SweepCounts c;
  std::string text;
  LATTICE_RETURN_IF_ERROR(ReadString(j, "sweep", &text, /*required=*/true));
  auto id = SweepId::Parse(text);
  if (!id) return Status::InvalidArgument("sweep: not a sweep id: " + text);
  c.sweep = *id;
  for (size_t i = 0; i < c.by_state.size(); ++i) {
    LATTICE_RETURN_IF_ERROR(ReadInt(j, kTrialStateNames[i], &c.by_state[i]));
  }
  const json* best = Find(j, "best");
  if (best == nullptr || best->is_null()) return c;
  LATTICE_RETURN_IF_ERROR(RequireObject(*best, "best"));
  TrialId trial;
  LATTICE_RETURN_IF_ERROR(ReadTrialId(*best, "trial", &trial));
  std::optional<double> objective;
  LATTICE_RETURN_IF_ERROR(ReadObjective(*best, &objective));
  if (!objective) return Status::InvalidArgument("best.objective: required field is missing");
  c.best = trial;
  c.best_objective = *objective;
  LATTICE_RETURN_IF_ERROR(ReadJson(*best, "params", &c.best_params));
  return c;
}

// nlohmann only throws on our own bugs here (all types are checked first); keep the
// "never throws" promise anyway.
template <typename T, typename F>
StatusOr<T> CatchAll(F&& parse) {
  try {
    return parse();
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("unexpected JSON error: ") + e.what());
  }
}

}  // namespace

const char* SweepStateName(SweepState s) {
  auto i = static_cast<size_t>(s);
  return i < std::size(kSweepStateNames) ? kSweepStateNames[i] : "unknown";
}

const char* TrialStateName(TrialState s) {
  auto i = static_cast<size_t>(s);
  return i < std::size(kTrialStateNames) ? kTrialStateNames[i] : "unknown";
}

std::optional<SweepState> ParseSweepState(const std::string& s) {
  for (size_t i = 0; i < std::size(kSweepStateNames); ++i) {
    if (s == kSweepStateNames[i]) return static_cast<SweepState>(i);
  }
  return std::nullopt;
}

std::optional<TrialState> ParseTrialState(const std::string& s) {
  for (size_t i = 0; i < std::size(kTrialStateNames); ++i) {
    if (s == kTrialStateNames[i]) return static_cast<TrialState>(i);
  }
  return std::nullopt;
}

nlohmann::json SweepRecord::ToJson() const {
  return json{{"id", id.ToString()},
              {"name", name},
              {"kind", JobKindName(kind)},
              {"spec", spec},
              {"state", SweepStateName(state)},
              {"metric", metric},
              {"maximize", maximize},
              {"num_trials", num_trials},
              {"max_concurrent", max_concurrent},
              {"max_attempts", max_attempts},
              {"created_ms", created_ms},
              {"finished_ms", finished_ms},
              {"message", message}};
}

StatusOr<SweepRecord> SweepRecord::FromJson(const nlohmann::json& j) {
  auto r = CatchAll<SweepRecord>([&] { return SweepFromJson(j); });
  if (!r.ok()) return r.status().WithContext("sweep record");
  return r;
}

namespace {

// Every field of a trial record but its params and config (the big ones).
json TrialHead(const TrialRecord& t) {
  return json{{"id", t.id.ToString()},
              {"sweep", t.id.sweep.ToString()},
              {"index", t.id.index},
              {"state", TrialStateName(t.state)},
              {"attempts", t.attempts},
              {"preemptions", t.preemptions},
              {"worker", t.worker.value},
              {"metrics", t.metrics},
              {"objective", t.objective ? json(*t.objective) : json(nullptr)},
              {"epochs_done", t.epochs_done},
              {"error", t.error},
              {"started_ms", t.started_ms},
              {"finished_ms", t.finished_ms},
              {"checkpoint_bytes", t.checkpoint_bytes}};
}

}  // namespace

nlohmann::json TrialRecord::ToJson() const {
  json j = TrialHead(*this);
  j["params"] = params;
  j["config"] = config;
  return j;
}

std::string TrialRecord::Dump() const {
  std::string out = TrialHead(*this).dump();
  out.pop_back();  // the head's closing '}'
  out += ",\"config\":";
  out += config.dump();
  out += ",\"params\":";
  out += params.dump();
  out += '}';
  return out;
}

StatusOr<TrialRecord> TrialRecord::FromJson(const nlohmann::json& j) {
  auto r = CatchAll<TrialRecord>([&] { return TrialFromJson(j); });
  if (!r.ok()) return r.status().WithContext("trial record");
  return r;
}

nlohmann::json EpochMetrics::ToJson() const {
  json vals = json::object();
  for (const auto& [name, v] : values) vals[name] = std::isfinite(v) ? json(v) : json(nullptr);
  return json{
      {"trial", trial.ToString()}, {"attempt", attempt}, {"epoch", epoch}, {"values", vals}};
}

StatusOr<EpochMetrics> EpochMetrics::FromJson(const nlohmann::json& j) {
  auto r = CatchAll<EpochMetrics>([&] { return EpochMetricsFromJson(j); });
  if (!r.ok()) return r.status().WithContext("epoch metrics");
  return r;
}

void SweepCounts::Move(std::optional<TrialState> from, TrialState to) {
  if (from) {
    uint32_t& n = by_state[static_cast<size_t>(*from)];
    if (n > 0) --n;
  }
  ++by_state[static_cast<size_t>(to)];
}

bool SweepCounts::Consider(const TrialRecord& t, bool maximize) {
  if (t.state != TrialState::kCompleted || !t.objective || !std::isfinite(*t.objective)) {
    return false;
  }
  const double v = *t.objective;
  const bool better = !best || (maximize ? v > best_objective : v < best_objective) ||
                      (v == best_objective && t.id.index < best->index);
  if (!better) return false;
  best = t.id;
  best_objective = v;
  best_params = t.params;
  return true;
}

SweepCounts SweepCounts::FromTrials(SweepId sweep, const std::vector<TrialRecord>& trials,
                                    bool maximize) {
  SweepCounts c;
  c.sweep = sweep;
  for (const TrialRecord& t : trials) {
    c.Move(std::nullopt, t.state);
    c.Consider(t, maximize);
  }
  return c;
}

nlohmann::json SweepCounts::ToJson() const {
  json j = {{"sweep", sweep.ToString()}};
  for (size_t i = 0; i < by_state.size(); ++i) j[kTrialStateNames[i]] = by_state[i];
  j["best"] = best ? json{{"trial", best->ToString()},
                          {"objective", best_objective},
                          {"params", best_params}}
                   : json(nullptr);
  return j;
}

StatusOr<SweepCounts> SweepCounts::FromJson(const nlohmann::json& j) {
  auto r = CatchAll<SweepCounts>([&] { return SweepCountsFromJson(j); });
  if (!r.ok()) return r.status().WithContext("sweep counts");
  return r;
}

int64_t NowMillis() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace lattice
