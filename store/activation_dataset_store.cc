#include "store/activation_dataset_store.h"

namespace lattice {
namespace {

constexpr const char* kItemsCf = "items";
constexpr const char* kPrefix = "dataset/";

}  // namespace

const char* DatasetStateName(DatasetState state) {
  switch (state) {
    case DatasetState::kWriting: return "writing";
    case DatasetState::kReady: return "ready";
    case DatasetState::kFailed: return "failed";
  }
  return "unknown";
}

nlohmann::json ActivationDatasetRecord::ToJson() const {
  return {{"name", name},       {"sweep", sweep.ToString()},   {"state", DatasetStateName(state)},
          {"rows", rows},       {"dim", dim},                  {"labels", labels},
          {"source", source},   {"created_ms", created_ms},    {"finished_ms", finished_ms},
          {"message", message}};
}

StatusOr<ActivationDatasetRecord> ActivationDatasetRecord::FromJson(const nlohmann::json& j) {
  ActivationDatasetRecord r;
  try {
    r.name = j.at("name").get<std::string>();
    auto sweep = SweepId::Parse(j.at("sweep").get<std::string>());
    if (!sweep) return Status::DataLoss("dataset record " + r.name + ": bad sweep id");
    r.sweep = *sweep;
    const std::string state = j.at("state").get<std::string>();
    r.state = state == "ready"   ? DatasetState::kReady
              : state == "failed" ? DatasetState::kFailed
                                  : DatasetState::kWriting;
    r.rows = j.at("rows").get<int64_t>();
    r.dim = j.at("dim").get<int>();
    r.labels = j.at("labels").get<bool>();
    r.source = j.value("source", nlohmann::json::object());
    r.created_ms = j.value("created_ms", int64_t{0});
    r.finished_ms = j.value("finished_ms", int64_t{0});
    r.message = j.value("message", "");
  } catch (const std::exception& e) {
    return Status::DataLoss(std::string("dataset record: ") + e.what());
  }
  return r;
}

void ActivationDatasetStore::Put(StateWriteBatch& batch, const ActivationDatasetRecord& record) {
  batch.PutRaw(kItemsCf, kPrefix + record.name, record.ToJson().dump());
}

StatusOr<ActivationDatasetRecord> ActivationDatasetStore::Get(const std::string& name) const {
  auto value = store_->Get(kItemsCf, kPrefix + name);
  if (!value.ok()) {
    if (value.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("no activation dataset named \"" + name + "\"");
    }
    return value.status();
  }
  nlohmann::json j = nlohmann::json::parse(*value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::DataLoss("dataset record " + name + ": not JSON");
  return ActivationDatasetRecord::FromJson(j);
}

StatusOr<std::vector<ActivationDatasetRecord>> ActivationDatasetStore::List() const {
  LATTICE_ASSIGN_OR_RETURN(auto entries, store_->Scan(kItemsCf, kPrefix));
  std::vector<ActivationDatasetRecord> out;
  for (const auto& [key, value] : entries) {
    nlohmann::json j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Status::DataLoss("dataset record " + key + ": not JSON");
    LATTICE_ASSIGN_OR_RETURN(ActivationDatasetRecord r, ActivationDatasetRecord::FromJson(j));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace lattice
