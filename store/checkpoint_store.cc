#include "store/checkpoint_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include <nlohmann/json.hpp>
#include <zlib.h>

namespace lattice {
namespace {

constexpr const char* kCheckpointsCf = "checkpoints";
constexpr std::string_view kManifestMagic = "lattice-checkpoint-manifest/1\n";

std::string Digits(int64_t value, int width) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%0*lld", width, static_cast<long long>(value));
  return digits;
}

std::string StepPrefix(const TrialId& trial) { return trial.Key() + "/step/"; }
std::string PrunedPrefix(const TrialId& trial) { return trial.Key() + "/pruned/"; }
std::string ChunksOfTrial(const TrialId& trial) { return trial.Key() + "/chunk/"; }
std::string ChunkPrefix(const TrialId& trial, int64_t step) {
  return ChunksOfTrial(trial) + Digits(step, 12) + "/";
}
std::string ChunkKey(const TrialId& trial, int64_t step, int64_t index) {
  return ChunkPrefix(trial, step) + Digits(index, 6);
}
// Past every chunk key of `step` (':' sorts after the digits).
std::string ChunkEnd(const TrialId& trial, int64_t step) { return ChunkPrefix(trial, step) + ":"; }

std::string ManifestKey(const TrialId& trial, int64_t step) {
  return step == CheckpointStore::kFinal ? CheckpointStore::FinalKey(trial)
                                         : StepPrefix(trial) + Digits(step, 12);
}

void DeleteKey(StateWriteBatch& batch, const std::string& key) {
  batch.DeleteRawRange(kCheckpointsCf, key, key + '\0');
}

uint32_t Crc32(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed pieces well below 4 GiB.
  constexpr size_t kMaxPiece = size_t{1} << 30;
  for (size_t at = 0; at < bytes.size(); at += kMaxPiece) {
    const size_t n = std::min(kMaxPiece, bytes.size() - at);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

std::string FirstLine(std::string_view bytes) {
  const size_t nl = bytes.find('\n');
  return nl == std::string_view::npos ? std::string() : std::string(bytes.substr(0, nl));
}

std::string Describe(const TrialId& trial, int64_t step) {
  return "checkpoint of " + trial.ToString() +
         (step == CheckpointStore::kFinal ? std::string(" (final)")
                                          : " at step " + std::to_string(step));
}

bool IsManifest(const std::string& value) {
  return value.compare(0, kManifestMagic.size(), kManifestMagic) == 0;
}

using ChunkList = std::vector<std::pair<int64_t, uint32_t>>;  // bytes, CRC-32

// Parses a manifest value; a value without the manifest prefix is a whole (unchunked)
// checkpoint: its info, and no chunk list.
StatusOr<CheckpointInfo> ParseManifest(const TrialId& trial, int64_t step,
                                       const std::string& value, ChunkList* chunks) {
  CheckpointInfo info;
  info.step = step;
  if (!IsManifest(value)) {
    info.bytes = static_cast<int64_t>(value.size());
    info.header = FirstLine(value);
    return info;
  }
  auto j = nlohmann::json::parse(value.begin() + kManifestMagic.size(), value.end(), nullptr,
                                 /*allow_exceptions=*/false);
  if (!j.is_object() || !j["bytes"].is_number_integer() || !j["chunks"].is_array() ||
      !j["header"].is_string()) {
    return Status::DataLoss(Describe(trial, step) + ": its manifest is unreadable");
  }
  info.bytes = j["bytes"].get<int64_t>();
  info.header = j["header"].get<std::string>();
  info.chunks = static_cast<int64_t>(j["chunks"].size());
  if (chunks != nullptr) {
    for (const auto& c : j["chunks"]) {
      if (!c.is_object() || !c["bytes"].is_number_integer() || !c["crc32"].is_number_unsigned()) {
        return Status::DataLoss(Describe(trial, step) + ": its manifest is unreadable");
      }
      chunks->emplace_back(c["bytes"].get<int64_t>(), c["crc32"].get<uint32_t>());
    }
  }
  return info;
}

}  // namespace

std::string CheckpointStore::FinalKey(const TrialId& trial) { return trial.Key() + "/final"; }

CheckpointStore::Writer::Writer(TrialId trial, int64_t step, int64_t total_bytes)
    : trial_(trial), step_(step), total_(total_bytes) {}

Status CheckpointStore::Writer::Add(StateWriteBatch& batch, int64_t offset, std::string piece) {
  const int64_t size = static_cast<int64_t>(piece.size());
  if (offset != received_ || size == 0 || size > total_ - received_) {
    return Status::InvalidArgument(Describe(trial_, step_) + ": piece at byte " +
                                   std::to_string(offset) + " (" + std::to_string(size) +
                                   " bytes) does not continue the " + std::to_string(received_) +
                                   " of " + std::to_string(total_) + " bytes received");
  }
  if (received_ == 0) {
    // A checkpoint of the same step written before (by an earlier attempt) is superseded:
    // its manifest goes now, so it never points at a chunk this transfer overwrites.
    DeleteKey(batch, ManifestKey(trial_, step_));
    header_ = FirstLine(piece);
  }
  chunks_.emplace_back(size, Crc32(piece));
  batch.PutRaw(kCheckpointsCf, ChunkKey(trial_, step_, static_cast<int64_t>(chunks_.size()) - 1),
               std::move(piece));
  received_ += size;
  return Status::Ok();
}

void CheckpointStore::Writer::Finish(StateWriteBatch& batch) const {
  nlohmann::json chunks = nlohmann::json::array();
  for (const auto& [bytes, crc] : chunks_) chunks.push_back({{"bytes", bytes}, {"crc32", crc}});
  const nlohmann::json manifest = {{"bytes", total_}, {"chunks", chunks}, {"header", header_}};
  batch.PutRaw(kCheckpointsCf, ManifestKey(trial_, step_),
               std::string(kManifestMagic) + manifest.dump());
  // Chunks past the last one, left by a longer checkpoint of the same step, go with it.
  batch.DeleteRawRange(kCheckpointsCf,
                       ChunkKey(trial_, step_, static_cast<int64_t>(chunks_.size())),
                       ChunkEnd(trial_, step_));
}

void CheckpointStore::Writer::Abandon(StateWriteBatch& batch) const {
  if (chunks_.empty()) return;
  batch.DeleteRawRange(kCheckpointsCf, ChunkPrefix(trial_, step_), ChunkEnd(trial_, step_));
}

void CheckpointStore::Put(StateWriteBatch& batch, const TrialId& trial, int64_t step,
                          std::string_view bytes, int64_t chunk_bytes) {
  Writer writer(trial, step, static_cast<int64_t>(bytes.size()));
  const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, chunk_bytes));
  for (size_t at = 0; at < bytes.size(); at += chunk) {
    // Cannot fail: the pieces are consecutive and within the total.
    (void)writer.Add(batch, static_cast<int64_t>(at), std::string(bytes.substr(at, chunk)));
  }
  writer.Finish(batch);
}

