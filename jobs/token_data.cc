#include "jobs/token_data.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "jobs/internal/config_fields.h"

namespace lattice::jobs {
namespace {

using internal::Bad;
using internal::Join;

// `r`, its error prefixed with `context`.
template <typename T>
StatusOr<T> In(StatusOr<T> r, const std::string& context) {
  if (!r.ok()) return r.status().WithContext(context);
  return r;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const char* ModelTypeName(ModelType t) {
  switch (t) {
    case ModelType::kLinear: return "linear";
    case ModelType::kMlp2: return "mlp2";
    case ModelType::kCAbstractor: return "c_abstractor";
    case ModelType::kPerceiver: return "perceiver";
    default: return "?";
  }
}

// The targets pair with the features row by row: as many rows, or with dataset.limit at
// least the limit's rows (of which only those are used).
Status CheckTargetRows(int64_t target_rows, int64_t feature_rows, std::optional<int64_t> limit,
                       const std::string& targets, const std::string& features,
                       const std::string& key) {
  const int64_t used = limit ? std::min(*limit, feature_rows) : feature_rows;
  if (target_rows == feature_rows || (limit && target_rows >= used)) return Status::Ok();
  return Bad(key, targets + " has " + std::to_string(target_rows) + " rows but " + features +
                      " has " + std::to_string(feature_rows) +
                      (limit ? " (dataset.limit uses " + std::to_string(used) + ")" : ""));
}

}  // namespace

Status ParseTokenOptions(const nlohmann::json& dataset, const std::string& path,
                         DatasetConfig* config) {
  const nlohmann::json* tokens = internal::Find(dataset, "tokens");
  if (tokens == nullptr) return Status::Ok();
  const std::string tp = Join(path, "tokens");
  if (!tokens->is_object()) return Bad(tp, "expected an object, got " + internal::TypeName(*tokens));
  LATTICE_RETURN_IF_ERROR(internal::CheckObject(*tokens, tp, {"patch"}));
  if (internal::Find(*tokens, "patch") == nullptr) return Bad(Join(tp, "patch"), "required");
  LATTICE_RETURN_IF_ERROR(internal::GetInt(*tokens, "patch", tp, &config->patch, 1));
  if (config->format != DatasetFormat::kIdx) {
    return Bad(Join(tp, "patch"), "patch tokens are cut from idx images (format: idx); a .npy "
                                  "gives its tokens as a 3-D array [N, T, D]");
  }
  return Status::Ok();
}

StatusOr<FeatureMatrix> PatchTokens(const FeatureMatrix& images, int64_t height, int64_t width,
                                    int64_t patch, const std::string& path) {
  if (height * width != images.cols) {
    return Bad(path, "images of " + std::to_string(height) + " x " + std::to_string(width) +
                         " pixels do not match rows of " + std::to_string(images.cols) + " values");
  }
  if (patch < 1 || height % patch != 0 || width % patch != 0) {
    return Bad(Join(path, "tokens.patch"), std::to_string(patch) + " does not divide the " +
                                               std::to_string(height) + " x " +
                                               std::to_string(width) + " images");
  }
  const int64_t gh = height / patch, gw = width / patch, dim = patch * patch;
  FeatureMatrix out;
  out.rows = images.rows;
  out.cols = images.cols;
  out.tokens = gh * gw;
  out.data.resize(images.data.size());
  for (int64_t r = 0; r < images.rows; ++r) {
    const float* src = images.data.data() + r * images.cols;
    float* dst = out.data.data() + r * out.cols;
    for (int64_t py = 0; py < gh; ++py) {
      for (int64_t px = 0; px < gw; ++px) {
        float* token = dst + (py * gw + px) * dim;
        for (int64_t y = 0; y < patch; ++y) {
          for (int64_t x = 0; x < patch; ++x) {
            token[y * patch + x] = src[(py * patch + y) * width + px * patch + x];
          }
        }
      }
    }
  }
  return out;
}

Status CheckFinite(FeatureMatrix* m, const std::string& where) {
  for (size_t i = 0; i < m->data.size(); ++i) {
    if (!std::isfinite(m->data[i])) {
      const int64_t row = m->cols > 0 ? static_cast<int64_t>(i) / m->cols : 0;
      return Status::InvalidArgument(where + ": row " + std::to_string(row) + " holds " +
                                     (std::isnan(m->data[i]) ? "NaN" : "Inf"));
    }
  }
  m->all_finite = true;
  return Status::Ok();
}

Status FinishTokenPart(const DatasetConfig& config, const DatasetFiles& files,
                       const std::string& path, DatasetPart* part) {
  const std::string fkey = config.format == DatasetFormat::kIdx ? "images" : "features";
  const std::string fpath = Join(path, fkey);
  if (config.patch > 0) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<int64_t> dims,
                             In(ReadIdxShape(files.features), fpath));
    if (dims.size() != 3) return Bad(fpath, files.features + ": expected 3-D idx images");
    LATTICE_ASSIGN_OR_RETURN(part->features,
                             PatchTokens(part->features, dims[1], dims[2], config.patch, path));
  }
  if (part->features.tokens > 0) {
    LATTICE_RETURN_IF_ERROR(CheckFinite(&part->features, fpath + ": " + files.features));
  }
  if (files.targets.empty()) return Status::Ok();
  const std::string tpath = Join(path, "targets");
  LATTICE_ASSIGN_OR_RETURN(part->targets, In(LoadNpyFeatures(files.targets), tpath));
  LATTICE_RETURN_IF_ERROR(CheckTargetRows(part->targets.rows, part->features.rows, config.limit,
                                          files.targets, files.features, tpath));
  if (part->targets.rows > part->features.rows) {  // only the limit's rows pair (LoadPart)
    part->targets.rows = part->features.rows;
    part->targets.data.resize(static_cast<size_t>(part->targets.rows * part->targets.cols));
  }
  return CheckFinite(&part->targets, tpath + ": " + files.targets);
}

