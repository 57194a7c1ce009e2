#include "jobs/corpus_rows.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "jobs/data_roots.h"
#include "jobs/internal/image_folder.h"

namespace lattice::jobs {
namespace {

// The first `n` (decompressed) bytes of a file; fewer if the file is shorter.
StatusOr<std::string> ReadPrefix(const std::string& path, size_t n) {
  LATTICE_RETURN_IF_ERROR(CheckDataPath(path));
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return Status::InvalidArgument("file not found: " + path);
    return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  }
  std::string out(n, '\0');
  int got = gzread(f, out.data(), static_cast<unsigned>(n));
  gzclose(f);
  if (got < 0) return Status::IoError(path + ": read error");
  out.resize(static_cast<size_t>(got));
  return out;
}

uint32_t BigEndian32(const std::string& b, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(b[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3]));
}

StatusOr<int64_t> IdxRows(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadPrefix(path, 16));
  if (b.size() < 16 || BigEndian32(b, 0) != 2051) {
    return Status::InvalidArgument(path + ": not an idx3 image file (magic 2051)");
  }
  return static_cast<int64_t>(BigEndian32(b, 4));
}

StatusOr<int64_t> NpyRows(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadPrefix(path, 4096));
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) {
    return Status::InvalidArgument(path + ": not a .npy file");
  }
  size_t shape = b.find("'shape'");
  size_t open = b.find('(', shape);
  if (shape == std::string::npos || open == std::string::npos) {
    return Status::InvalidArgument(path + ": npy header has no shape");
  }
  char* end = nullptr;
  long long rows = std::strtoll(b.c_str() + open + 1, &end, 10);
  if (end == b.c_str() + open + 1 || rows < 0) {
    return Status::InvalidArgument(path + ": npy header: malformed shape");
  }
  return static_cast<int64_t>(rows);
}

}  // namespace

StatusOr<int64_t> CountCorpusRows(const CorpusConfig& corpus) {
  if (corpus.format == CorpusFormat::kImages) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<std::string> files,
                             internal::ListImageFiles(corpus.file, corpus.extensions));
    const int64_t n = static_cast<int64_t>(files.size());
    return corpus.limit ? std::min(n, *corpus.limit) : n;
  }
  StatusOr<int64_t> rows = corpus.format == CorpusFormat::kIdx ? IdxRows(corpus.file)
                                                                : NpyRows(corpus.file);
  if (!rows.ok()) return rows.status().WithContext("corpus");
  int64_t n = *rows;
  if (corpus.limit) n = std::min(n, *corpus.limit);
  return n;
}

}  // namespace lattice::jobs
