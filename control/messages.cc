#include "control/messages.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace lattice {
namespace {

using nlohmann::json;

json TrialToJson(const TrialId& id) { return id.ToString(); }

StatusOr<TrialId> TrialFromJson(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) {
    return Status::InvalidArgument(std::string("message: missing trial id '") + key + "'");
  }
  auto id = TrialId::Parse(j[key].get<std::string>());
  if (!id) return Status::InvalidArgument("message: bad trial id " + j[key].dump());
  return *id;
}

json Encode(const RegisterMsg& m) {
  json j = {{"host", m.host}, {"threads", m.threads}, {"device", m.device}, {"pid", m.pid}};
  if (m.vram_total_bytes > 0) j["vram_total_bytes"] = m.vram_total_bytes;
  return j;
}
json Encode(const AssignMsg& m) {
  return {{"trial", TrialToJson(m.trial)}, {"attempt", m.attempt}, {"config", m.config}};
}
// Optional fields are written only when set and read with a default, so either side may
// be older than the other.
json Encode(const ProgressMsg& m) {
  json j = {{"trial", TrialToJson(m.trial)}, {"attempt", m.attempt}, {"epoch", m.epoch},
            {"metrics", m.metrics}};
  if (m.processed > 0) j["processed"] = m.processed;
  return j;
}
json Encode(const ResultMsg& m) {
  json j = {{"trial", TrialToJson(m.trial)}, {"attempt", m.attempt},
            {"code", static_cast<int>(m.code)}, {"metrics", m.metrics},
            {"epochs_done", m.epochs_done}, {"error", m.error},
            {"run_seconds", m.run_seconds}};
  if (m.processed > 0) j["processed"] = m.processed;
  if (m.preempted) j["preempted"] = true;
  return j;
}
json Encode(const HeartbeatMsg& m) {
  json j = {{"rss_bytes", m.rss_bytes}, {"vram_bytes", m.vram_bytes}};
  if (m.trial) j["trial"] = TrialToJson(*m.trial);
  if (m.task_restarts > 0) j["task_restarts"] = m.task_restarts;
  if (!m.fault.empty()) j["fault"] = m.fault;
  return j;
}
json Encode(const CancelMsg& m) { return {{"trial", TrialToJson(m.trial)}}; }
json Encode(const ShutdownMsg&) { return json::object(); }
json Encode(const DrainMsg&) { return json::object(); }
json Encode(const VectorsMsg& m) {
  json j = {{"trial", TrialToJson(m.trial)}, {"attempt", m.attempt}, {"begin", m.begin},
             {"rows", m.rows}, {"dim", m.dim}};
  if (!m.metadata.empty()) j["metadata"] = m.metadata;
  return j;
}

json Encode(const CheckpointMsg& m) {
  return {{"trial", TrialToJson(m.trial)}, {"attempt", m.attempt}, {"step", m.step},
          {"bytes", m.bytes.size()}, {"offset", m.offset}, {"total", m.total}};
}

std::string EncodePayload(const Message& m) {
  if (const auto* c = std::get_if<CheckpointMsg>(&m)) {
    std::string out = Encode(*c).dump();
    out.push_back('\n');
    out.append(c->bytes);
    return out;
  }
  if (const auto* v = std::get_if<VectorsMsg>(&m)) {
    std::string out = Encode(*v).dump();
    out.push_back('\n');
    const char* bytes = reinterpret_cast<const char*>(v->data.data());
    out.append(bytes, v->data.size() * sizeof(float));
    return out;
  }
  return std::visit([](const auto& v) { return Encode(v).dump(); }, m);
}

