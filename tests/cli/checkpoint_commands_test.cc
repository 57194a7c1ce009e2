#include "cli/checkpoint_commands.h"

#include <algorithm>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/server.h"
#include "tests/http/http_test_util.h"
#include "tests/testutil/testutil.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

// A zip local-file-header signature, then filler: what SplitCheckpoint accepts as an archive.
const std::string kArchive = std::string("PK\x03\x04", 4) + std::string("\0\x01rest\n\n", 8);

std::string HeaderLine() {
  return json{{"format", "lattice-checkpoint/1"},
              {"config", {{"kind", "train"}, {"model", {{"type", "mlp"}, {"hidden", {64}}}}}},
              {"in_dim", 784},
              {"classes", 10},
              {"epochs", 3},
              {"metrics", {{"val_accuracy", 0.85121}, {"val_loss", 0.41234}, {"a", 1}}}}
      .dump();
}

std::string Blob() { return HeaderLine() + "\n" + kArchive; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(SplitCheckpointTest, SplitsAtTheFirstNewline) {
  const std::string blob = Blob();
  ASSERT_OK_AND_ASSIGN(CheckpointParts parts, SplitCheckpoint(blob));
  // The archive keeps its own newlines and NUL bytes: only the first '\n' ends the header.
  EXPECT_EQ(std::string(parts.archive), kArchive);
  EXPECT_EQ(parts.archive.size() + HeaderLine().size() + 1, blob.size());
  EXPECT_EQ(parts.header["in_dim"], 784);
  EXPECT_EQ(parts.header["classes"], 10);
  EXPECT_EQ(parts.header["epochs"], 3);
  EXPECT_EQ(parts.header["metrics"]["val_accuracy"], 0.85121);
  EXPECT_EQ(parts.header["config"]["model"]["hidden"][0], 64);
}

TEST(SplitCheckpointTest, RejectsABlobWithoutHeaderLine) {
  StatusOr<CheckpointParts> parts = SplitCheckpoint(kArchive.substr(0, 6));
  ASSERT_FALSE(parts.ok());
  EXPECT_EQ(parts.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parts.status().message().find("no header line in the 6 bytes"), std::string::npos)
      << parts.status().message();
  EXPECT_FALSE(SplitCheckpoint("").ok());
}

TEST(SplitCheckpointTest, RejectsABadHeaderOrArchive) {
  // An HTML error page has newlines but no checkpoint header.
  StatusOr<CheckpointParts> html = SplitCheckpoint("<html>\n<body>502</body>\n");
  ASSERT_FALSE(html.ok());
  EXPECT_NE(html.status().message().find("not a lattice-checkpoint/1 header"), std::string::npos)
      << html.status().message();
  StatusOr<CheckpointParts> empty = SplitCheckpoint(HeaderLine() + "\n");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no LibTorch archive"), std::string::npos);
  StatusOr<CheckpointParts> not_zip = SplitCheckpoint(HeaderLine() + "\nPK\x03");
  ASSERT_FALSE(not_zip.ok());
  EXPECT_NE(not_zip.status().message().find("not a LibTorch (zip) archive"), std::string::npos);
}

TEST(CheckpointOutputPathTest, DefaultExplicitAndDirectory) {
  testutil::TempDir dir;
  EXPECT_EQ(CheckpointOutputPath("s3-t4", ""), "s3-t4.pt");
  EXPECT_EQ(CheckpointOutputPath("s3-t4", dir.Join("best.pt")), dir.Join("best.pt"));
  EXPECT_EQ(CheckpointOutputPath("s3-t4", dir.path()), dir.Join("s3-t4.pt"));
  EXPECT_EQ(CheckpointOutputPath("s3-t4", dir.path() + "/"), dir.Join("s3-t4.pt"));
}

TEST(WriteFileAtomicallyTest, WritesReplacesAndLeavesNoTemporary) {
  testutil::TempDir dir;
  const std::string path = dir.Join("m.pt");
  ASSERT_OK(WriteFileAtomically(path, std::string("a\0b", 3)));
  EXPECT_EQ(ReadAll(path), std::string("a\0b", 3));
  ASSERT_OK(WriteFileAtomically(path, "second"));
  EXPECT_EQ(ReadAll(path), "second");
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"m.pt"});
}

