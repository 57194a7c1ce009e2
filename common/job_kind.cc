#include "common/job_kind.h"

namespace lattice {

const char* JobKindName(JobKind kind) {
  switch (kind) {
    case JobKind::kTrain: return "train";
    case JobKind::kEmbed: return "embed";
    case JobKind::kNoop: return "noop";
    case JobKind::kDistill: return "distill";
  }
  return "unknown";
}

std::optional<JobKind> ParseJobKind(std::string_view text) {
  for (JobKind k : {JobKind::kTrain, JobKind::kEmbed, JobKind::kNoop, JobKind::kDistill}) {
    if (text == JobKindName(k)) return k;
  }
  return std::nullopt;
}

}  // namespace lattice
