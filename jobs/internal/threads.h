// Intra-op thread limits of a job: LibTorch's pool and OpenBLAS's own pool.
#pragma once

namespace lattice::jobs::internal {

// Sets LibTorch's intra-op threads (at::set_num_threads) and OpenBLAS's threads to `n`.
// at::set_num_threads does not reach OpenBLAS: without the second call, every process
// starts one BLAS thread per core and several ranks on one machine fight for the cores.
// Process-wide; call before the job's first tensor operation.
void SetJobThreads(int n);

}  // namespace lattice::jobs::internal