TEST(WriteFileAtomicallyTest, UnwritablePathIsAnIoErrorNamingIt) {
  testutil::TempDir dir;
  const std::string path = dir.Join("missing/m.pt");
  Status s = WriteFileAtomically(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_EQ(s.message(), "cannot write " + path + ": No such file or directory");
}

TEST(FormatDownloadSummaryTest, NamesFilesBytesEpochsAndKeyMetrics) {
  ASSERT_OK_AND_ASSIGN(CheckpointParts parts, SplitCheckpoint(Blob()));
  EXPECT_EQ(FormatDownloadSummary("s3-t4", "out/best.pt", 12, parts.header),
            "wrote out/best.pt (12 bytes, LibTorch archive) and out/best.pt.json (header): "
            "trial s3-t4, 3 epochs, val_accuracy 0.8512, val_loss 0.4123");
  // Without the usual metrics: the first few by name.
  EXPECT_EQ(FormatDownloadSummary("s1-t0", "x.pt", 1,
                                  {{"epochs", 1}, {"metrics", {{"b", 2}, {"a", 0.5}}}}),
            "wrote x.pt (1 bytes, LibTorch archive) and x.pt.json (header): trial s1-t0, "
            "1 epoch, a 0.5, b 2");
}

json TrialJson(bool finished) {
  return {{"id", "s3-t4"}, {"state", finished ? "completed" : "failed"}, {"epochs_done", 3}};
}

// GET /v1/trials/{id}/checkpoints' array: a pruned and a kept step checkpoint, the final one.
json Checkpoints() {
  return json::parse(R"([
    {"kind": "step", "state": "pruned", "step": 200, "epochs": 1,
     "metrics": {"val_accuracy": 0.7, "val_loss": 0.6}},
    {"kind": "step", "state": "kept", "step": 400, "epochs": 2, "bytes": 614000, "chunks": 1,
     "metrics": {"val_accuracy": 0.8, "val_loss": 0.5}},
    {"kind": "final", "state": "kept", "step": 0, "epochs": 3, "bytes": 204901, "chunks": 1,
     "metrics": {"val_accuracy": 0.85121, "val_loss": 0.41234}}])");
}

TEST(FormatCheckpointListTest, StepAndFinalRowsInEachFormat) {
  EXPECT_EQ(FormatCheckpointList(TrialJson(true), Checkpoints(), TrialsFormat::kTable),
            "KIND   STEP  STATE   EPOCH  BYTES   val_accuracy  val_loss\n"
            "step   200   pruned  1      -       0.7           0.6\n"
            "step   400   kept    2      614000  0.8           0.5\n"
            "final  -     kept    3      204901  0.8512        0.4123\n");
  EXPECT_EQ(FormatCheckpointList(TrialJson(true), Checkpoints(), TrialsFormat::kCsv),
            "KIND,STEP,STATE,EPOCH,BYTES,val_accuracy,val_loss\n"
            "step,200,pruned,1,,0.7,0.6\n"
            "step,400,kept,2,614000,0.8,0.5\nfinal,,kept,3,204901,0.85121,0.41234\n");
  json rows = json::parse(FormatCheckpointList(TrialJson(true), Checkpoints(), TrialsFormat::kJson));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2], json::parse(R"({"kind": "final", "step": null, "state": "kept", "epoch": 3,
                                     "bytes": 204901, "val_accuracy": 0.85121, "val_loss": 0.41234})"));
  EXPECT_EQ(rows[1]["step"], 400);
  EXPECT_EQ(rows[0]["state"], "pruned");
}

TEST(FormatCheckpointListTest, NoCheckpointIsNoRow) {
  EXPECT_EQ(json::parse(FormatCheckpointList(TrialJson(false), json::array(), TrialsFormat::kJson)),
            json::array());
  EXPECT_EQ(FormatCheckpointList(TrialJson(false), json::array(), TrialsFormat::kCsv),
            "KIND,STEP,STATE,EPOCH,BYTES,val_accuracy,val_loss\n");
  const std::string table = FormatCheckpointList(TrialJson(false), json::array(), TrialsFormat::kTable);
  EXPECT_EQ(table.rfind("trial s3-t4 (failed) has no stored checkpoint", 0), 0u) << table;
}

