#include "jobs/embed_config.h"

#include <sys/stat.h>

#include <set>

#include "jobs/internal/config_fields.h"

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

const char* CorpusFileKey(CorpusFormat format) {
  return format == CorpusFormat::kIdx ? "images" : "features";
}

StatusOr<EncoderConfig> ParseEncoder(const json& e, const std::string& path) {
  EncoderConfig c;
  if (!e.is_object()) return Bad(path, "expected an object, got " + TypeName(e));
  if (!Find(e, "type")) return Bad(Join(path, "type"), "required");
  LATTICE_RETURN_IF_ERROR(GetEnum<EncoderType>(
      e, "type", path,
      {{"flatten", EncoderType::kFlatten}, {"identity", EncoderType::kFlatten},
       {"torchscript", EncoderType::kTorchScript}},
      &c.type));
  if (c.type == EncoderType::kFlatten) {
    LATTICE_RETURN_IF_ERROR(CheckObject(e, path, {"type"}));
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
      d, "format", path, {{"npy", CorpusFormat::kNpy}, {"idx", CorpusFormat::kIdx}}, &c.format));
  const char* fkey = CorpusFileKey(c.format);
  LATTICE_RETURN_IF_ERROR(CheckObject(d, path, {"format", "scale", "limit", fkey}));
  LATTICE_RETURN_IF_ERROR(GetString(d, fkey, path, &c.file));
  if (c.file.empty()) return Bad(Join(path, fkey), "required");
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

}  // namespace

std::string CorpusConfig::CacheKey() const {
  json key = {{"format", format == CorpusFormat::kIdx ? "idx" : "npy"},
              {"file", file},
              {"scale", scale ? json(*scale) : json(nullptr)},
              {"limit", limit ? json(*limit) : json(nullptr)}};
  return key.dump();
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
  return CheckFile(config.corpus.file,
                   std::string("corpus.") + CorpusFileKey(config.corpus.format));
}

StatusOr<FeatureMatrix> LoadCorpus(const CorpusConfig& config) {
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
  if (config.scale) {
    const float s = static_cast<float>(*config.scale);
    for (float& v : m.data) v *= s;
  }
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

}  // namespace lattice::jobs
