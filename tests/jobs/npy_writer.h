// Test helper: writes small .npy files by hand (format version 1.0, C order).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace lattice::jobs::testing {

// Writes `count` raw elements of `elsize` bytes with numpy dtype `descr` and `shape`
// (e.g. "(3, 2)" or "(3,)").
inline void WriteNpy(const std::string& path, const std::string& descr, const std::string& shape,
                     const void* data, size_t bytes, int version = 1) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape +
                       ", }";
  size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY", 6);
  out.put(static_cast<char>(version));
  out.put(0);
  uint32_t len = static_cast<uint32_t>(header.size());
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>((len >> 8) & 0xff));
  if (version != 1) {
    out.put(static_cast<char>((len >> 16) & 0xff));
    out.put(static_cast<char>((len >> 24) & 0xff));
  }
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

template <typename T>
void WriteNpy(const std::string& path, const std::string& descr, const std::string& shape,
              const std::vector<T>& v, int version = 1) {
  WriteNpy(path, descr, shape, v.data(), v.size() * sizeof(T), version);
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

constexpr const char* kDigitsCsv =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

}  // namespace lattice::jobs::testing
