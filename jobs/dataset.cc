#include "jobs/dataset.h"
#include "jobs/internal/class_subset.h"
#include "jobs/internal/stratified_split.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "jobs/data_roots.h"
#include "jobs/token_data.h"

namespace lattice::jobs {
namespace {

Status Bad(const std::string& path, const std::string& msg) {
  return Status::InvalidArgument(path + ": " + msg);
}

// Reads a whole file; gzip-compressed files are decompressed transparently.
StatusOr<std::string> ReadFile(const std::string& path) {
  LATTICE_RETURN_IF_ERROR(CheckDataPath(path));
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return Status::InvalidArgument("file not found: " + path);
    return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  }
  gzbuffer(f, 1 << 18);
  std::string out;
  std::vector<char> buf(1 << 20);
  while (true) {
    int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      return Status::IoError(path + ": read error: " + msg);
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<size_t>(n));
  }
  gzclose(f);
  return out;
}

// ---- .npy ----------------------------------------------------------------------------

struct NpyArray {
  std::string bytes;  // the whole file
  size_t data_offset = 0;
  std::string descr;
  std::vector<int64_t> shape;
  int64_t count = 1;  // product of shape
};

size_t DtypeSize(const std::string& d) {
  if (d == "<f4" || d == "<i4") return 4;
  if (d == "<f8" || d == "<i8") return 8;
  if (d == "|u1" || d == "<u1") return 1;
  return 0;
}

// Returns the text that follows `'key':` in the header dict, or npos.
size_t FindKey(const std::string& header, const std::string& key) {
  size_t p = header.find("'" + key + "'");
  if (p == std::string::npos) return p;
  p = header.find(':', p);
  return p == std::string::npos ? p : p + 1;
}

Status ParseNpyHeader(const std::string& path, const std::string& header, NpyArray* a) {
  size_t p = FindKey(header, "descr");
  if (p == std::string::npos) return Bad(path, "npy header has no 'descr'");
  size_t q1 = header.find('\'', p);
  size_t q2 = q1 == std::string::npos ? q1 : header.find('\'', q1 + 1);
  if (q2 == std::string::npos) return Bad(path, "npy header: malformed 'descr'");
  a->descr = header.substr(q1 + 1, q2 - q1 - 1);
  p = FindKey(header, "fortran_order");
  if (p == std::string::npos) return Bad(path, "npy header has no 'fortran_order'");
  if (header.compare(header.find_first_not_of(' ', p), 4, "True") == 0) {
    return Bad(path, "fortran_order arrays are not supported (save with C order)");
  }
  p = FindKey(header, "shape");
  size_t open = p == std::string::npos ? p : header.find('(', p);
  size_t close = open == std::string::npos ? open : header.find(')', open);
  if (close == std::string::npos) return Bad(path, "npy header: malformed 'shape'");
  std::string dims = header.substr(open + 1, close - open - 1);
  const char* s = dims.c_str();
  while (*s) {
    if (*s == ',' || *s == ' ') {
      ++s;
      continue;
    }
    char* end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (end == s || v < 0) return Bad(path, "npy header: malformed 'shape' (" + dims + ")");
    a->shape.push_back(v);
    a->count *= v;
    s = end;
  }
  return Status::Ok();
}

// Parses the magic, version and header dict of a .npy at the start of `b` (the whole file,
// or its first bytes): fills descr, shape, count and data_offset.
Status ParseNpyPreamble(const std::string& path, const std::string& b, NpyArray* a) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) return Bad(path, "not a .npy file");
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  int major = u[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = u[8] | (u[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return Bad(path, "truncated .npy header");
    header_len = u[8] | (u[9] << 8) | (u[10] << 16) | (static_cast<size_t>(u[11]) << 24);
    header_start = 12;
  } else {
    return Bad(path, "unsupported .npy version " + std::to_string(major));
  }
  if (header_start + header_len > b.size()) return Bad(path, "truncated .npy header");
  LATTICE_RETURN_IF_ERROR(ParseNpyHeader(path, b.substr(header_start, header_len), a));
  a->data_offset = header_start + header_len;
  return Status::Ok();
}

// The first `max_bytes` of a file (fewer when it is shorter), decompressed.
StatusOr<std::string> ReadFilePrefix(const std::string& path, size_t max_bytes) {
  LATTICE_RETURN_IF_ERROR(CheckDataPath(path));
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT) return Status::InvalidArgument("file not found: " + path);
    return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  }
  std::string out(max_bytes, '\0');
  int n = gzread(f, out.data(), static_cast<unsigned>(max_bytes));
  gzclose(f);
  if (n < 0) return Status::IoError(path + ": read error");
  out.resize(static_cast<size_t>(n));
  return out;
}

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  NpyArray a;
  LATTICE_ASSIGN_OR_RETURN(a.bytes, ReadFile(path));
  const std::string& b = a.bytes;
  LATTICE_RETURN_IF_ERROR(ParseNpyPreamble(path, b, &a));
  size_t elsize = DtypeSize(a.descr);
  if (elsize == 0) {
    return Bad(path, "unsupported dtype '" + a.descr + "' (expected <f4, <f8, <i8, <i4 or u1)");
  }
  size_t need = static_cast<size_t>(a.count) * elsize;
  if (b.size() - a.data_offset < need) {
    return Bad(path, "truncated data: expected " + std::to_string(need) + " bytes, got " +
                         std::to_string(b.size() - a.data_offset));
  }
  return a;
}

