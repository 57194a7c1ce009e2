#include "jobs/internal/image_folder.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>
#include <system_error>

#include "jobs/data_roots.h"

namespace lattice::jobs::internal {
namespace {

namespace fs = std::filesystem;

std::string Lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

StatusOr<std::vector<std::string>> ListImageFiles(const std::string& dir,
                                                  const std::vector<std::string>& extensions) {
  LATTICE_RETURN_IF_ERROR(CheckDataPath(dir).WithContext("corpus.dir"));
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Status::InvalidArgument("corpus.dir: not a directory: " + dir);
  }
  std::vector<std::string> files;
  fs::directory_iterator it(dir, ec);
  if (ec) return Status::InvalidArgument("corpus.dir: " + dir + ": " + ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') continue;
    const std::string ext = Lower(p.extension().string());
    if (std::find(extensions.begin(), extensions.end(), ext) == extensions.end()) continue;
    std::error_code file_ec;
    if (!fs::is_regular_file(p, file_ec)) continue;  // follows symlinks
    files.push_back(p.string());
  }
  if (ec) return Status::InvalidArgument("corpus.dir: " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

Status DecodeImage(const std::string& path, int height, int width, int channels, float* out) {
  // Per file: a symlink in an allowed folder may point outside the roots.
  LATTICE_RETURN_IF_ERROR(CheckDataPath(path).WithContext("corpus.dir"));
  int w = 0, h = 0, n = 0;
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &w, &h, &n, channels), stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    return Status::InvalidArgument("corpus.dir: " + path + ": cannot decode image: " +
                                   (reason ? reason : "unknown error"));
  }
  const unsigned char* src = pixels.get();
  std::vector<unsigned char> resized;
  if (w != width || h != height) {
    resized.resize(static_cast<size_t>(width) * height * channels);
    if (!stbir_resize_uint8(src, w, h, 0, resized.data(), width, height, 0, channels)) {
      return Status::InvalidArgument("corpus.dir: " + path + ": cannot resize image from " +
                                     std::to_string(w) + "x" + std::to_string(h));
    }
    src = resized.data();
  }
  const size_t plane = static_cast<size_t>(width) * height;
  for (int c = 0; c < channels; ++c) {  // HWC (stb) -> CHW
    float* dst = out + c * plane;
    for (size_t i = 0; i < plane; ++i) dst[i] = static_cast<float>(src[i * channels + c]);
  }
  return Status::Ok();
}

}  // namespace lattice::jobs::internal
