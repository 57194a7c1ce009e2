// The job kinds workers run. Text forms (specs, records, the API): "train", "embed", "noop",
// "distill".
#pragma once

#include <optional>
#include <string_view>

namespace lattice {

enum class JobKind {
  kTrain,  // trains a model on a dataset (jobs/train_config.h)
  kEmbed,  // one shard of a corpus through an encoder (jobs/embed_config.h)
  kNoop,     // sleeps sleep_ms; measures dispatch
  kDistill,  // trains a student on a dataset against a frozen teacher's logits
};

const char* JobKindName(JobKind kind);
// nullopt for an unknown name.
std::optional<JobKind> ParseJobKind(std::string_view text);

}  // namespace lattice
