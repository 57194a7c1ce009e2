#include "common/ids.h"

#include <cstdio>
#include <cstdlib>

namespace lattice {
namespace {

std::optional<uint64_t> ParseUnsigned(const std::string& text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

std::string SweepId::Key() const {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%012llu", static_cast<unsigned long long>(value));
  return buf;
}

std::optional<SweepId> SweepId::Parse(const std::string& text) {
  std::string digits = (!text.empty() && text[0] == 's') ? text.substr(1) : text;
  auto v = ParseUnsigned(digits);
  if (!v) return std::nullopt;
  return SweepId{*v};
}

std::string TrialId::Key() const {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%06u", index);
  return sweep.Key() + "/" + buf;
}

std::optional<TrialId> TrialId::Parse(const std::string& text) {
  auto dash = text.find("-t");
  if (dash == std::string::npos) return std::nullopt;
  auto sweep = SweepId::Parse(text.substr(0, dash));
  auto index = ParseUnsigned(text.substr(dash + 2));
  if (!sweep || !index || *index > 0xFFFFFFFFu) return std::nullopt;
  return TrialId{*sweep, static_cast<uint32_t>(*index)};
}

}  // namespace lattice
