#include "jobs/data_roots.h"

#include <filesystem>
#include <optional>

namespace lattice::jobs {
namespace {

namespace fs = std::filesystem;

struct Roots {
  std::vector<fs::path> allowed;
  std::vector<fs::path> denied;
};

std::optional<Roots>& Configured() {
  static std::optional<Roots> roots;
  return roots;
}

// `path` with symlinks and ".." resolved as far as it exists.
fs::path Resolve(const fs::path& path) {
  std::error_code ec;
  fs::path out = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::absolute(path).lexically_normal() : out;
}

bool Under(const fs::path& path, const fs::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (r->empty()) continue;  // a trailing "/" of the root
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

}  // namespace

Status SetDataRoots(const std::vector<std::string>& allowed,
                    const std::vector<std::string>& denied) {
  Roots roots;
  std::error_code ec;
  const std::vector<std::string> dirs =
      allowed.empty() ? std::vector<std::string>{fs::current_path(ec).string()} : allowed;
  for (const std::string& dir : dirs) {
    if (!fs::is_directory(dir, ec)) {
      return Status::InvalidArgument("data root " + dir + ": not a directory");
    }
    roots.allowed.push_back(Resolve(dir));
  }
  for (const std::string& dir : denied) roots.denied.push_back(Resolve(dir));
  Configured() = std::move(roots);
  return Status::Ok();
}

Status CheckDataPath(const std::string& path) {
  const std::optional<Roots>& roots = Configured();
  if (!roots) return Status::Ok();
  const fs::path resolved = Resolve(path);
  bool ok = false;
  for (const fs::path& root : roots->allowed) ok = ok || Under(resolved, root);
  for (const fs::path& root : roots->denied) ok = ok && !Under(resolved, root);
  if (ok) return Status::Ok();
  return Status::InvalidArgument(path +
                                 ": outside the allowed data roots (lattice cluster --data-roots)");
}

}  // namespace lattice::jobs
