// The torch::Device a job runs on, from the worker's device string (JobContext::device).
#pragma once

#include <string>

#include <torch/torch.h>

#include "common/status.h"

namespace lattice::jobs::internal {

// "cpu" or "cuda:N" -> the device, checked against what this process's LibTorch can use:
// FailedPrecondition naming the problem (a CPU-only LibTorch, no GPU, an ordinal past the
// count); InvalidArgument for text that is no device.
StatusOr<torch::Device> JobDevice(const std::string& device);

}  // namespace lattice::jobs::internal
