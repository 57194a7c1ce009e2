#include "jobs/embed_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "jobs/corpus_rows.h"
#include "jobs/internal/config_fields.h"
#include "jobs/internal/image_folder.h"

namespace lattice::jobs {
namespace {

using internal::AsInt;
using internal::Bad;
using internal::Bound;
using internal::CheckObject;
using internal::Find;
using internal::GetBool;
using internal::GetEnum;
using internal::GetInt;
using internal::GetNumber;
using internal::GetString;
using internal::Join;
using internal::TypeName;
using nlohmann::json;

constexpr int64_t kMaxImageSide = 16384;

const char* CorpusFileKey(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::kIdx: return "images";
    case CorpusFormat::kImages: return "dir";
    case CorpusFormat::kNpy: break;
  }
  return "features";
}

const char* FormatName(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::kIdx: return "idx";
    case CorpusFormat::kImages: return "images";
    case CorpusFormat::kNpy: break;
  }
  return "npy";
}

// The keys of format "images": size (required), channels, extensions.
Status ParseImageKeys(const json& d, const std::string& path, CorpusConfig* c) {
  const json* size = Find(d, "size");
  const std::string sp = Join(path, "size");
  if (!size) return Bad(sp, "required ([H, W])");
  if (!size->is_array() || size->size() != 2 || !(*size)[0].is_number_integer() ||
      !(*size)[1].is_number_integer() || (*size)[0].get<int64_t>() < 1 ||
      (*size)[1].get<int64_t>() < 1 || (*size)[0].get<int64_t>() > kMaxImageSide ||
      (*size)[1].get<int64_t>() > kMaxImageSide) {
    return Bad(sp, "must be [H, W] with integers in [1, " + std::to_string(kMaxImageSide) +
                       "], got " + size->dump());
  }
  c->height = static_cast<int>((*size)[0].get<int64_t>());
  c->width = static_cast<int>((*size)[1].get<int64_t>());
  int64_t channels = c->channels;
  LATTICE_RETURN_IF_ERROR(GetInt(d, "channels", path, &channels, 1, 3));
  if (channels == 2) return Bad(Join(path, "channels"), "must be 1 or 3, got 2");
  c->channels = static_cast<int>(channels);
  if (const json* exts = Find(d, "extensions")) {
    const std::string ep = Join(path, "extensions");
    if (!exts->is_array() || exts->empty()) {
      return Bad(ep, "expected a non-empty array of strings, got " + exts->dump());
    }
    c->extensions.clear();
    for (size_t i = 0; i < exts->size(); ++i) {
      const json& e = (*exts)[i];
      if (!e.is_string() || e.get<std::string>().size() < 2 || e.get<std::string>()[0] != '.') {
        return Bad(ep + "[" + std::to_string(i) + "]",
                   "expected a string like \".png\", got " + e.dump());
      }
      std::string ext = e.get<std::string>();
      for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      c->extensions.push_back(ext);
    }
  }
  return Status::Ok();
}

StatusOr<EncoderConfig> ParseEncoder(const json& e, const std::string& path) {
  EncoderConfig c;
  if (!e.is_object()) return Bad(path, "expected an object, got " + TypeName(e));
  if (!Find(e, "type")) return Bad(Join(path, "type"), "required");
  LATTICE_RETURN_IF_ERROR(GetEnum<EncoderType>(
      e, "type", path,
      {{"flatten", EncoderType::kFlatten}, {"identity", EncoderType::kFlatten},
       {"torchscript", EncoderType::kTorchScript}, {"trial", EncoderType::kTrial}},
      &c.type));
  if (c.type == EncoderType::kFlatten) {
    LATTICE_RETURN_IF_ERROR(CheckObject(e, path, {"type"}));
    return c;
  }
  if (c.type == EncoderType::kTrial) {
    LATTICE_RETURN_IF_ERROR(CheckObject(e, path, {"type", "trial", "layer"}));
    LATTICE_RETURN_IF_ERROR(GetString(e, "trial", path, &c.trial));
    if (c.trial.empty()) return Bad(Join(path, "trial"), "required (a trial id such as s3-t4)");

    LATTICE_RETURN_IF_ERROR(GetInt(e, "layer", path, &c.layer, -1000, 1000));
    return c;
  }
  LATTICE_RETURN_IF_ERROR(CheckObject(e, path, {"type", "path", "input_shape"}));
  LATTICE_RETURN_IF_ERROR(GetString(e, "path", path, &c.path));
  if (c.path.empty()) return Bad(Join(path, "path"), "required");
  if (const json* shape = Find(e, "input_shape")) {
    std::string p = Join(path, "input_shape");
    if (!shape->is_array() || shape->empty()) {
      return Bad(p, "expected a non-empty array of integers, got " + shape->dump());
    }
    for (size_t i = 0; i < shape->size(); ++i) {
      std::string pi = p + "[" + std::to_string(i) + "]";
      LATTICE_ASSIGN_OR_RETURN(int64_t d, AsInt((*shape)[i], pi));
      if (d < 1) return Bad(pi, "must be >= 1, got " + std::to_string(d));
      c.input_shape.push_back(d);
    }
  }
  return c;
}

