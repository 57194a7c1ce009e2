#include "store/vector_block_store.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

namespace lattice {
namespace {

constexpr const char* kItemsCf = "items";
constexpr size_t kBlockHeader = 8 + 8 + 4;

std::string RowKey(int64_t begin) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%012lld", static_cast<long long>(begin));
  return buf;
}

// The sweep key, plus "-v<6 digits>" for a variant other than 0.
std::string VariantKey(SweepId sweep, int variant) {
  if (variant == 0) return sweep.Key();
  char buf[16];
  std::snprintf(buf, sizeof(buf), "-v%06d", variant);
  return sweep.Key() + buf;
}
std::string BlockPrefix(SweepId sweep, int variant) { return VariantKey(sweep, variant) + "/"; }
std::string MetadataPrefix(SweepId sweep, int variant) {
  return VariantKey(sweep, variant) + "#meta/";
}
// [RangeBegin, RangeEnd) holds both prefixes: '#' < '/' < '0'.
std::string RangeBegin(SweepId sweep) { return sweep.Key() + "#"; }
std::string RangeEnd(SweepId sweep) { return sweep.Key() + "0"; }

std::string Encode(const VectorBlock& block) {
  std::string out(kBlockHeader + block.data.size() * sizeof(float), '\0');
  int32_t d = block.dim;
  std::memcpy(out.data(), &block.begin, 8);
  std::memcpy(out.data() + 8, &block.rows, 8);
  std::memcpy(out.data() + 16, &d, 4);
  std::memcpy(out.data() + kBlockHeader, block.data.data(), block.data.size() * sizeof(float));
  return out;
}

}  // namespace

void VectorBlockStore::Put(StateWriteBatch& batch, SweepId sweep, const VectorBlock& block,
                           int variant) {
  LATTICE_CHECK(variant >= 0 && variant < 1000000);
  batch.PutRaw(kItemsCf, BlockPrefix(sweep, variant) + RowKey(block.begin), Encode(block));
  if (!block.metadata.empty()) {
    batch.PutRaw(kItemsCf, MetadataPrefix(sweep, variant) + RowKey(block.begin),
                 nlohmann::json(block.metadata).dump());
  }
}

void VectorBlockStore::Delete(StateWriteBatch& batch, SweepId sweep) {
  batch.DeleteRawRange(kItemsCf, RangeBegin(sweep), RangeEnd(sweep));
}

Status VectorBlockStore::Compact(SweepId sweep) {
  return store_->CompactRaw(kItemsCf, RangeBegin(sweep), RangeEnd(sweep));
}

StatusOr<store::FloatMatrix> VectorBlockStore::ReadAll(SweepId sweep, int variant) const {
  LATTICE_ASSIGN_OR_RETURN(auto blocks, store_->Scan(kItemsCf, BlockPrefix(sweep, variant)));
  store::FloatMatrix m;
  for (const auto& [key, value] : blocks) {
    if (value.size() < kBlockHeader) return Status::Internal("vector block " + key + ": truncated");
    int64_t begin = 0, rows = 0;
    int32_t dim = 0;
    std::memcpy(&begin, value.data(), 8);
    std::memcpy(&rows, value.data() + 8, 8);
    std::memcpy(&dim, value.data() + 16, 4);
    if (rows < 0 || dim < 0) return Status::Internal("vector block " + key + ": bad header");
    size_t floats = static_cast<size_t>(rows) * static_cast<size_t>(dim);
    if (value.size() != kBlockHeader + floats * sizeof(float)) {
      return Status::Internal("vector block " + key + ": size does not match its header");
    }
    if (begin != m.rows) {
      return Status::Internal("vector blocks: rows " + std::to_string(m.rows) + ".." +
                              std::to_string(begin) + " are missing");
    }
    if (m.dim != 0 && dim != m.dim) {
      return Status::FailedPrecondition("vector blocks: dimension changed from " +
                                        std::to_string(m.dim) + " to " + std::to_string(dim));
    }
    m.dim = dim;
    size_t at = m.data.size();
    m.data.resize(at + floats);
    std::memcpy(m.data.data() + at, value.data() + kBlockHeader, floats * sizeof(float));
    m.rows += rows;
  }
  if (m.rows == 0) return Status::FailedPrecondition("embed sweep produced no vectors");
  return m;
}

StatusOr<std::unordered_map<int64_t, std::string>> VectorBlockStore::ReadMetadata(
    SweepId sweep, int variant) const {
  LATTICE_ASSIGN_OR_RETURN(auto blocks, store_->Scan(kItemsCf, MetadataPrefix(sweep, variant)));
  std::unordered_map<int64_t, std::string> items;
  for (const auto& [key, value] : blocks) {
    int64_t begin = std::strtoll(key.substr(key.rfind('/') + 1).c_str(), nullptr, 10);
    nlohmann::json rows = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (!rows.is_array()) return Status::Internal("metadata block " + key + ": not a JSON array");
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].is_string()) items[begin + static_cast<int64_t>(i)] = rows[i].get<std::string>();
    }
  }
  return items;
}

}  // namespace lattice
