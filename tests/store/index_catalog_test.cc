#include "store/index_catalog.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.h"

namespace lattice::store {
namespace {

constexpr int kDim = 4;

// A flat index with `n` vectors; its size tells versions apart.
std::unique_ptr<VectorIndex> IndexOfSize(int n) {
  auto index = MakeVectorIndex({IndexType::kFlat, Metric::kL2, kDim, {}});
  EXPECT_TRUE(index.ok());
  std::vector<float> x(static_cast<size_t>(n) * kDim);
  std::vector<int64_t> ids(n);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  for (int i = 0; i < n; ++i) ids[i] = 500 + i;
  EXPECT_TRUE((*index)->Add(x.data(), n, ids.data()).ok());
  return std::move(index).value();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(IndexCatalogTest, PublishFiveKeepsThreeAndCurrentIsNewest) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.Join("indexes")));
  for (int v = 1; v <= 5; ++v) {
    ASSERT_OK_AND_ASSIGN(int64_t version,
                         catalog->Publish("math", *IndexOfSize(10 * v), {{"recall@10", 0.9}}));
    EXPECT_EQ(version, v);
    ASSERT_OK_AND_ASSIGN(auto current, catalog->Current("math"));
    EXPECT_EQ(current->size(), 10 * v);  // the cache follows CURRENT
  }
  ASSERT_OK_AND_ASSIGN(auto versions, catalog->Versions("math"));
  EXPECT_EQ(versions, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(ReadFile(dir.Join("indexes/math/CURRENT")), "v5\n");
  EXPECT_TRUE(std::filesystem::exists(dir.Join("indexes/math/v5/index.bin")));
  EXPECT_TRUE(std::filesystem::exists(dir.Join("indexes/math/v5/meta.json")));
  EXPECT_FALSE(std::filesystem::exists(dir.Join("indexes/math/v2")));
}

TEST(IndexCatalogTest, ReopenAfterRestartRestoresCurrentAndList) {
  testutil::TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.path()));
    ASSERT_OK(catalog->Publish("b-index", *IndexOfSize(7), {{"built_from", "corpus.npy"}}));
    ASSERT_OK(catalog->Publish("a-index", *IndexOfSize(3), {}));
    ASSERT_OK(catalog->Publish("a-index", *IndexOfSize(4), {{"vectors", 4}}));
  }
  // Leftovers of a publish that crashed before CURRENT moved must not matter.
  std::filesystem::create_directories(dir.Join("a-index/.v3.tmp"));
  ASSERT_OK_AND_ASSIGN(auto reopened, IndexCatalog::Open(dir.path()));
  ASSERT_OK_AND_ASSIGN(auto list, reopened->List());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "a-index");
  EXPECT_EQ(list[0].version, 2);
  EXPECT_EQ(list[0].meta["vectors"], 4);
  EXPECT_EQ(list[0].meta["type"], "flat");
  EXPECT_EQ(list[1].name, "b-index");
  EXPECT_EQ(list[1].meta["built_from"], "corpus.npy");
  ASSERT_OK_AND_ASSIGN(auto current, reopened->Current("a-index"));
  EXPECT_EQ(current->size(), 4);
  std::vector<float> q(kDim, 0.f);
  ASSERT_OK_AND_ASSIGN(SearchResult r, current->Search(q.data(), 1, 1, {}));
  EXPECT_EQ(r.ids[0], 500);
  ASSERT_OK_AND_ASSIGN(int64_t next, reopened->Publish("a-index", *IndexOfSize(5), {}));
  EXPECT_EQ(next, 3);  // the stray .v3.tmp was never current: its number is reused
  EXPECT_FALSE(std::filesystem::exists(dir.Join("a-index/.v3.tmp")));
}