StatusOr<TokenDataShape> CheckAlignmentData(const JobConfig& config) {
  const DatasetConfig& d = config.dataset;
  TokenDataShape shape;
  const std::string projector =
      std::string("a projector (model.type ") + ModelTypeName(config.model.type) + ")";
  if (d.format == DatasetFormat::kIdx) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<int64_t> dims,
                             In(ReadIdxShape(d.train.features), "dataset.images"));
    if (d.patch == 0) {
      return Bad("dataset.tokens", projector + " needs token sequences: give idx images as " +
                                       "patch tokens with dataset.tokens: {patch: P}");
    }
    if (dims.size() != 3) return Bad("dataset.images", d.train.features + ": expected 3-D idx images");
    if (dims[1] % d.patch != 0 || dims[2] % d.patch != 0) {
      return Bad("dataset.tokens.patch", std::to_string(d.patch) + " does not divide the " +
                                             std::to_string(dims[1]) + " x " +
                                             std::to_string(dims[2]) + " images");
    }
    shape.rows = dims[0];
    shape.tokens = (dims[1] / d.patch) * (dims[2] / d.patch);
    shape.dim = d.patch * d.patch;
  } else if (d.format == DatasetFormat::kNpy) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<int64_t> dims,
                             In(ReadNpyShape(d.train.features), "dataset.features"));
    if (dims.size() != 3) {
      return Bad("dataset.features",
                 d.train.features + " is " + std::to_string(dims.size()) + "-D " +
                     ShapeText(dims) + ": " + projector +
                     " needs token sequences: a 3-D .npy [N, T, D], or idx images with "
                     "dataset.tokens.patch");
    }
    shape.rows = dims[0], shape.tokens = dims[1], shape.dim = dims[2];
  } else {
    return Bad("dataset.format", projector + " needs token sequences: a 3-D .npy or idx images "
                                 "with dataset.tokens.patch, not csv");
  }
  if (d.train.targets.empty()) {
    return Bad("dataset.targets", "required with alignment: the paired target embeddings, a "
                                  "2-D .npy [N, Dt]");
  }
  LATTICE_ASSIGN_OR_RETURN(std::vector<int64_t> t,
                           In(ReadNpyShape(d.train.targets), "dataset.targets"));
  if (t.size() != 2) {
    return Bad("dataset.targets", d.train.targets + " is " + std::to_string(t.size()) + "-D " +
                                      ShapeText(t) + ", expected 2-D [N, Dt] target embeddings");
  }
  LATTICE_RETURN_IF_ERROR(CheckTargetRows(t[0], shape.rows, d.limit, d.train.targets,
                                          d.train.features, "dataset.targets"));
  shape.target_rows = t[0];
  shape.target_dim = t[1];
  if (config.model.output_dim > 0 && config.model.output_dim != shape.target_dim) {
    return Bad("model.output_dim", std::to_string(config.model.output_dim) +
                                       " does not match the targets' width " +
                                       std::to_string(shape.target_dim) + " (dataset.targets " +
                                       d.train.targets + ")");
  }
  return shape;
}

}  // namespace lattice::jobs
