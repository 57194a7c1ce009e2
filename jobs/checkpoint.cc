#include "jobs/checkpoint.h"

namespace lattice::jobs {

using nlohmann::json;

json CheckpointHeader::ToJson() const {
  json j = {{"format", kCheckpointFormat}, {"config", config}, {"in_dim", in_dim},
            {"classes", classes},          {"epochs", epochs}, {"metrics", metrics}};
  if (!resume.is_null()) j["resume"] = resume;
  return j;
}

StatusOr<CheckpointHeader> ReadCheckpointHeader(const std::string& blob, size_t* archive_offset) {
  const size_t nl = blob.find('\n');
  if (nl == std::string::npos) return Status::InvalidArgument("checkpoint: no header line");
  LATTICE_ASSIGN_OR_RETURN(CheckpointHeader h,
                           ParseCheckpointHeaderLine(std::string_view(blob).substr(0, nl)));
  if (archive_offset != nullptr) *archive_offset = nl + 1;
  return h;
}

StatusOr<CheckpointHeader> ParseCheckpointHeaderLine(std::string_view line) {
  if (line.empty()) return Status::InvalidArgument("checkpoint: no header line");
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("format", "") != kCheckpointFormat) {
    return Status::InvalidArgument(std::string("checkpoint: not a ") + kCheckpointFormat +
                                   " header");
  }
  CheckpointHeader h;
  try {
    h.config = j.at("config");
    h.in_dim = j.at("in_dim").get<int64_t>();
    h.classes = j.at("classes").get<int64_t>();
    h.epochs = j.value("epochs", 0);
    h.metrics = j.value("metrics", json::object());
    h.resume = j.value("resume", json());
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("checkpoint: bad header: ") + e.what());
  }
  if (!h.config.is_object() || h.in_dim < 1 || h.classes < 1) {
    return Status::InvalidArgument("checkpoint: bad header: config must be an object, in_dim "
                                   "and classes >= 1");
  }
  return h;
}

StatusOr<int64_t> ResolveLayer(int64_t layer, int64_t hidden_layers, const std::string& path) {
  const int64_t last = hidden_layers + 1;  // the logits
  const int64_t resolved = layer < 0 ? layer + last + 1 : layer;
  if (resolved < 0 || resolved > last) {
    return Status::InvalidArgument(
        path + ": " + std::to_string(layer) + " is out of range for a model with " +
        std::to_string(hidden_layers) + " hidden layer" + (hidden_layers == 1 ? "" : "s") +
        " (" + std::to_string(-(last + 1)) + " .. " + std::to_string(last) + ")");
  }
  return resolved;
}

}  // namespace lattice::jobs
