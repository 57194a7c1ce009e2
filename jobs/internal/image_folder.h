// Folder-of-images corpora (corpus format "images"): listing and decoding, torch-free
// (internal to lattice_jobs_config). Decodes with stb_image and resizes with
// stb_image_resize (Debian's libstb). Thread-safety: pure functions; safe to call
// concurrently (stb's failure reason is a global, so a concurrent failure may report the
// other call's reason; the file name is always right).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace lattice::jobs::internal {

// The image files of `dir`, as "dir/name", sorted by path (byte order), so that row i is
// the same on every run and worker. Not recursive: only regular files (symlinks followed)
// directly inside `dir` whose extension matches one of `extensions` (lower-case, with the
// dot) case-insensitively; names starting with '.' are skipped. Lists the whole folder
// (about 1 s per million files). Errors: InvalidArgument "corpus.dir: not a directory: x";
// "corpus.dir: x: outside the allowed data roots ..." (jobs/data_roots.h).
StatusOr<std::vector<std::string>> ListImageFiles(const std::string& dir,
                                                  const std::vector<std::string>& extensions);

// Decodes `path` (any format stb_image reads: PNG, JPEG, BMP, PGM/PPM, TGA, GIF, ...),
// converts it to `channels` (1: grey, 3: RGB), resizes it to height x width (stb's default
// filter; no crop, the aspect ratio is not kept) and writes channels * height * width
// floats in CHW order, values 0..255, to `out`.
// Errors: InvalidArgument "corpus.dir: <path>: cannot decode image: <reason>"; the path (a
// symlink resolved) outside the data roots: "corpus.dir: <path>: outside the allowed ...".
// Both functions check jobs::CheckDataPath before touching the file system.
Status DecodeImage(const std::string& path, int height, int width, int channels, float* out);

}  // namespace lattice::jobs::internal
