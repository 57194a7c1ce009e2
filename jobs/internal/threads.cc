#include "jobs/internal/threads.h"

#include <dlfcn.h>

#include <algorithm>

#include <ATen/Parallel.h>

namespace lattice::jobs::internal {

void SetJobThreads(int n) {
  n = std::max(1, n);
  at::set_num_threads(n);
  // Looked up at run time: libblas.so.3 is OpenBLAS only where scripts/setup.sh chose it.
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    fn(n);
  }
}

}  // namespace lattice::jobs::internal