StatusOr<Message> DecodeVectors(const std::string& payload) {
  size_t nl = payload.find('\n');
  if (nl == std::string::npos) return Status::InvalidArgument("vectors message: no header");
  json j = json::parse(payload.substr(0, nl));
  LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
  VectorsMsg m{id, j.at("attempt").get<int>(), j.at("begin").get<int64_t>(),
               j.at("rows").get<int64_t>(), j.at("dim").get<int>(), {}, {}};
  if (j.contains("metadata")) {
    m.metadata = j["metadata"].get<std::vector<std::string>>();
    if (static_cast<int64_t>(m.metadata.size()) != m.rows) {
      return Status::InvalidArgument("vectors message: " + std::to_string(m.metadata.size()) +
                                     " metadata entries for " + std::to_string(m.rows) + " rows");
    }
  }
  size_t bytes = payload.size() - nl - 1;
  if (m.rows < 0 || m.dim < 0 ||
      bytes != static_cast<size_t>(m.rows) * static_cast<size_t>(m.dim) * sizeof(float)) {
    return Status::InvalidArgument("vectors message: " + std::to_string(bytes) +
                                   " payload bytes for " + std::to_string(m.rows) + " x " +
                                   std::to_string(m.dim) + " floats");
  }
  m.data.resize(bytes / sizeof(float));
  std::memcpy(m.data.data(), payload.data() + nl + 1, bytes);
  return Message(std::move(m));
}

StatusOr<Message> DecodeCheckpoint(const std::string& payload) {
  size_t nl = payload.find('\n');
  if (nl == std::string::npos) return Status::InvalidArgument("checkpoint message: no header");
  json j = json::parse(payload.substr(0, nl));
  LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
  const size_t bytes = payload.size() - nl - 1;
  if (j.at("bytes").get<size_t>() != bytes) {
    return Status::InvalidArgument("checkpoint message: " + std::to_string(bytes) +
                                   " payload bytes, header says " + j.at("bytes").dump());
  }
  CheckpointMsg m{id, j.at("attempt").get<int>(), payload.substr(nl + 1),
                  j.value("step", int64_t{0}), j.value("offset", int64_t{0}),
                  j.value("total", static_cast<int64_t>(bytes))};
  if (m.offset < 0 || m.total < m.offset || m.total - m.offset < static_cast<int64_t>(bytes)) {
    return Status::InvalidArgument("checkpoint message: piece of " + std::to_string(bytes) +
                                   " bytes at offset " + std::to_string(m.offset) +
                                   " does not fit a checkpoint of " + std::to_string(m.total));
  }
  return Message(std::move(m));
}

StatusOr<Message> Decode(MessageType type, const json& j) {
  switch (type) {
    case MessageType::kRegister:
      return Message(RegisterMsg{j.at("host").get<std::string>(), j.at("threads").get<int>(),
                                 j.at("device").get<std::string>(), j.value("pid", 0),
                                 j.value("vram_total_bytes", int64_t{0})});
    case MessageType::kAssign: {
      LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
      return Message(AssignMsg{id, j.at("attempt").get<int>(), j.at("config")});
    }
    case MessageType::kProgress: {
      LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
      return Message(ProgressMsg{id, j.at("attempt").get<int>(), j.at("epoch").get<int>(),
                                 j.at("metrics").get<std::map<std::string, double>>(),
                                 j.value("processed", int64_t{0})});
    }
    case MessageType::kResult: {
      LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
      int code = j.at("code").get<int>();
      if (code < 0 || code > static_cast<int>(StatusCode::kDataLoss)) {
        return Status::InvalidArgument("message: bad result code " + std::to_string(code));
      }
      return Message(ResultMsg{id, j.at("attempt").get<int>(), static_cast<StatusCode>(code),
                               j.at("metrics").get<std::map<std::string, double>>(),
                               j.at("epochs_done").get<int>(), j.at("error").get<std::string>(),
                               j.value("run_seconds", 0.0), j.value("processed", int64_t{0}),
                               j.value("preempted", false)});
    }
    case MessageType::kHeartbeat: {
      HeartbeatMsg m;
      m.rss_bytes = j.at("rss_bytes").get<int64_t>();
      m.vram_bytes = j.value("vram_bytes", int64_t{0});
      m.task_restarts = j.value("task_restarts", 0);
      m.fault = j.value("fault", "");
      if (j.contains("trial")) {
        LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
        m.trial = id;
      }
      return Message(m);
    }
    case MessageType::kCancel: {
      LATTICE_ASSIGN_OR_RETURN(TrialId id, TrialFromJson(j, "trial"));
      return Message(CancelMsg{id});
    }
    case MessageType::kShutdown:
      return Message(ShutdownMsg{});
    case MessageType::kDrain:
      return Message(DrainMsg{});
    case MessageType::kVectors:
    case MessageType::kCheckpoint:
      break;  // binary: DecodeVectors, DecodeCheckpoint
  }
  return Status::InvalidArgument("message: unknown type " + std::to_string(static_cast<int>(type)));
}

}  // namespace