// A publish killed mid-way (issue 9) takes no version number, and keep_versions then
// still holds that many versions that were each current once.
TEST(IndexCatalogTest, KilledPublishBurnsNoVersionNumber) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.path(), IndexCatalogOptions{2}));
  ASSERT_OK(catalog->Publish("x", *IndexOfSize(1), {}));
  ASSERT_OK(catalog->Publish("x", *IndexOfSize(2), {}));
  // Killed while writing v3 (step 2): a temp directory.
  std::filesystem::create_directories(dir.Join("x/.v3.tmp"));
  ASSERT_OK_AND_ASSIGN(int64_t v3, catalog->Publish("x", *IndexOfSize(3), {}));
  EXPECT_EQ(v3, 3);
  // Killed after renaming v4 into place but before CURRENT moved (between steps 2 and 3).
  std::filesystem::copy(dir.Join("x/v3"), dir.Join("x/v4"),
                        std::filesystem::copy_options::recursive);
  EXPECT_EQ(ReadFile(dir.Join("x/CURRENT")), "v3\n");
  ASSERT_OK_AND_ASSIGN(int64_t v4, catalog->Publish("x", *IndexOfSize(4), {}));
  EXPECT_EQ(v4, 4);
  ASSERT_OK_AND_ASSIGN(auto versions, catalog->Versions("x"));
  EXPECT_EQ(versions, (std::vector<int64_t>{3, 4}));
  ASSERT_OK_AND_ASSIGN(auto current, catalog->Current("x"));
  EXPECT_EQ(current->size(), 4);  // the new v4, not the stale copy
  EXPECT_NE(ReadFile(dir.Join("x/v4/meta.json")).find("\"version\": 4"), std::string::npos);
  // A leftover with no CURRENT at all (the first publish was killed) is not a version.
  std::filesystem::create_directories(dir.Join("y/v1"));
  ASSERT_OK_AND_ASSIGN(int64_t y1, catalog->Publish("y", *IndexOfSize(5), {}));
  EXPECT_EQ(y1, 1);
}

TEST(IndexCatalogTest, SecondInstanceSeesNewVersionAndOldHandleStaysValid) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto writer, IndexCatalog::Open(dir.path()));
  ASSERT_OK_AND_ASSIGN(auto reader, IndexCatalog::Open(dir.path()));
  ASSERT_OK(writer->Publish("x", *IndexOfSize(2), {}));
  ASSERT_OK_AND_ASSIGN(auto old_handle, reader->Current("x"));
  for (int i = 0; i < 4; ++i) ASSERT_OK(writer->Publish("x", *IndexOfSize(8), {}));
  ASSERT_OK_AND_ASSIGN(auto fresh, reader->Current("x"));
  EXPECT_EQ(fresh->size(), 8);
  EXPECT_EQ(old_handle->size(), 2);  // v1's files are gone; the loaded index is not
}

