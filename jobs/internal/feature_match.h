// Distill's feature-matching term (distill.feature_match; LibTorch, internal to lattice_jobs):
//   loss += weight * MSE(map(s), t)
// s: the student's output at student_layer [B, S]; t: the frozen teacher's output at
// teacher_layer [B, T] (computed once per run, no gradient); map: the identity when S == T,
// else a learned Linear(S -> T), trained with the student by the run's optimizer (its
// parameters join the flat buffer after the student's: weight decay and gradient clipping
// cover them too). The map is not part of the student: it goes into step checkpoints, never
// into the final checkpoint.
//
// Thread-safety: none; the training thread owns it.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "jobs/internal/model.h"
#include "jobs/internal/train_model.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

class FeatureMatch {
 public:
  // `model`, `in`, `classes`: the student's BuildModel arguments; `teacher_width`: T. The
  // student layer must resolve to 1 .. H + 1 (ParseJobConfig checked it). The map's initial
  // weights are drawn as torch::nn::Linear's (uniform in +-1/sqrt(S)) from a generator seeded
  // with `seed`, on the CPU, then moved to `device`: the process-wide generator is untouched.
  FeatureMatch(const FeatureMatchConfig& config, const ModelConfig& model, int64_t in,
               int64_t classes, int64_t teacher_width, uint64_t seed, const torch::Device& device);

  // Runs `student` on `x` as its forward() does and returns the logits; *feature receives
  // map(s) [B, T]. A TorchScript student (no sequential()) shows only its output: s is the
  // logits (its student_layer resolves to 1, ParseJobConfig checked it).
  torch::Tensor Forward(TrainModel& student, const torch::Tensor& x,
                        torch::Tensor* feature) const;

  // weight * MSE(feature, teacher), mean over all elements.
  torch::Tensor Loss(const torch::Tensor& feature, const torch::Tensor& teacher) const;

  // The map's parameters (weight [T, S], bias [T]); empty for the identity.
  std::vector<torch::Tensor> parameters() const;
  // Step checkpoints: a copy of the map's parameters ("weight", "bias"; empty for the
  // identity), and loading one back in place (the parameters keep their storage).
  NamedWeights CloneMap() const;
  void LoadMap(const NamedWeights& weights);

 private:
  double weight_;
  size_t end_ = 0;                  // the student's first end_ modules produce s
  torch::nn::Linear map_{nullptr};  // null: the identity
};

}  // namespace lattice::jobs::internal