void CheckpointStore::Delete(StateWriteBatch& batch, const TrialId& trial, int64_t step) {
  DeleteKey(batch, ManifestKey(trial, step));
  batch.DeleteRawRange(kCheckpointsCf, ChunkPrefix(trial, step), ChunkEnd(trial, step));
}

void CheckpointStore::Prune(StateWriteBatch& batch, const TrialId& trial, int64_t step,
                            const nlohmann::json& summary) {
  Delete(batch, trial, step);
  batch.PutRaw(kCheckpointsCf, PrunedPrefix(trial) + Digits(step, 12), summary.dump());
}

StatusOr<std::vector<std::pair<int64_t, nlohmann::json>>> CheckpointStore::ListPruned(
    const TrialId& trial) const {
  LATTICE_ASSIGN_OR_RETURN(auto rows, store_->Scan(kCheckpointsCf, PrunedPrefix(trial)));
  std::vector<std::pair<int64_t, nlohmann::json>> pruned;
  const size_t prefix = PrunedPrefix(trial).size();
  for (const auto& [key, value] : rows) {
    pruned.emplace_back(std::strtoll(key.c_str() + prefix, nullptr, 10),
                        nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false));
  }
  return pruned;
}

StatusOr<std::string> CheckpointStore::Read(const TrialId& trial, int64_t step) const {
  LATTICE_ASSIGN_OR_RETURN(std::string value, store_->Get(kCheckpointsCf, ManifestKey(trial, step)));
  if (!IsManifest(value)) return value;  // written whole, before chunking
  ChunkList chunks;
  LATTICE_ASSIGN_OR_RETURN(CheckpointInfo info, ParseManifest(trial, step, value, &chunks));
  int64_t listed = 0;
  for (const auto& chunk : chunks) listed += chunk.first;
  if (listed != info.bytes || info.bytes < 0) {  // before reserving what it claims
    return Status::DataLoss(Describe(trial, step) + ": its manifest lists " +
                            std::to_string(listed) + " bytes of chunks for a checkpoint of " +
                            std::to_string(info.bytes));
  }
  std::string bytes;
  bytes.reserve(static_cast<size_t>(info.bytes));
  for (size_t i = 0; i < chunks.size(); ++i) {
    const std::string where = Describe(trial, step) + ": chunk " + std::to_string(i + 1) +
                              " of " + std::to_string(chunks.size());
    auto chunk = store_->Get(kCheckpointsCf, ChunkKey(trial, step, static_cast<int64_t>(i)));
    if (chunk.status().code() == StatusCode::kNotFound) {
      return Status::DataLoss(where + " is missing");
    }
    if (!chunk.ok()) return chunk.status();
    if (static_cast<int64_t>(chunk->size()) != chunks[i].first || Crc32(*chunk) != chunks[i].second) {
      return Status::DataLoss(where + " is corrupt (size or CRC-32 differs from the manifest)");
    }
    bytes += *chunk;
  }
  return bytes;  // each chunk has its listed size, and they add up to the total
}

