#include "tests/testutil/testutil.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

namespace lattice::testutil {

TempDir::TempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp ? tmp : "/tmp") + "/lattice-test-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) {
    std::cerr << "mkdtemp failed for " << pattern << "\n";
    std::abort();
  }
  path_ = made;
}

TempDir::~TempDir() {
  if (std::getenv("LATTICE_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::mt19937_64 SeededRng(const std::string& test_name) {
  uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("LATTICE_TEST_SEED")) seed = std::strtoull(env, nullptr, 10);
  std::cerr << "[seed] " << test_name << ": LATTICE_TEST_SEED=" << seed << "\n";
  return std::mt19937_64(seed);
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(interval);
  }
  return condition();
}

std::string SourceDir() { return LATTICE_SOURCE_DIR; }

}  // namespace lattice::testutil
