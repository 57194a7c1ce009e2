// Corpus format "images" (a folder of image files) and per-row metadata of embed jobs.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "jobs/corpus_rows.h"
#include "jobs/data_roots.h"
#include "jobs/embed_config.h"
#include "jobs/embed_job.h"
#include "jobs/job_config.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

const std::string kFashion = testing::kFashionDir;

// Pixel (y, x, c) of test image `id`: distinct per image, position and channel.
uint8_t Pixel(int id, int y, int x, int c) {
  return static_cast<uint8_t>(id * 40 + y * 9 + x * 3 + c);
}

// Writes an h x w RGB PNG whose pixels are Pixel(id, ...).
void WritePng(const std::string& path, int id, int h, int w) {
  std::vector<uint8_t> px(static_cast<size_t>(h * w * 3));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        px[static_cast<size_t>((y * w + x) * 3 + c)] = Pixel(id, y, x, c);
      }
    }
  }
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, 3, px.data(), w * 3), 0) << path;
}

// Expects `s` to be an error of `code` whose message contains every one of `parts`.
void ExpectError(const Status& s, StatusCode code, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), code) << s.ToString();
  for (const std::string& p : parts) {
    EXPECT_NE(s.message().find(p), std::string::npos) << s.ToString() << " lacks " << p;
  }
}

class ImageCorpusTest : public ::testing::Test {
 protected:
  // dir_: b.png (id 1), a.png (id 0), c.PNG (id 2), all 2 x 3 RGB; plus files that are not
  // items: notes.txt, .hidden.png, sub/d.png (not recursive).
  void SetUp() override {
    WritePng(dir_.Join("b.png"), 1, 2, 3);
    WritePng(dir_.Join("a.png"), 0, 2, 3);
    WritePng(dir_.Join("c.PNG"), 2, 2, 3);
    WritePng(dir_.Join(".hidden.png"), 3, 2, 3);
    testing::WriteText(dir_.Join("notes.txt"), "not an image");
    std::filesystem::create_directory(dir_.Join("sub"));
    WritePng(dir_.Join("sub/d.png"), 4, 2, 3);
  }

  json Config(json corpus_extra = json::object()) const {
    json corpus = {{"format", "images"}, {"dir", dir_.path()}, {"size", {2, 3}}};
    corpus.update(corpus_extra);
    return {{"kind", "embed"}, {"encoder", {{"type", "flatten"}}}, {"corpus", corpus}};
  }

  StatusOr<JobResult> Run(const json& config) {
    LATTICE_RETURN_IF_ERROR(ValidateJobConfig(config));
    JobContext ctx;
    ctx.cache = &cache_;
    ctx.encoders = &encoders_;
    return RunJob(config, ctx);
  }

  // The embeddings of Run(config).
  StatusOr<EmbeddingBlock> Embed(const json& config) {
    LATTICE_ASSIGN_OR_RETURN(JobResult r, Run(config));
    if (!r.embeddings) return Status::Internal("no embeddings");
    return std::move(*r.embeddings);
  }

  testutil::TempDir dir_;
  DatasetCache cache_;
  EncoderCache encoders_;
};

TEST_F(ImageCorpusTest, FlattenGivesChwPixelsInSortedOrderWithPaths) {
  ASSERT_OK_AND_ASSIGN(EmbeddingBlock b, Embed(Config()));
  EXPECT_EQ(b.begin, 0);
  ASSERT_EQ(b.rows, 3);
  ASSERT_EQ(b.dim, 3 * 2 * 3);
  const int ids[] = {0, 1, 2};  // a.png, b.png, c.PNG
  for (int row = 0; row < 3; ++row) {
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 2; ++y) {
        for (int x = 0; x < 3; ++x) {
          EXPECT_EQ(b.vectors[static_cast<size_t>(row * 18 + c * 6 + y * 3 + x)],
                    Pixel(ids[row], y, x, c))
              << "row " << row << " c " << c << " y " << y << " x " << x;
        }
      }
    }
  }
  ASSERT_EQ(b.metadata.size(), 3u);
  EXPECT_EQ(b.metadata[0], json({{"path", dir_.Join("a.png")}}).dump());
  EXPECT_EQ(b.metadata[1], json({{"path", dir_.Join("b.png")}}).dump());
  EXPECT_EQ(b.metadata[2], json({{"path", dir_.Join("c.PNG")}}).dump());
}

