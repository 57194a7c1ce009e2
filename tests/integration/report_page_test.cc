// The probe recipe's 27-point grid (examples/fashion-mnist-probe-recipe.yaml, fewer epochs)
// on a 3-rank cluster, then its report page (GET /sweeps/{id}) in Debian's headless
// Chromium: no console errors, 27 learning curves, a 3x3 heatmap, the best trial's 3x3
// confusion matrix, and the numbers the API gives. The screenshot is kept in
// test-artifacts/ (in ctest's working directory: build/tests/integration/).
#include <sys/stat.h>

#include <cstdio>
#include <regex>
#include <string>
#include <utility>
#include <vector>

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

  // The two groups of each match of `pattern` in `text`, in order.
  static std::vector<std::pair<std::string, std::string>> Attributes(const std::string& text,
                                                                     const std::string& pattern) {
    std::vector<std::pair<std::string, std::string>> out;
    const std::regex re(pattern);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
         ++it) {
      out.emplace_back((*it)[1].str(), (*it)[2].str());
    }
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
  // Every number on the page is the API's: each table cell (parameters and metrics), the
  // heatmap's means, the confusion counts, the per-class table; each curve has a point per
  // epoch the API reports.
  const std::string metric = sweep["metric"];
  for (const json& t : trials) {
    const std::string trial_id = t["id"];
    SCOPED_TRACE(trial_id);
    const size_t row = dom.find("<tr data-trial=\"" + trial_id + "\"");
    ASSERT_NE(row, std::string::npos);
    const std::string tr = dom.substr(row, dom.find("</tr>", row) - row);
    int cells = 0;
    for (const auto& [key, value] : Attributes(tr, "data-key=\"([^\"]+)\" data-value=\"([^\"]+)\"")) {
      const json& api = key == "epochs"                ? t["epochs_done"]
                        : t["params"].contains(key) ? t["params"][key]
                                                    : t["metrics"][key];
      ASSERT_TRUE(api.is_number()) << key << " is on the page, not in the API: " << t.dump();
      EXPECT_EQ(std::stod(value), api.get<double>()) << key;
      ++cells;
    }
    EXPECT_EQ(cells, 7) << "epochs, lr, weight_decay, dropout, " << metric
                        << ", test_accuracy, test_f1: " << tr;
    const json epochs = Call("GET", "/v1/trials/" + trial_id + "/metrics")["epochs"];
    ASSERT_EQ(epochs.size(), t["epochs_done"].get<size_t>());
    const auto curve = Attributes(dom, "<path d=\"([^\"]*)\" class=\"curve[^\"]*\" data-trial=\"" +
                                           trial_id + "\"");
    ASSERT_EQ(curve.size(), 1u);
    EXPECT_EQ(static_cast<size_t>(Count(curve[0].first, "L")) + 1, epochs.size())
        << "the curve's points: " << curve[0].first;
  }
  // The heatmap: each cell is the mean of the metric over the trials with its two values.
  const auto axes = Attributes(dom, "data-x-param=\"([^\"]+)\" data-y-param=\"([^\"]+)\"");
  ASSERT_EQ(axes.size(), 1u);
  const auto [xp, yp] = axes[0];
  int heat_cells = 0;
  const std::regex cell_re(
      "class=\"cell\" data-x=\"([^\"]+)\" data-y=\"([^\"]+)\"[^>]*data-value=\"([^\"]+)\"");
  for (auto it = std::sregex_iterator(dom.begin(), dom.end(), cell_re);
       it != std::sregex_iterator(); ++it) {
    const std::smatch& cell = *it;
    const json x = json::parse(cell[1].str()), y = json::parse(cell[2].str());
    double sum = 0;
    int n = 0;
    for (const json& t : trials) {
      if (t["params"][xp] == x && t["params"][yp] == y) {
        sum += t["metrics"][metric].get<double>();
        ++n;
      }
    }
    ASSERT_GT(n, 0) << xp << "=" << x << " " << yp << "=" << y;
    EXPECT_DOUBLE_EQ(std::stod(cell[3].str()), sum / n) << xp << "=" << x << " " << yp << "=" << y;
    ++heat_cells;
  }
  EXPECT_EQ(heat_cells, 9);
  // The best trial's test confusion matrix and per-class precision / recall / F1 / support.
  std::vector<double> shown;
  for (const auto& [v, unused] : Attributes(dom, "class=\"cm-cell\" data-value=\"([^\"]+)\"()")) {
    shown.push_back(std::stod(v));
  }
  ASSERT_EQ(shown.size(), 9u);
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) {
      EXPECT_EQ(shown[static_cast<size_t>(t * 3 + p)],
                best_trial["metrics"]["test_confusion_" + std::to_string(t) + "_" +
                                      std::to_string(p)].get<double>());
    }
  }
  const size_t per = dom.find("<table id=\"per-class\"");
  ASSERT_NE(per, std::string::npos);
  const auto per_class =
      Attributes(dom.substr(per, dom.find("</table>", per) - per), "<td data-value=\"([^\"]+)\"()");
  ASSERT_EQ(per_class.size(), 12u);
  size_t i = 0;
  for (int c = 0; c < 3; ++c) {
    for (const char* n : {"precision", "recall", "f1", "support"}) {
      const std::string key = std::string("test_") + n + "_" + std::to_string(c);
      ASSERT_TRUE(best_trial["metrics"].contains(key)) << key;
      EXPECT_EQ(std::stod(per_class[i++].first), best_trial["metrics"][key].get<double>()) << key;
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