StatusOr<CheckpointInfo> CheckpointStore::Info(const TrialId& trial, int64_t step) const {
  LATTICE_ASSIGN_OR_RETURN(std::string value, store_->Get(kCheckpointsCf, ManifestKey(trial, step)));
  return ParseManifest(trial, step, value, nullptr);
}

StatusOr<std::vector<CheckpointInfo>> CheckpointStore::ListSteps(const TrialId& trial) const {
  LATTICE_ASSIGN_OR_RETURN(auto rows, store_->Scan(kCheckpointsCf, StepPrefix(trial)));
  std::vector<CheckpointInfo> steps;
  const size_t prefix = StepPrefix(trial).size();
  for (const auto& [key, value] : rows) {
    const int64_t step = std::strtoll(key.c_str() + prefix, nullptr, 10);
    LATTICE_ASSIGN_OR_RETURN(CheckpointInfo info, ParseManifest(trial, step, value, nullptr));
    steps.push_back(std::move(info));
  }
  return steps;
}

StatusOr<int64_t> CheckpointStore::DeleteOrphanChunks(StateWriteBatch& batch,
                                                      const TrialId& trial) const {
  LATTICE_ASSIGN_OR_RETURN(auto keys, store_->ScanKeys(kCheckpointsCf, ChunksOfTrial(trial)));
  std::map<int64_t, std::vector<int64_t>> by_step;  // step -> chunk indexes
  const size_t prefix = ChunksOfTrial(trial).size();
  for (const auto& key : keys) {
    char* end = nullptr;
    const int64_t step = std::strtoll(key.c_str() + prefix, &end, 10);
    by_step[step].push_back(std::strtoll(end + 1, nullptr, 10));
  }
  int64_t orphans = 0;
  for (const auto& [step, indexes] : by_step) {
    auto info = Info(trial, step);
    if (!info.ok() && info.status().code() != StatusCode::kNotFound) return info.status();
    const int64_t owned = info.ok() ? info->chunks : 0;
    for (int64_t index : indexes) {
      if (index < owned) continue;
      DeleteKey(batch, ChunkKey(trial, step, index));
      ++orphans;
    }
  }
  return orphans;
}

}  // namespace lattice