MessageType TypeOf(const Message& m) {
  return std::visit(
      [](const auto& v) -> MessageType {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, RegisterMsg>) return MessageType::kRegister;
        if constexpr (std::is_same_v<T, AssignMsg>) return MessageType::kAssign;
        if constexpr (std::is_same_v<T, ProgressMsg>) return MessageType::kProgress;
        if constexpr (std::is_same_v<T, ResultMsg>) return MessageType::kResult;
        if constexpr (std::is_same_v<T, HeartbeatMsg>) return MessageType::kHeartbeat;
        if constexpr (std::is_same_v<T, CancelMsg>) return MessageType::kCancel;
        if constexpr (std::is_same_v<T, VectorsMsg>) return MessageType::kVectors;
        if constexpr (std::is_same_v<T, CheckpointMsg>) return MessageType::kCheckpoint;
        if constexpr (std::is_same_v<T, DrainMsg>) return MessageType::kDrain;
        return MessageType::kShutdown;
      },
      m);
}

std::string EncodeMessage(const Message& m) { return EncodePayload(m); }

StatusOr<Message> DecodeMessage(MessageType type, const std::string& payload) {
  try {
    if (type == MessageType::kVectors) return DecodeVectors(payload);
    if (type == MessageType::kCheckpoint) return DecodeCheckpoint(payload);
    return Decode(type, json::parse(payload));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("message: cannot decode: ") + e.what());
  }
}

std::vector<CheckpointMsg> SplitCheckpoint(const TrialId& trial, int attempt, int64_t step,
                                           std::string bytes, int64_t piece_bytes) {
  const int64_t total = static_cast<int64_t>(bytes.size());
  const int64_t piece = std::max<int64_t>(1, piece_bytes);
  std::vector<CheckpointMsg> pieces;
  if (total <= piece) {  // the common case: one message, no copy
    pieces.push_back(CheckpointMsg{trial, attempt, std::move(bytes), step, 0, total});
    return pieces;
  }
  for (int64_t at = 0; at < total; at += piece) {
    pieces.push_back(CheckpointMsg{trial, attempt, bytes.substr(static_cast<size_t>(at),
                                                                static_cast<size_t>(piece)),
                                   step, at, total});
  }
  return pieces;
}

StatusOr<std::optional<CheckpointMsg>> CheckpointAssembler::Add(CheckpointMsg piece) {
  const auto key = std::make_tuple(piece.trial, piece.attempt, piece.step);
  auto it = partial_.find(key);
  const int64_t have = it == partial_.end() ? 0 : static_cast<int64_t>(it->second.bytes.size());
  if (piece.offset != have || (it != partial_.end() && piece.total != it->second.total)) {
    if (it != partial_.end()) partial_.erase(it);
    return Status::InvalidArgument("checkpoint of " + piece.trial.ToString() + ": piece at byte " +
                                   std::to_string(piece.offset) + " after " +
                                   std::to_string(have) + " bytes received");
  }
  if (piece.last() && it == partial_.end()) return std::optional<CheckpointMsg>(std::move(piece));
  if (it == partial_.end()) {
    piece.bytes.reserve(static_cast<size_t>(piece.total));
    partial_.emplace(key, std::move(piece));
    return std::optional<CheckpointMsg>();
  }
  it->second.bytes += piece.bytes;
  if (!piece.last()) return std::optional<CheckpointMsg>();
  CheckpointMsg whole = std::move(it->second);
  partial_.erase(it);
  return std::optional<CheckpointMsg>(std::move(whole));
}

}  // namespace lattice