StatusOr<CorpusConfig> ParseCorpus(const json& d, const std::string& path) {
  CorpusConfig c;
  if (!d.is_object()) return Bad(path, "expected an object, got " + TypeName(d));
  LATTICE_RETURN_IF_ERROR(GetEnum<CorpusFormat>(
      d, "format", path,
      {{"npy", CorpusFormat::kNpy}, {"idx", CorpusFormat::kIdx}, {"images", CorpusFormat::kImages}},
      &c.format));
  const char* fkey = CorpusFileKey(c.format);
  if (c.format == CorpusFormat::kImages) {
    LATTICE_RETURN_IF_ERROR(CheckObject(
        d, path, {"format", "scale", "limit", "ids", fkey, "size", "channels", "extensions"}));
    LATTICE_RETURN_IF_ERROR(ParseImageKeys(d, path, &c));
  } else {
    LATTICE_RETURN_IF_ERROR(
        CheckObject(d, path, {"format", "scale", "limit", "ids", fkey, "labels"}));
    LATTICE_RETURN_IF_ERROR(GetString(d, "labels", path, &c.labels));
  }
  LATTICE_RETURN_IF_ERROR(GetString(d, fkey, path, &c.file));
  if (c.file.empty()) return Bad(Join(path, fkey), "required");
  LATTICE_RETURN_IF_ERROR(GetString(d, "ids", path, &c.ids));
  if (Find(d, "scale")) {
    double scale = 1.0;
    LATTICE_RETURN_IF_ERROR(GetNumber(d, "scale", path, &scale, Bound::kNone, 0.0));
    c.scale = scale;
  }
  if (Find(d, "limit")) {
    int64_t limit = 0;
    LATTICE_RETURN_IF_ERROR(GetInt(d, "limit", path, &limit, 1));
    c.limit = limit;
  }
  return c;
}

Status ParseShard(const json& s, const std::string& path, EmbedConfig* c) {
  LATTICE_RETURN_IF_ERROR(CheckObject(s, path, {"begin", "end"}));
  LATTICE_RETURN_IF_ERROR(GetInt(s, "begin", path, &c->shard_begin, 0));
  if (Find(s, "end")) {
    std::string p = Join(path, "end");
    LATTICE_ASSIGN_OR_RETURN(int64_t end, AsInt(s["end"], p));
    if (end <= c->shard_begin) {
      return Bad(p, "must be > shard.begin (" + std::to_string(c->shard_begin) + "), got " +
                        std::to_string(end));
    }
    c->shard_end = end;
  }
  return Status::Ok();
}

Status CheckFile(const std::string& file, const std::string& path) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Bad(path, "file not found: " + file);
  }
  return Status::Ok();
}

Status CheckShardRange(int64_t rows, int64_t begin, int64_t end) {
  if (begin < 0 || begin >= rows) {
    return Status::InvalidArgument("shard.begin: " + std::to_string(begin) +
                                   " is outside the corpus rows [0, " + std::to_string(rows) +
                                   ")");
  }
  if (end <= begin) {
    return Status::InvalidArgument("shard.end: must be > shard.begin (" +
                                   std::to_string(begin) + "), got " + std::to_string(end));
  }
  if (end > rows) {
    return Status::InvalidArgument("shard.end: " + std::to_string(end) +
                                   " is beyond the corpus rows (" + std::to_string(rows) + ")");
  }
  return Status::Ok();
}

// The image files of an images corpus, after `limit`.
StatusOr<std::vector<std::string>> ListCorpusImages(const CorpusConfig& config) {
  LATTICE_ASSIGN_OR_RETURN(std::vector<std::string> files,
                           internal::ListImageFiles(config.file, config.extensions));
  if (config.limit && *config.limit < static_cast<int64_t>(files.size())) {
    files.resize(static_cast<size_t>(*config.limit));
  }
  if (files.empty()) return Bad("corpus.dir", config.file + ": no image files");
  return files;
}