TEST_F(ImageCorpusTest, ShardScaleGreyAndResize) {
  json c = Config({{"channels", 1}, {"size", {4, 6}}, {"scale", 0.5}});
  c["shard"] = {{"begin", 1}, {"end", 3}};
  ASSERT_OK_AND_ASSIGN(EmbeddingBlock b, Embed(c));
  EXPECT_EQ(b.begin, 1);
  ASSERT_EQ(b.rows, 2);
  ASSERT_EQ(b.dim, 4 * 6);
  ASSERT_EQ(b.metadata.size(), 2u);
  EXPECT_NE(b.metadata[0].find("b.png"), std::string::npos);
  EXPECT_NE(b.metadata[1].find("c.PNG"), std::string::npos);
  // Upsampled grey values stay near the source image's grey range (times scale); the
  // Catmull-Rom filter may overshoot a little at the clamped edges.
  for (int row = 0; row < 2; ++row) {
    const int id = row + 1;
    const double lo = 0.5 * (Pixel(id, 0, 0, 0) - 4), hi = 0.5 * (Pixel(id, 1, 2, 2) + 4);
    for (int i = 0; i < b.dim; ++i) {
      const float v = b.vectors[static_cast<size_t>(row * b.dim + i)];
      EXPECT_GE(v, lo) << row << " " << i;
      EXPECT_LE(v, hi) << row << " " << i;
    }
  }
}

TEST_F(ImageCorpusTest, CorruptFileFailsOnlyItsShardAndIsNamed) {
  testing::WriteText(dir_.Join("bb.png"), "garbage, not a png");  // row 2 of a, b, bb, c
  json c = Config();
  c["shard"] = {{"begin", 0}, {"end", 2}};
  EXPECT_OK(Run(c).status());  // a shard decodes only its own files
  c["shard"] = {{"begin", 1}, {"end", 4}};
  ExpectError(Run(c).status(), StatusCode::kInvalidArgument,
              {"corpus.dir: " + dir_.Join("bb.png") + ": cannot decode image"});
}

// --data-roots holds for image folders as for other data files: a folder outside the roots
// is refused before it is listed, and an image that is a symlink to a file outside them is
// refused before it is decoded (the folder itself being allowed).
TEST_F(ImageCorpusTest, FoldersAndImagesOutsideTheDataRootsAreRefused) {
  testutil::TempDir allowed;
  std::filesystem::create_symlink(dir_.Join("a.png"), allowed.Join("a.png"));
  WritePng(allowed.Join("b.png"), 1, 2, 3);
  ASSERT_OK(SetDataRoots({allowed.path()}, {}));
  const Status outside = Run(Config()).status();
  json linked = Config();
  linked["corpus"]["dir"] = allowed.path();
  const Status link = Run(linked).status();
  ASSERT_OK(SetDataRoots({"/"}, {}));
  ExpectError(outside, StatusCode::kInvalidArgument,
              {"corpus.dir: " + dir_.path() + ": outside the allowed data roots"});
  ExpectError(link, StatusCode::kInvalidArgument,
              {"corpus.dir: " + allowed.Join("a.png") + ": outside the allowed data roots"});
  // Inside the roots the same folder embeds.
  json inside = Config();
  inside["corpus"]["dir"] = allowed.path();
  ASSERT_OK(SetDataRoots({allowed.path(), dir_.path()}, {}));
  const Status ok = Run(inside).status();
  ASSERT_OK(SetDataRoots({"/"}, {}));
  EXPECT_OK(ok);
}

