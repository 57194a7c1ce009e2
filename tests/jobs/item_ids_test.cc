#include "jobs/item_ids.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

#define EXPECT_MESSAGE_HAS(status, text) \
  EXPECT_NE((status).message().find(text), std::string::npos) << (status).ToString()

class ItemIdsTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.Join(name), std::ios::binary) << text;
    return dir_.Join(name);
  }
  // A 5-row npy corpus of 2 columns.
  CorpusConfig Corpus(const std::string& ids) {
    const std::vector<float> x(10, 1.0f);
    testing::WriteNpy(dir_.Join("x.npy"), "<f4", "(5, 2)", x);
    CorpusConfig c;
    c.format = CorpusFormat::kNpy;
    c.file = dir_.Join("x.npy");
    c.ids = ids;
    return c;
  }
  testutil::TempDir dir_;
};

TEST_F(ItemIdsTest, ReadsTextJsonAndNpy) {
  ASSERT_OK_AND_ASSIGN(auto text, LoadItemIds(Write("ids.txt", "doc-1\n  doc 2 \r\n42\n")));
  EXPECT_EQ(text, (std::vector<json>{"doc-1", "doc 2", "42"}));  // text ids stay strings
  ASSERT_OK_AND_ASSIGN(auto last, LoadItemIds(Write("nolf.txt", "a\nb")));
  EXPECT_EQ(last, (std::vector<json>{"a", "b"}));
  ASSERT_OK_AND_ASSIGN(auto js, LoadItemIds(Write("ids.json", R"(["a", 7, "c"])")));
  EXPECT_EQ(js, (std::vector<json>{"a", 7, "c"}));
  const std::vector<int64_t> values = {10, -3, 1LL << 40};
  testing::WriteNpy(dir_.Join("ids.npy"), "<i8", "(3,)", values);
  ASSERT_OK_AND_ASSIGN(auto npy, LoadItemIds(dir_.Join("ids.npy")));
  EXPECT_EQ(npy, (std::vector<json>{10, -3, 1LL << 40}));
}

TEST_F(ItemIdsTest, BadFilesNameTheLineOrElement) {
  EXPECT_MESSAGE_HAS(LoadItemIds(Write("gap.txt", "a\n\nb\n")).status(), "gap.txt: line 2 is empty");
  EXPECT_MESSAGE_HAS(LoadItemIds(Write("bad.json", R"(["a", null])")).status(),
                     "bad.json: element 1: expected a non-empty string or an integer, got null");
  EXPECT_MESSAGE_HAS(LoadItemIds(Write("obj.json", R"({"a": 1})")).status(),
                     "expected a JSON array of ids, got object");
  EXPECT_MESSAGE_HAS(LoadItemIds(Write("broken.json", "[1,")).status(), "not valid JSON");
  EXPECT_MESSAGE_HAS(LoadItemIds(Write("latin1.txt", "caf\xe9\n")).status(),
                     "line 1: not valid UTF-8");
  const std::vector<float> f = {1.5f};
  testing::WriteNpy(dir_.Join("f.npy"), "<f4", "(1,)", f);
  EXPECT_MESSAGE_HAS(LoadItemIds(dir_.Join("f.npy")).status(), "ids must be integers");
  EXPECT_MESSAGE_HAS(LoadItemIds(dir_.Join("missing.txt")).status(), "file not found");
}

TEST_F(ItemIdsTest, DuplicatesAndCountsAreRejectedNamingTheId) {
  EXPECT_OK(CheckItemIds({"a", "b"}, 2, "ids.txt"));
  EXPECT_MESSAGE_HAS(CheckItemIds({"a", "b", "c", "b"}, 4, "ids.txt"),
                     "ids.txt: duplicate id 'b' (rows 1 and 3)");
  // Ids compare by their text: 7 and "7" are one id.
  EXPECT_MESSAGE_HAS(CheckItemIds({7, "7"}, 2, "ids.json"), "duplicate id '7' (rows 0 and 1)");
  EXPECT_MESSAGE_HAS(CheckItemIds({"a"}, 2, "ids.txt"), "ids.txt: 1 ids for 2 corpus rows");
}

TEST_F(ItemIdsTest, CorpusIdsAreCheckedAgainstTheRowsBeforeLimit) {
  ASSERT_OK_AND_ASSIGN(auto none, LoadCorpusItemIds(Corpus("")));
  EXPECT_TRUE(none.empty());
  CorpusConfig c = Corpus(Write("ids.txt", "a\nb\nc\nd\ne\n"));
  c.limit = 3;
  ASSERT_OK_AND_ASSIGN(auto ids, LoadCorpusItemIds(c));
  EXPECT_EQ(ids, (std::vector<json>{"a", "b", "c"}));
  EXPECT_MESSAGE_HAS(LoadCorpusItemIds(Corpus(Write("short.txt", "a\nb\nc\n"))).status(),
                     "corpus.ids: " + dir_.Join("short.txt") + ": 3 ids for 5 corpus rows");
  EXPECT_MESSAGE_HAS(LoadCorpusItemIds(Corpus(Write("dup.txt", "a\nb\nc\nd\na\n"))).status(),
                     "corpus.ids: " + dir_.Join("dup.txt") + ": duplicate id 'a' (rows 0 and 4)");
}

TEST_F(ItemIdsTest, EmbedSpecTakesIdsForEveryFormat) {
  json config = {{"kind", "embed"},
                 {"encoder", {{"type", "flatten"}}},
                 {"corpus", {{"format", "npy"}, {"features", "x.npy"}, {"ids", "ids.txt"}}}};
  ASSERT_OK_AND_ASSIGN(EmbedConfig e, ParseEmbedConfig(config));
  EXPECT_EQ(e.corpus.ids, "ids.txt");
  config["corpus"]["ids"] = "";
  EXPECT_MESSAGE_HAS(ParseEmbedConfig(config).status(), "corpus.ids: must not be empty");
  config["corpus"]["ids"] = 3;
  EXPECT_MESSAGE_HAS(ParseEmbedConfig(config).status(), "corpus.ids");
}

}  // namespace
}  // namespace lattice::jobs