TEST(IndexCatalogTest, BadNamesAndUnknownIndexes) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.path()));
  auto index = IndexOfSize(1);
  for (const char* bad : {"", "../escape", "a/b", ".hidden", ".", "..", "../../x", "$(id)",
                          "a\nb", "-x"}) {
    EXPECT_EQ(catalog->Publish(bad, *index, {}).status().code(), StatusCode::kInvalidArgument)
        << bad;
    EXPECT_EQ(ValidateIndexName(bad).code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_OK(ValidateIndexName("fmnist_v2.1-a"));
  EXPECT_EQ(catalog->Publish("ok", *index, nlohmann::json::array()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->Current("never").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(IndexCatalog::Open(dir.path(), IndexCatalogOptions{0}).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(auto list, catalog->List());
  EXPECT_TRUE(list.empty());
}

}  // namespace
}  // namespace lattice::store

namespace lattice::store {
namespace {

TEST(IndexCatalogTest, ItemMetadataTravelsWithItsVersion) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.Join("indexes")));
  ItemMetadata items = {{500, R"({"path":"a.png"})"}, {501, R"({"label":3})"}};
  ASSERT_OK(catalog->Publish("imgs", *IndexOfSize(2), {}, &items));
  ASSERT_OK_AND_ASSIGN(auto v1, catalog->Items("imgs"));
  ASSERT_EQ(v1->size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(v1->at(500))["path"], "a.png");
  EXPECT_EQ(nlohmann::json::parse(v1->at(501))["label"], 3);

  // A new version without metadata: the served metadata follows CURRENT.
  ASSERT_OK(catalog->Publish("imgs", *IndexOfSize(3), {}));
  ASSERT_OK_AND_ASSIGN(auto v2, catalog->Items("imgs"));
  EXPECT_TRUE(v2->empty());
  EXPECT_EQ(v1->size(), 2u);  // an old handle stays valid

  // After a restart the metadata of the current version is read from disk.
  ASSERT_OK(catalog->Publish("imgs", *IndexOfSize(2), {}, &items));
  ASSERT_OK_AND_ASSIGN(auto reopened, IndexCatalog::Open(dir.Join("indexes")));
  ASSERT_OK_AND_ASSIGN(auto v3, reopened->Items("imgs"));
  EXPECT_EQ(v3->size(), 2u);
  EXPECT_FALSE(reopened->Items("never-published").ok());
}

// The user's item ids live with their version: a new version without ids has none, an
// older handle's version keeps its own, and a reopened catalog reads them back.
TEST(IndexCatalogTest, ItemIdsTravelWithTheirVersionAcrossARestart) {
  testutil::TempDir dir;
  const std::vector<nlohmann::json> ids = {"doc-a", "doc-b", 42};
  ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.path()));
  EXPECT_EQ(catalog->Ids("x").status().code(), StatusCode::kNotFound);
  ASSERT_OK(catalog->Publish("x", *IndexOfSize(3), {}, nullptr, &ids));
  ASSERT_OK_AND_ASSIGN(auto map, catalog->Ids("x"));
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->json_by_row, (std::vector<std::string>{"\"doc-a\"", "\"doc-b\"", "42"}));
  EXPECT_EQ(map->row_by_text.at("doc-b"), 1);
  EXPECT_EQ(map->row_by_text.at("42"), 2);
  ASSERT_OK_AND_ASSIGN(auto entries, catalog->List());
  EXPECT_EQ(entries[0].meta["item_ids"], 3);

  ASSERT_OK_AND_ASSIGN(auto reopened, IndexCatalog::Open(dir.path()));
  ASSERT_OK_AND_ASSIGN(auto again, reopened->Ids("x"));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->json_by_row, map->json_by_row);

  ASSERT_OK(catalog->Publish("x", *IndexOfSize(2), {}));  // v2: no ids
  ASSERT_OK_AND_ASSIGN(auto v2, catalog->Ids("x"));
  EXPECT_EQ(v2, nullptr);
  EXPECT_EQ(map->row_by_text.size(), 3u);  // the old map stays valid
}

TEST(IndexCatalogTest, ItemIdsMustBeDistinctAndOnePerVector) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto catalog, IndexCatalog::Open(dir.path()));
  const std::vector<nlohmann::json> dup = {"a", 7, "7"};
  Status s = catalog->Publish("x", *IndexOfSize(3), {}, nullptr, &dup).status();
  EXPECT_NE(s.message().find("duplicate item id '7' (rows 1 and 2)"), std::string::npos) << s.ToString();
  const std::vector<nlohmann::json> two = {"a", "b"};
  s = catalog->Publish("x", *IndexOfSize(3), {}, nullptr, &two).status();
  EXPECT_NE(s.message().find("2 item ids for 3 vectors"), std::string::npos) << s.ToString();
  EXPECT_FALSE(catalog->Current("x").ok());  // nothing was published
  // A damaged ids.json is an I/O error, not a crash.
  const std::vector<nlohmann::json> good = {"a", "b", "c"};
  ASSERT_OK(catalog->Publish("x", *IndexOfSize(3), {}, nullptr, &good));
  std::ofstream(dir.Join("x/v1/ids.json")) << "[1, 1]";
  ASSERT_OK_AND_ASSIGN(auto fresh, IndexCatalog::Open(dir.path()));
  EXPECT_EQ(fresh->Ids("x").status().code(), StatusCode::kIoError);
}

}  // namespace
}  // namespace lattice::store