template <typename Out>
void ConvertNpy(const NpyArray& a, Out* out) {
  const char* src = a.bytes.data() + a.data_offset;
  auto convert = [&](auto tag) {
    using In = decltype(tag);
    for (int64_t i = 0; i < a.count; ++i) {
      In v;
      std::memcpy(&v, src + i * sizeof(In), sizeof(In));
      out[i] = static_cast<Out>(v);
    }
  };
  if (a.descr == "<f4") convert(float{});
  else if (a.descr == "<f8") convert(double{});
  else if (a.descr == "<i8") convert(int64_t{});
  else if (a.descr == "<i4") convert(int32_t{});
  else convert(uint8_t{});
}

Status CheckLabels(const std::string& path, const std::vector<int64_t>& labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) {
      return Bad(path, "label " + std::to_string(labels[i]) + " at row " + std::to_string(i) +
                           " is negative (labels must be class indices >= 0)");
    }
  }
  return Status::Ok();
}

// ---- idx -----------------------------------------------------------------------------

uint32_t BigEndian32(const std::string& b, size_t off) {
  const auto* u = reinterpret_cast<const unsigned char*>(b.data() + off);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

// Reads an idx file with `expected_magic`; fills dims and returns the offset of the data.
StatusOr<size_t> ReadIdxHeader(const std::string& path, const std::string& b,
                               uint32_t expected_magic, std::vector<int64_t>* dims) {
  size_t ndims = expected_magic & 0xff;
  if (b.size() < 4 + 4 * ndims) return Bad(path, "truncated idx header");
  uint32_t magic = BigEndian32(b, 0);
  if (magic != expected_magic) {
    // The file's own bytes stay out of the message (it may reach HTTP clients).
    return Bad(path, "not an idx file with magic number " + std::to_string(expected_magic));
  }
  int64_t count = 1;
  for (size_t i = 0; i < ndims; ++i) {
    dims->push_back(BigEndian32(b, 4 + 4 * i));
    count *= dims->back();
  }
  size_t offset = 4 + 4 * ndims;
  if (b.size() - offset < static_cast<size_t>(count)) {
    return Bad(path, "truncated idx data: expected " + std::to_string(count) + " bytes, got " +
                         std::to_string(b.size() - offset));
  }
  return offset;
}

// ---- csv -----------------------------------------------------------------------------

// Parses one CSV line into `values`; returns false on a malformed number.
bool ParseCsvLine(const char* s, const char* end, std::vector<double>* values) {
  values->clear();
  while (s < end) {
    char* stop = nullptr;
    double v = std::strtod(s, &stop);
    if (stop == s) return false;
    values->push_back(v);
    s = stop;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) ++s;
    if (s < end) {
      if (*s != ',') return false;
      ++s;
    }
  }
  return true;
}

