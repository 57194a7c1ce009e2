#include "jobs/internal/device.h"

namespace lattice::jobs::internal {

StatusOr<torch::Device> JobDevice(const std::string& text) {
  std::optional<torch::Device> device;
  try {
    device = torch::Device(text.empty() ? std::string("cpu") : text);
  } catch (const std::exception&) {
    return Status::InvalidArgument("device: \"" + text + "\" is not a device (cpu, cuda:0, ...)");
  }
  if (device->is_cpu()) return *device;
  if (!device->is_cuda()) {
    return Status::FailedPrecondition("device " + text + ": only cpu and cuda devices are supported");
  }
  if (!torch::cuda::is_available()) {
    return Status::FailedPrecondition(
        "device " + text + ": this LibTorch sees no CUDA device (a CPU-only LibTorch, such as "
        "Debian's libtorch-dev, or no GPU on this node); build with -DLATTICE_WITH_CUDA=ON "
        "against a CUDA LibTorch (see README, \"GPU build\")");
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (device->has_index() && device->index() >= count) {
    return Status::FailedPrecondition("device " + text + ": this node has " +
                                      std::to_string(count) + " CUDA device(s)");
  }
  return *device;
}

}  // namespace lattice::jobs::internal
