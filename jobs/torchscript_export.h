// Runnable models from train checkpoints (library lattice_jobs; this header is torch-free).
//
// ExportTorchScript turns a final checkpoint of a train or distill trial (jobs/checkpoint.h)
// into the bytes of a TorchScript module file that runs without Lattice:
//   m = torch.jit.load("model.pt"); logits = m(x)
// x: [B, in_dim] (or [B, ...] with in_dim values per row, e.g. [B, 1, 28, 28] or [B, 28, 28]
// images), any real dtype; forward converts it to float32, flattens each row, applies the
// trial's input preparation (dataset.scale, then the standardisation fitted on its training
// split) and the network in eval mode (batchnorm running statistics, no dropout), and
// returns the logits [B, classes] (float32). The module's attributes: `classes`, `in_dim`,
// and `lattice_header` (the checkpoint's JSON header: config, metrics, epochs).
// Built-in models (linear, mlp): parameters and buffers are named l<i>_<name> after the
// Sequential's module i. A trial of the user's TorchScript module (model {type: torchscript}):
// the trained module is the submodule `net`; forward prepares the rows as above, reshapes
// them to the trial's model.input_shape (when set) and returns net(x).
// Errors: InvalidArgument for a checkpoint that is not a final train / distill one or
// whose archive does not load; Internal for any other LibTorch failure.
#pragma once

#include <string>

#include "common/status.h"

namespace lattice::jobs {

StatusOr<std::string> ExportTorchScript(const std::string& checkpoint);

}  // namespace lattice::jobs