Status AppendCsvRow(const std::string& where, const std::vector<double>& values, int label_column,
                    DatasetPart* part) {
  int64_t ncols = static_cast<int64_t>(values.size());
  int64_t lc = label_column < 0 ? ncols + label_column : label_column;
  if (lc < 0 || lc >= ncols) {
    return Bad(where, "label_column " + std::to_string(label_column) + " out of range for " +
                          std::to_string(ncols) + " columns");
  }
  if (part->features.rows == 0) part->features.cols = ncols - 1;
  if (ncols - 1 != part->features.cols) {
    return Bad(where, "expected " + std::to_string(part->features.cols + 1) + " columns, got " +
                          std::to_string(ncols));
  }
  double label = values[lc];
  if (label != std::floor(label) || label < 0) {
    return Bad(where, "label must be an integer >= 0, got " + std::to_string(label));
  }
  part->labels.push_back(static_cast<int64_t>(label));
  for (int64_t c = 0; c < ncols; ++c) {
    if (c != lc) part->features.data.push_back(static_cast<float>(values[c]));
  }
  ++part->features.rows;
  return Status::Ok();
}

}  // namespace

StatusOr<FeatureMatrix> LoadNpyFeatures(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  if (a.shape.size() != 2) {
    return Bad(path, "expected 2-D float32 features, got " + std::to_string(a.shape.size()) + "-D");
  }
  FeatureMatrix m;
  m.rows = a.shape[0];
  m.cols = a.shape[1];
  m.data.resize(static_cast<size_t>(a.count));
  ConvertNpy(a, m.data.data());
  return m;
}

StatusOr<FeatureMatrix> LoadNpyTokens(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  if (a.shape.size() != 2 && a.shape.size() != 3) {
    return Bad(path, "expected 2-D [N, D] or 3-D [N, T, D] features, got " +
                         std::to_string(a.shape.size()) + "-D");
  }
  FeatureMatrix m;
  m.rows = a.shape[0];
  m.cols = a.count / std::max<int64_t>(m.rows, 1);
  if (a.shape.size() == 3) {
    m.cols = a.shape[1] * a.shape[2];
    m.tokens = a.shape[1];
  }
  m.data.resize(static_cast<size_t>(a.count));
  ConvertNpy(a, m.data.data());
  return m;
}

StatusOr<std::vector<int64_t>> ReadNpyShape(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadFilePrefix(path, 1 << 16));
  NpyArray a;
  LATTICE_RETURN_IF_ERROR(ParseNpyPreamble(path, b, &a));
  return a.shape;
}

StatusOr<std::vector<int64_t>> ReadIdxShape(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadFilePrefix(path, 4 + 4 * 255));
  if (b.size() < 4) return Bad(path, "truncated idx header");
  const uint32_t magic = BigEndian32(b, 0);
  if ((magic >> 8) != 0x08) return Bad(path, "not an idx file of unsigned bytes");
  const size_t ndims = magic & 0xff;
  if (b.size() < 4 + 4 * ndims) return Bad(path, "truncated idx header");
  std::vector<int64_t> dims;
  for (size_t i = 0; i < ndims; ++i) dims.push_back(BigEndian32(b, 4 + 4 * i));
  return dims;
}

namespace {

// A 1-D integer .npy; `noun` names its values in errors ("labels", "ids").
StatusOr<std::vector<int64_t>> ReadNpyIntegers(const std::string& path, const std::string& noun) {
  LATTICE_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  if (a.shape.size() != 1) {
    return Bad(path, "expected 1-D integer " + noun + ", got " + std::to_string(a.shape.size()) +
                         "-D");
  }
  if (a.descr == "<f4" || a.descr == "<f8") {
    return Bad(path, noun + " must be integers (<i8, <i4 or u1), got '" + a.descr + "'");
  }
  std::vector<int64_t> values(static_cast<size_t>(a.count));
  ConvertNpy(a, values.data());
  return values;
}

}  // namespace

StatusOr<std::vector<int64_t>> LoadNpyIds(const std::string& path) {
  return ReadNpyIntegers(path, "ids");
}

StatusOr<std::vector<int64_t>> LoadNpyLabels(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::vector<int64_t> labels, ReadNpyIntegers(path, "labels"));
  LATTICE_RETURN_IF_ERROR(CheckLabels(path, labels));
  return labels;
}

StatusOr<std::string> ReadDataFile(const std::string& path) { return ReadFile(path); }

StatusOr<FeatureMatrix> LoadIdxImages(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadFile(path));
  std::vector<int64_t> dims;
  LATTICE_ASSIGN_OR_RETURN(size_t offset, ReadIdxHeader(path, b, 2051, &dims));
  FeatureMatrix m;
  m.rows = dims[0];
  m.cols = dims[1] * dims[2];
  m.data.resize(static_cast<size_t>(m.rows * m.cols));
  const auto* u = reinterpret_cast<const unsigned char*>(b.data() + offset);
  for (size_t i = 0; i < m.data.size(); ++i) m.data[i] = static_cast<float>(u[i]);
  return m;
}