TEST_F(ImageCorpusTest, ErrorsAfterDecodingNameTheShardOffset) {
  json c = Config();
  c["shard"] = {{"begin", 1}, {"end", 3}};
  JobContext ctx;
  ctx.cancelled = [] { return true; };
  ExpectError(RunJob(c, ctx).status(), StatusCode::kCancelled,
              {"corpus rows from 1", "embed cancelled at row 0"});
}

TEST_F(ImageCorpusTest, CountRowsExtensionsAndLimit) {
  ASSERT_OK_AND_ASSIGN(JobConfig parsed, ParseJobConfig(Config()));
  EXPECT_EQ(parsed.embed->corpus.format, CorpusFormat::kImages);
  EXPECT_EQ(parsed.embed->corpus.channels, 3);
  ASSERT_OK_AND_ASSIGN(int64_t rows, CountCorpusRows(parsed.embed->corpus));
  EXPECT_EQ(rows, 3);
  ASSERT_OK_AND_ASSIGN(parsed, ParseJobConfig(Config({{"limit", 2}})));
  ASSERT_OK_AND_ASSIGN(rows, CountCorpusRows(parsed.embed->corpus));
  EXPECT_EQ(rows, 2);
  // A hand-written binary PGM is an item once ".pgm" is allowed.
  testing::WriteText(dir_.Join("e.pgm"),
                     std::string("P5\n3 2\n255\n") + "\x01\x02\x03\x04\x05\x06");
  json c = Config({{"extensions", {".PGM"}}, {"channels", 1}});
  ASSERT_OK_AND_ASSIGN(parsed, ParseJobConfig(c));
  ASSERT_OK_AND_ASSIGN(rows, CountCorpusRows(parsed.embed->corpus));
  EXPECT_EQ(rows, 1);
  ASSERT_OK_AND_ASSIGN(EmbeddingBlock b, Embed(c));
  EXPECT_EQ(b.vectors, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  // Missing folder.
  CorpusConfig missing = parsed.embed->corpus;
  missing.file = dir_.Join("nope");
  ExpectError(CountCorpusRows(missing).status(), StatusCode::kInvalidArgument,
              {"corpus.dir: not a directory: " + dir_.Join("nope")});
}

TEST_F(ImageCorpusTest, ConfigValidationNamesKeys) {
  const auto kInvalid = StatusCode::kInvalidArgument;
  json c = Config();
  c["corpus"].erase("size");
  ExpectError(ValidateJobConfig(c), kInvalid, {"corpus.size: required"});
  for (json bad : {json::array({2}), json::array({0, 3}), json::array({2, 3, 1}),
                   json::array({"2", 3}), json::array({2, 100000}), json(5)}) {
    ExpectError(ValidateJobConfig(Config({{"size", bad}})), kInvalid,
                {"corpus.size: must be [H, W]"});
  }
  ExpectError(ValidateJobConfig(Config({{"channels", 2}})), kInvalid,
              {"corpus.channels: must be 1 or 3"});
  ExpectError(ValidateJobConfig(Config({{"channels", 4}})), kInvalid, {"corpus.channels"});
  ExpectError(ValidateJobConfig(Config({{"extensions", json::array()}})), kInvalid,
              {"corpus.extensions"});
  ExpectError(ValidateJobConfig(Config({{"extensions", {".png", "jpg"}}})), kInvalid,
              {"corpus.extensions[1]"});
  ExpectError(ValidateJobConfig(Config({{"labels", "y.npy"}})), kInvalid,
              {"corpus.labels: unknown key"});
  ExpectError(ValidateJobConfig(Config({{"dir", dir_.Join("a.png")}})), kInvalid,
              {"corpus.dir: not a directory: " + dir_.Join("a.png")});
  json beyond = Config();
  beyond["shard"] = {{"begin", 1}, {"end", 4}};
  ExpectError(Run(beyond).status(), kInvalid, {"shard.end: 4 is beyond the corpus rows (3)"});
}

TEST_F(ImageCorpusTest, LoadCorpusDecodesTheWholeFolder) {
  ASSERT_OK_AND_ASSIGN(JobConfig parsed, ParseJobConfig(Config({{"scale", 1.0 / 255}})));
  ASSERT_OK_AND_ASSIGN(FeatureMatrix m, LoadCorpus(parsed.embed->corpus));
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 18);
  EXPECT_FLOAT_EQ(m.data[18], Pixel(1, 0, 0, 0) / 255.0f);  // b.png, channel 0, (0, 0)
}

