// Token-sequence data for projector (alignment) jobs (torch-free; library lattice_jobs_config).
//
// A token dataset part is a FeatureMatrix whose rows are T tokens of D values each
// (FeatureMatrix::tokens = T, cols = T * D, row-major: token t of row r starts at
// data[r * cols + t * D]), with, for an alignment job, paired target embeddings
// (DatasetPart::targets, rows x Dt, e.g. text embeddings). Sources:
//   - a 3-D .npy of features [N, T, D] (dataset.features), any dtype the 2-D loader takes;
//   - MNIST idx images as patch tokens: dataset.tokens: {patch: P} cuts each H x W image
//     into (H / P) x (W / P) patches in row-major order, each patch's P x P pixels
//     row-major: 28 x 28 with P = 4 gives 49 tokens of 16 values. P must divide H and W.
// Targets: dataset.targets (and validation.targets / test.targets with explicit files): a
// 2-D .npy [N, Dt] whose row i pairs with feature row i; labels become optional then (all 0
// when absent). Token features and targets must be finite: a NaN or Inf is an error naming
// the file and the row, found when the data is loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/dataset.h"
#include "jobs/train_config.h"

namespace lattice::jobs {

// Parses dataset.tokens ({patch: int >= 1}) into config->patch; absent: no change.
Status ParseTokenOptions(const nlohmann::json& dataset, const std::string& path,
                         DatasetConfig* config);

// Images (rows x H*W, H x W given) cut into P x P patch tokens, as described above.
// Errors: InvalidArgument "dataset.tokens.patch: 5 does not divide the 28 x 28 images".
StatusOr<FeatureMatrix> PatchTokens(const FeatureMatrix& images, int64_t height, int64_t width,
                                    int64_t patch, const std::string& path);

// InvalidArgument "<where>: row 12 holds NaN" for the first non-finite value; sets
// all_finite otherwise.
Status CheckFinite(FeatureMatrix* m, const std::string& where);

// After LoadPart read the features and labels of one part: turns idx images into patch
// tokens (config.patch), loads and checks the targets (rows, finiteness), checks token
// features for NaN. `path` is the part's key path ("dataset", "dataset.validation").
Status FinishTokenPart(const DatasetConfig& config, const DatasetFiles& files,
                       const std::string& path, DatasetPart* part);

// What a projector job's data looks like, from the files' headers only (at submit).
struct TokenDataShape {
  int64_t rows = 0, tokens = 0, dim = 0;  // features: rows x tokens x dim
  int64_t target_rows = 0, target_dim = 0;
};
// Checks the training files of an alignment job without reading their data: the features
// are token sequences (a 3-D .npy, or idx images with dataset.tokens.patch dividing their
// sides), the targets a 2-D .npy with one row per feature row, and model.output_dim (when
// set) equals the targets' width. Errors (InvalidArgument) name the key:
//   "dataset.features: x.npy is 2-D [100, 64]: a projector (model.type perceiver) needs
//    token sequences: a 3-D .npy [N, T, D], or idx images with dataset.tokens.patch"
//   "model.output_dim: 4096 does not match the targets' width 64 (dataset.targets t.npy)"
StatusOr<TokenDataShape> CheckAlignmentData(const JobConfig& config);

}  // namespace lattice::jobs