StatusOr<std::vector<int64_t>> LoadIdxLabels(const std::string& path) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadFile(path));
  std::vector<int64_t> dims;
  LATTICE_ASSIGN_OR_RETURN(size_t offset, ReadIdxHeader(path, b, 2049, &dims));
  const auto* u = reinterpret_cast<const unsigned char*>(b.data() + offset);
  return std::vector<int64_t>(u, u + dims[0]);
}

StatusOr<DatasetPart> LoadCsv(const std::string& path, int label_column, bool header,
                              int64_t max_rows) {
  LATTICE_ASSIGN_OR_RETURN(std::string b, ReadFile(path));
  DatasetPart part;
  std::vector<double> values;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < b.size() && (max_rows <= 0 || part.features.rows < max_rows)) {
    size_t eol = b.find('\n', pos);
    if (eol == std::string::npos) eol = b.size();
    ++line_no;
    const char* s = b.data() + pos;
    const char* e = b.data() + eol;
    pos = eol + 1;
    if (header && line_no == 1) continue;
    while (e > s && (e[-1] == '\r' || e[-1] == ' ')) --e;
    if (e == s) continue;  // blank line
    std::string where = path + ": line " + std::to_string(line_no);
    if (!ParseCsvLine(s, e, &values)) return Bad(where, "malformed number");
    LATTICE_RETURN_IF_ERROR(AppendCsvRow(where, values, label_column, &part));
  }
  if (part.features.rows == 0) return Bad(path, "no data rows");
  return part;
}

namespace {

// Loads one part (training or validation files) with key-path context on errors.
StatusOr<DatasetPart> LoadPart(const DatasetConfig& c, const DatasetFiles& files,
                               const std::string& path) {
  auto [fkey, lkey] = DatasetFileKeys(c.format);
  std::string fpath = path + "." + fkey;
  std::string lpath = path + "." + lkey;
  DatasetPart part;
  if (c.format == DatasetFormat::kCsv) {
    auto r = LoadCsv(files.features, c.label_column, c.header, c.limit.value_or(0));
    if (!r.ok()) return r.status().WithContext(fpath);
    part = std::move(r).value();
  } else {
    bool npy = c.format == DatasetFormat::kNpy;
    auto f = npy ? LoadNpyTokens(files.features) : LoadIdxImages(files.features);
    if (!f.ok()) return f.status().WithContext(fpath);
    part.features = std::move(f).value();
    if (files.labels.empty()) {  // targets without labels (jobs/token_data.h)
      part.labels.assign(static_cast<size_t>(part.features.rows), 0);
    } else {
      auto l = npy ? LoadNpyLabels(files.labels) : LoadIdxLabels(files.labels);
      if (!l.ok()) return l.status().WithContext(lpath);
      part.labels = std::move(l).value();
    }
    if (static_cast<int64_t>(part.labels.size()) != part.features.rows) {
      return Bad(lpath, files.labels + " has " + std::to_string(part.labels.size()) +
                            " labels but " + files.features + " has " +
                            std::to_string(part.features.rows) + " rows");
    }
    LATTICE_RETURN_IF_ERROR(FinishTokenPart(c, files, path, &part));
  }
  if (c.limit && *c.limit < part.features.rows) {
    part.features.rows = *c.limit;
    part.features.data.resize(static_cast<size_t>(part.features.rows * part.features.cols));
    part.labels.resize(static_cast<size_t>(*c.limit));
    if (part.targets.rows > *c.limit) {
      part.targets.rows = *c.limit;
      part.targets.data.resize(static_cast<size_t>(part.targets.rows * part.targets.cols));
    }
  }
  if (!c.classes.empty()) {
    const bool training_file = &files == &c.train;
    LATTICE_RETURN_IF_ERROR(internal::SelectClasses(
        c.classes, training_file ? c.rows_per_class : std::vector<int64_t>(), "dataset", &part));
  }
  if (c.scale) {
    float s = static_cast<float>(*c.scale);
    for (float& v : part.features.data) v *= s;
  }
  if (part.features.rows == 0 || part.features.cols == 0) {
    return Bad(fpath, files.features + ": empty dataset");
  }
  return part;
}

}  // namespace