// Scales (when configured) and records whether every value is finite: one pass, at load,
// so the shards of a cached corpus need not check their rows again.
void FinishCorpus(const CorpusConfig& config, FeatureMatrix* m) {
  const float s = config.scale ? static_cast<float>(*config.scale) : 1.0f;
  bool finite = true;
  for (float& v : m->data) {
    v *= s;
    finite &= std::isfinite(v);
  }
  m->all_finite = finite;
}

// Decodes files[begin, end) into a matrix of C*H*W columns (then `scale`).
StatusOr<FeatureMatrix> DecodeImages(const CorpusConfig& config,
                                     const std::vector<std::string>& files, int64_t begin,
                                     int64_t end) {
  FeatureMatrix m;
  m.rows = end - begin;
  m.cols = static_cast<int64_t>(config.channels) * config.height * config.width;
  m.data.resize(static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    LATTICE_RETURN_IF_ERROR(internal::DecodeImage(files[static_cast<size_t>(begin + r)],
                                                  config.height, config.width, config.channels,
                                                  m.data.data() + r * m.cols));
  }
  FinishCorpus(config, &m);
  return m;
}

// {"label": l} for labels[begin, end); the labels must number the corpus rows before limit.
StatusOr<std::vector<std::string>> LabelMetadata(const CorpusConfig& config, int64_t begin,
                                                 int64_t end) {
  auto labels = config.format == CorpusFormat::kIdx ? LoadIdxLabels(config.labels)
                                                    : LoadNpyLabels(config.labels);
  if (!labels.ok()) return labels.status().WithContext("corpus.labels");
  CorpusConfig unlimited = config;
  unlimited.limit.reset();
  LATTICE_ASSIGN_OR_RETURN(int64_t rows, CountCorpusRows(unlimited));
  if (static_cast<int64_t>(labels->size()) != rows) {
    return Bad("corpus.labels", config.labels + ": " + std::to_string(labels->size()) +
                                    " labels for " + std::to_string(rows) + " corpus rows");
  }
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(end - begin));
  for (int64_t r = begin; r < end; ++r) {
    out.push_back(json{{"label", (*labels)[static_cast<size_t>(r)]}}.dump());
  }
  return out;
}

}  // namespace

std::string CorpusConfig::CacheKey() const {
  json key = {{"format", FormatName(format)},
              {"file", file},
              {"scale", scale ? json(*scale) : json(nullptr)},
              {"limit", limit ? json(*limit) : json(nullptr)}};
  if (format == CorpusFormat::kImages) {
    key["size"] = {height, width};
    key["channels"] = channels;
    key["extensions"] = extensions;
  }
  return key.dump();
}

StatusOr<EncoderConfig> ParseEncoderConfig(const json& encoder, const std::string& path) {
  return ParseEncoder(encoder, path);
}

StatusOr<EmbedConfig> ParseEmbedConfig(const json& config) {
  EmbedConfig c;
  if (!config.is_object()) return Bad("config", "expected an object, got " + TypeName(config));
  LATTICE_RETURN_IF_ERROR(CheckObject(config, "",
                                      {"kind", "name", "seed", "encoder", "corpus", "pooling",
                                       "normalize", "batch_size", "shard", "index"}));
  int64_t seed = 0;
  LATTICE_RETURN_IF_ERROR(GetInt(config, "seed", "", &seed, 0));
  c.seed = static_cast<uint64_t>(seed);
  const json* encoder = Find(config, "encoder");
  if (!encoder) return Bad("encoder", "required");
  LATTICE_ASSIGN_OR_RETURN(c.encoder, ParseEncoder(*encoder, "encoder"));
  const json* corpus = Find(config, "corpus");
  if (!corpus) return Bad("corpus", "required");
  LATTICE_ASSIGN_OR_RETURN(c.corpus, ParseCorpus(*corpus, "corpus"));
  LATTICE_RETURN_IF_ERROR(GetEnum<Pooling>(
      config, "pooling", "",
      {{"mean", Pooling::kMean}, {"cls", Pooling::kCls}, {"last", Pooling::kLast}}, &c.pooling));
  LATTICE_RETURN_IF_ERROR(GetBool(config, "normalize", "", &c.normalize));
  LATTICE_RETURN_IF_ERROR(GetInt(config, "batch_size", "", &c.batch_size, 1));
  if (const json* shard = Find(config, "shard")) {
    LATTICE_RETURN_IF_ERROR(ParseShard(*shard, "shard", &c));
  }
  if (const json* index = Find(config, "index"); index && !index->is_object()) {
    return Bad("index", "expected an object, got " + TypeName(*index));
  }
  return c;
}

