// The probe recipe's 27-point grid (examples/fashion-mnist-probe-recipe.yaml, fewer epochs)
// on a 3-rank cluster, then its report page (GET /sweeps/{id}) in Debian's headless
// Chromium: no console errors, 27 learning curves, a 3x3 heatmap, the best trial's 3x3
// confusion matrix, and the numbers the API gives. The screenshot is kept in
// test-artifacts/ (in ctest's working directory: build/tests/integration/).
#include <sys/stat.h>

#include <cstdio>
#include <regex>
#include <string>

#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;
using testutil::ReadFile;

class ReportPageTest : public testutil::ClusterFixture {
 protected:
  // Runs `chromium --headless` with `args` on `url`; returns stdout, stderr in *log.
  static std::string Chromium(const std::string& args, const std::string& url,
                              const std::string& profile, std::string* log) {
    const std::string err = profile + ".log";
    const std::string cmd = "chromium --headless --no-sandbox --disable-gpu --no-first-run "
                            "--user-data-dir=" + profile + " --enable-logging=stderr --v=0 "
                            "--virtual-time-budget=15000 " + args + " '" + url + "' 2>" + err;
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
      EXPECT_EQ(::pclose(p), 0) << cmd;
    }
    *log = ReadFile(err);
    return out;
  }

  static int Count(const std::string& text, const std::string& needle) {
    int n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }
};

TEST_F(ReportPageTest, FinishedProbeGridPageShowsEveryFigureWithTheApisNumbers) {
  ASSERT_EQ(std::system("chromium --version >/dev/null 2>&1"), 0)
      << "Debian's chromium is needed (scripts/setup.sh installs it)";
  StartCluster();
  std::string spec = ReadFile(testutil::SourceDir() + "/examples/fashion-mnist-probe-recipe.yaml");
  ASSERT_FALSE(spec.empty());
  // The whole recipe, shortened: 8 epochs, early stopping and the plateau schedule scaled down.
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"epochs: 500", "epochs: 8"},
                                 {"patience: 75", "patience: 4"},
                                 {"patience: 25", "patience: 2"}}) {
    const size_t at = spec.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    spec.replace(at, from.size(), to);
  }
  json sweep = Call("POST", "/v1/sweeps", spec, 201);
  ASSERT_EQ(sweep["num_trials"], 27);
  const std::string id = sweep["id"];
  sweep = WaitForSweep(id, std::chrono::seconds(900));
  ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
  EXPECT_EQ(sweep["counts"]["completed"], 27);
  json trials = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
  ASSERT_EQ(trials.size(), 27u);
  const std::string best = sweep["best"]["trial"];
  json best_trial = Call("GET", "/v1/trials/" + best);
  // The test part: 41 + 25 + 38 rows, in the best trial's confusion matrix.
  double test_rows = 0;
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) {
      test_rows += best_trial["metrics"]["test_confusion_" + std::to_string(t) + "_" +
                                         std::to_string(p)].get<double>();
    }
  }
  EXPECT_EQ(test_rows, 104);

  const std::string url =
      "http://127.0.0.1:" + std::to_string(cluster_->port()) + "/sweeps/" + id;
  std::string log;
  const std::string dom = Chromium("--dump-dom", url, dir_.Join("chrome-dom"), &log);
  ASSERT_NE(dom.find("data-ready=\"1\""), std::string::npos) << dom.substr(0, 2000) << log;
  // No console output at all: the script logs nothing, so any line is an error.
  EXPECT_EQ(log.find("CONSOLE"), std::string::npos) << log;
  EXPECT_EQ(log.find("Uncaught"), std::string::npos) << log;
  EXPECT_EQ(Count(dom, "class=\"curve"), 27) << "one learning curve per trial";
  EXPECT_EQ(Count(dom, "class=\"line\""), 27) << "one parallel-coordinates line per trial";
  EXPECT_EQ(Count(dom, "class=\"cell\""), 9) << "a 3x3 heatmap";
  EXPECT_EQ(Count(dom, "class=\"cm-cell\""), 9) << "a 3x3 confusion matrix";
  EXPECT_EQ(Count(dom, "<tr data-trial="), 27) << "a table row per trial";
  // Every trial's metric in the table, and every confusion count, is the API's value.
  const std::string metric = sweep["metric"];
  for (const json& t : trials) {
    const std::string row_start = "<tr data-trial=\"" + t["id"].get<std::string>() + "\"";
    const size_t row = dom.find(row_start);
    ASSERT_NE(row, std::string::npos) << t["id"];
    const std::string tr = dom.substr(row, dom.find("</tr>", row) - row);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        tr, m, std::regex("data-key=\"" + metric + "\" data-value=\"([^\"]+)\"")))
        << tr;
    EXPECT_EQ(std::stod(m[1].str()), t["metrics"][metric].get<double>()) << tr;
  }
  std::smatch m;
  std::string rest = dom;
  std::vector<double> shown;
  while (std::regex_search(rest, m, std::regex("class=\"cm-cell\" data-value=\"([^\"]+)\""))) {
    shown.push_back(std::stod(m[1].str()));
    rest = m.suffix();
  }
  ASSERT_EQ(shown.size(), 9u);
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) {
      EXPECT_EQ(shown[static_cast<size_t>(t * 3 + p)],
                best_trial["metrics"]["test_confusion_" + std::to_string(t) + "_" +
                                      std::to_string(p)].get<double>());
    }
  }
  // The screenshot, kept for people to look at.
  ::mkdir("test-artifacts", 0755);
  const std::string png = "test-artifacts/report_page.png";
  std::remove(png.c_str());
  Chromium("--window-size=1400,1800 --screenshot=" + png, url, dir_.Join("chrome-shot"), &log);
  struct stat st;
  ASSERT_EQ(::stat(png.c_str(), &st), 0) << log;
  EXPECT_GT(st.st_size, 10000) << "a blank page?";
  std::printf("report page screenshot: %s (%lld bytes)\n", png.c_str(),
              static_cast<long long>(st.st_size));
}

}  // namespace
}  // namespace lattice