json FashionConfig(int64_t begin, int64_t end) {
  return {{"kind", "embed"},
          {"encoder", {{"type", "flatten"}}},
          {"corpus",
           {{"format", "idx"},
            {"images", kFashion + "/train-images-idx3-ubyte.gz"},
            {"labels", kFashion + "/train-labels-idx1-ubyte.gz"}}},
          {"shard", {{"begin", begin}, {"end", end}}}};
}

TEST_F(ImageCorpusTest, IdxLabelsBecomeMetadata) {
  ASSERT_OK_AND_ASSIGN(EmbeddingBlock b, Embed(FashionConfig(1000, 1100)));
  ASSERT_EQ(b.rows, 100);
  ASSERT_EQ(b.metadata.size(), 100u);
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> labels,
                       LoadIdxLabels(kFashion + "/train-labels-idx1-ubyte.gz"));
  for (int64_t i = 0; i < b.rows; ++i) {
    EXPECT_EQ(b.metadata[static_cast<size_t>(i)],
              "{\"label\":" + std::to_string(labels[static_cast<size_t>(1000 + i)]) + "}");
  }
  // Without labels there is no metadata.
  json plain = FashionConfig(0, 10);
  plain["corpus"].erase("labels");
  ASSERT_OK_AND_ASSIGN(b, Embed(plain));
  EXPECT_EQ(b.rows, 10);
  EXPECT_TRUE(b.metadata.empty());
  // A missing labels file is named.
  json missing = FashionConfig(0, 10);
  missing["corpus"]["labels"] = dir_.Join("nope.gz");
  ExpectError(ValidateJobConfig(missing), StatusCode::kInvalidArgument,
              {"corpus.labels: file not found"});
}

TEST_F(ImageCorpusTest, NpyLabelsMustMatchTheRowCount) {
  const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  testing::WriteNpy(dir_.Join("x.npy"), "<f4", "(4, 2)", x, sizeof(x));
  const int64_t y[4] = {7, 8, 9, 10};
  testing::WriteNpy(dir_.Join("y.npy"), "<i8", "(4,)", y, sizeof(y));
  testing::WriteNpy(dir_.Join("y3.npy"), "<i8", "(3,)", y, 3 * sizeof(int64_t));
  json c = {{"kind", "embed"},
            {"encoder", {{"type", "flatten"}}},
            {"corpus", {{"features", dir_.Join("x.npy")}, {"labels", dir_.Join("y.npy")}}},
            {"shard", {{"begin", 2}}}};
  ASSERT_OK_AND_ASSIGN(EmbeddingBlock b, Embed(c));
  EXPECT_EQ(b.metadata,
            (std::vector<std::string>{"{\"label\":9}", "{\"label\":10}"}));
  c["corpus"]["limit"] = 3;  // labels count against the rows before limit
  ASSERT_OK_AND_ASSIGN(b, Embed(c));
  EXPECT_EQ(b.metadata, (std::vector<std::string>{"{\"label\":9}"}));
  c["corpus"]["labels"] = dir_.Join("y3.npy");
  ExpectError(Run(c).status(), StatusCode::kInvalidArgument,
              {"corpus.labels: " + dir_.Join("y3.npy") + ": 3 labels for 4 corpus rows"});
}

}  // namespace
}  // namespace lattice::jobs