// RunCheckpointDownload against a fake coordinator: s3-t4 has a checkpoint, s3-t5 sends
// bytes without header line, everything else is the coordinator's 404.
class CheckpointDownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto router = std::make_shared<Router>();
    router->Add("GET", "/v1/trials/{id}/checkpoint", [](HttpRequest& req) {
      const std::string id = req.path_params["id"];
      if (id == "s3-t4") return HttpResponse::Text(200, Blob(), "application/octet-stream");
      if (id == "s3-t5") return HttpResponse::Text(200, "garbage", "application/octet-stream");
      return HttpResponse::Error(404, "not_found",
                                 "trial " + id + " (failed) has no checkpoint: only completed "
                                 "train trials keep one");
    }, RouteOptions{/*authenticated=*/true, /*offload=*/false});  // as the coordinator's
    router->SetToken("download-token-0123456789");
    std::ofstream(data_dir_.Join("token")) << "download-token-0123456789\n";
    server_ = testing::StartLoopbackServer(router);
    options_.port = server_->port();
    options_.data_dir = data_dir_.path();
    options_.timeout_ms = 5000;
  }

  int Download(const std::string& trial, const std::string& output) {
    CheckpointDownloadArgs args;
    args.trial = trial;
    args.output = output;
    return RunCheckpointDownload(options_, args, io_);
  }

  testutil::TempDir dir_;
  testutil::TempDir data_dir_;  // the coordinator's, with the token
  std::unique_ptr<HttpServer> server_;
  ClientOptions options_;
  std::ostringstream out_, err_;
  CommandIo io_{out_, err_, false};
};

// Issue 9: the download route needs the token; without the token file the CLI says so.
TEST_F(CheckpointDownloadTest, SendsTheTokenAndNeedsTheTokenFile) {
  ASSERT_EQ(Download("s3-t4", dir_.Join("a.pt")), 0) << err_.str();
  std::remove(data_dir_.Join("token").c_str());
  EXPECT_EQ(Download("s3-t4", dir_.Join("b.pt")), 1);
  EXPECT_NE(err_.str().find("cannot read the API token"), std::string::npos) << err_.str();
}

TEST_F(CheckpointDownloadTest, WritesArchiveAndHeader) {
  ASSERT_EQ(Download("s3-t4", dir_.Join("best.pt")), 0) << err_.str();
  EXPECT_EQ(ReadAll(dir_.Join("best.pt")), kArchive);
  json header = json::parse(ReadAll(dir_.Join("best.pt.json")));
  EXPECT_EQ(header, json::parse(HeaderLine()));
  EXPECT_NE(ReadAll(dir_.Join("best.pt.json")).find("\n  \"classes\": 10"), std::string::npos)
      << "pretty-printed";
  EXPECT_EQ(out_.str(), "wrote " + dir_.Join("best.pt") + " (" +
                            std::to_string(kArchive.size()) + " bytes, LibTorch archive) and " +
                            dir_.Join("best.pt") + ".json (header): trial s3-t4, 3 epochs, "
                            "val_accuracy 0.8512, val_loss 0.4123\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CheckpointDownloadTest, ErrorsWriteNothing) {
  EXPECT_EQ(Download("s3-t9", dir_.Join("a.pt")), 1);
  EXPECT_EQ(err_.str(), "error: cannot download the checkpoint of s3-t9: trial s3-t9 (failed) "
                        "has no checkpoint: only completed train trials keep one\n");
  err_.str("");
  EXPECT_EQ(Download("s3-t5", dir_.Join("b.pt")), 1);
  EXPECT_NE(err_.str().find("the download of s3-t5 is unusable: not a Lattice checkpoint: no "
                            "header line in the 7 bytes"),
            std::string::npos)
      << err_.str();
  err_.str("");
  EXPECT_EQ(Download("s3-t4", dir_.Join("missing/c.pt")), 1);
  EXPECT_EQ(err_.str(), "error: cannot write " + dir_.Join("missing/c.pt.json") +
                            ": No such file or directory\n");
  err_.str("");
  EXPECT_EQ(Download("../etc/x", dir_.Join("d.pt")), 1);
  EXPECT_EQ(err_.str(), "error: bad trial id '../etc/x' (expected e.g. s3-t4)\n");
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(ListDir(dir_.path()), std::vector<std::string>{}) << "no file, no temporary";
}

}  // namespace
}  // namespace lattice::cli