Status CheckEmbedFilesExist(const EmbedConfig& config) {
  if (config.encoder.type == EncoderType::kTorchScript) {
    LATTICE_RETURN_IF_ERROR(CheckFile(config.encoder.path, "encoder.path"));
  }
  if (!config.corpus.ids.empty()) LATTICE_RETURN_IF_ERROR(CheckFile(config.corpus.ids, "corpus.ids"));
  if (config.corpus.format == CorpusFormat::kImages) {
    struct stat st;
    if (::stat(config.corpus.file.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return Bad("corpus.dir", "not a directory: " + config.corpus.file);
    }
    return Status::Ok();
  }
  if (!config.corpus.labels.empty()) {
    LATTICE_RETURN_IF_ERROR(CheckFile(config.corpus.labels, "corpus.labels"));
  }
  return CheckFile(config.corpus.file,
                   std::string("corpus.") + CorpusFileKey(config.corpus.format));
}

StatusOr<FeatureMatrix> LoadCorpus(const CorpusConfig& config) {
  if (config.format == CorpusFormat::kImages) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<std::string> files, ListCorpusImages(config));
    return DecodeImages(config, files, 0, static_cast<int64_t>(files.size()));
  }
  const std::string path = std::string("corpus.") + CorpusFileKey(config.format);
  auto loaded = config.format == CorpusFormat::kIdx ? LoadIdxImages(config.file)
                                                    : LoadNpyFeatures(config.file);
  if (!loaded.ok()) return loaded.status().WithContext(path);
  FeatureMatrix m = std::move(loaded).value();
  if (config.limit && *config.limit < m.rows) {
    m.rows = *config.limit;
    m.data.resize(static_cast<size_t>(m.rows * m.cols));
    m.data.shrink_to_fit();
  }
  FinishCorpus(config, &m);
  if (m.rows == 0 || m.cols == 0) return Bad(path, config.file + ": empty corpus");
  return m;
}

StatusOr<std::shared_ptr<const FeatureMatrix>> LoadCorpusCached(const CorpusConfig& config,
                                                                DatasetCache* cache) {
  if (cache != nullptr) {
    return cache->GetFeatures(config.CacheKey(), [&config] { return LoadCorpus(config); });
  }
  LATTICE_ASSIGN_OR_RETURN(FeatureMatrix m, LoadCorpus(config));
  return std::make_shared<const FeatureMatrix>(std::move(m));
}

StatusOr<CorpusShard> LoadCorpusShard(const CorpusConfig& config, int64_t begin,
                                      std::optional<int64_t> end, DatasetCache* cache) {
  CorpusShard shard;
  shard.begin = begin;
  if (config.format == CorpusFormat::kImages) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<std::string> files, ListCorpusImages(config));
    const int64_t rows = static_cast<int64_t>(files.size());
    shard.end = end.value_or(rows);
    LATTICE_RETURN_IF_ERROR(CheckShardRange(rows, shard.begin, shard.end));
    LATTICE_ASSIGN_OR_RETURN(FeatureMatrix m, DecodeImages(config, files, begin, shard.end));
    shard.matrix = std::make_shared<const FeatureMatrix>(std::move(m));
    shard.offset = begin;
    shard.metadata.reserve(static_cast<size_t>(shard.end - begin));
    for (int64_t r = begin; r < shard.end; ++r) {
      // replace: a non-UTF-8 file name must not throw
      shard.metadata.push_back(json{{"path", files[static_cast<size_t>(r)]}}.dump(
          -1, ' ', false, json::error_handler_t::replace));
    }
    return shard;
  }
  LATTICE_ASSIGN_OR_RETURN(shard.matrix, LoadCorpusCached(config, cache));
  shard.end = end.value_or(shard.matrix->rows);
  LATTICE_RETURN_IF_ERROR(CheckShardRange(shard.matrix->rows, shard.begin, shard.end));
  if (!config.labels.empty()) {
    LATTICE_ASSIGN_OR_RETURN(shard.metadata, LabelMetadata(config, shard.begin, shard.end));
  }
  return shard;
}

}  // namespace lattice::jobs