StatusOr<LoadedDataset> LoadDataset(const DatasetConfig& config) {
  LoadedDataset d;
  LATTICE_ASSIGN_OR_RETURN(d.train, LoadPart(config, config.train, "dataset"));
  if (config.validation) {
    LATTICE_ASSIGN_OR_RETURN(d.validation,
                             LoadPart(config, *config.validation, "dataset.validation"));
    if (d.validation->features.cols != d.train.features.cols) {
      return Bad("dataset.validation", "validation data has " +
                                           std::to_string(d.validation->features.cols) +
                                           " features, training data has " +
                                           std::to_string(d.train.features.cols));
    }
  } else if (d.train.features.rows < 2) {
    return Bad("dataset", "need at least 2 rows to split off a validation set");
  }
  if (config.test) {
    LATTICE_ASSIGN_OR_RETURN(d.test, LoadPart(config, *config.test, "dataset.test"));
    if (d.test->features.cols != d.train.features.cols) {
      return Bad("dataset.test", "test data has " + std::to_string(d.test->features.cols) +
                                     " features, training data has " +
                                     std::to_string(d.train.features.cols));
    }
  }
  int64_t max_label = 0;
  for (const std::optional<DatasetPart>* part : {&d.validation, &d.test}) {
    if (*part) {
      for (int64_t l : (*part)->labels) max_label = std::max(max_label, l);
    }
  }
  for (int64_t l : d.train.labels) max_label = std::max(max_label, l);
  d.num_classes = config.classes.empty() ? max_label + 1 : static_cast<int64_t>(config.classes.size());
  return d;
}

StatusOr<SplitIndices> MakeSplit(int64_t num_rows, double validation_fraction, uint64_t seed) {
  if (num_rows < 2) return Bad("dataset.split", "need at least 2 rows to split");
  std::vector<int64_t> perm(static_cast<size_t>(num_rows));
  for (int64_t i = 0; i < num_rows; ++i) perm[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = num_rows - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  int64_t n_val = std::llround(static_cast<double>(num_rows) * validation_fraction);
  n_val = std::clamp<int64_t>(n_val, 1, num_rows - 1);
  SplitIndices s;
  s.validation.assign(perm.begin(), perm.begin() + n_val);
  s.train.assign(perm.begin() + n_val, perm.end());
  return s;
}

StatusOr<SplitIndices> MakeDatasetSplit(const std::vector<int64_t>& labels,
                                        const DatasetConfig& config) {
  if (!config.stratify && config.test_fraction == 0) {
    return MakeSplit(static_cast<int64_t>(labels.size()), config.validation_fraction,
                     config.split_seed);
  }
  return internal::StratifiedSplit(labels, config);
}

DatasetCache::DatasetCache(size_t max_entries, Loader loader)
    : max_entries_(std::max<size_t>(1, max_entries)), loader_(std::move(loader)) {}

std::shared_ptr<DatasetCache::Entry> DatasetCache::Acquire(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = entries_[key];
  if (!slot) slot = std::make_shared<Entry>();
  std::shared_ptr<Entry> entry = slot;
  lru_.remove(key);
  lru_.push_front(key);
  while (lru_.size() > max_entries_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  return entry;
}

StatusOr<std::shared_ptr<const LoadedDataset>> DatasetCache::Get(const DatasetConfig& config) {
  std::shared_ptr<Entry> entry = Acquire(config.CacheKey());
  std::lock_guard<std::mutex> load_lock(entry->mu);
  if (entry->data) return entry->data;
  ++loads_;
  LATTICE_ASSIGN_OR_RETURN(LoadedDataset loaded, loader_(config));
  entry->data = std::make_shared<const LoadedDataset>(std::move(loaded));
  return entry->data;
}

StatusOr<std::shared_ptr<const FeatureMatrix>> DatasetCache::GetFeatures(
    const std::string& key, const FeatureLoader& load) {
  // Dataset keys are JSON objects ("{...}"), so this prefix keeps the key spaces apart.
  std::shared_ptr<Entry> entry = Acquire("features:" + key);
  std::lock_guard<std::mutex> load_lock(entry->mu);
  if (entry->features) return entry->features;
  ++loads_;
  LATTICE_ASSIGN_OR_RETURN(FeatureMatrix loaded, load());
  entry->features = std::make_shared<const FeatureMatrix>(std::move(loaded));
  return entry->features;
}

}  // namespace lattice::jobs
