#include "cli/report_command.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/checkpoint_commands.h"
#include "cli/format.h"
#include "cli/internal/api.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

std::string Num(double v, int precision = 4) {
  std::ostringstream s;
  s << std::setprecision(precision) << v;
  return s.str();
}

std::string Text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string TexEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::strchr("&%$#_{}", c)) out += '\\';
    if (c == '~' || c == '^' || c == '\\') {
      out += c == '\\' ? "\\textbackslash{}" : (c == '~' ? "\\textasciitilde{}" : "\\^{}");
      continue;
    }
    out += c;
  }
  return out;
}

// What every figure needs: the swept parameters, the metric and the trials that have it.
struct Sweep {
  std::string name, metric;
  bool maximize = true;
  std::vector<std::string> params;  // swept, spec order as stored (keys sorted)
  std::vector<json> trials;         // all
  std::vector<const json*> done;    // with a numeric metric value

  double Metric(const json& t) const { return t["metrics"][metric].get<double>(); }
  const json* Best() const {
    const json* best = nullptr;
    for (const json* t : done) {
      if (!best || (maximize ? Metric(*t) > Metric(*best) : Metric(*t) < Metric(*best))) best = t;
    }
    return best;
  }
};

Sweep Load(const json& sweep, const json& trials) {
  Sweep s;
  s.name = internal::StringField(sweep, "name", "sweep");
  s.metric = internal::StringField(sweep, "metric", "val_accuracy");
  s.maximize = !sweep.contains("maximize") || sweep["maximize"] != false;
  const json& spec = sweep.contains("spec") ? sweep["spec"] : json::object();
  if (spec.contains("search") && spec["search"].contains("parameters") &&
      spec["search"]["parameters"].is_object()) {
    for (const auto& item : spec["search"]["parameters"].items()) s.params.push_back(item.key());
  }
  for (const json& t : trials.is_array() ? trials : json::array()) {
    const json params = t.value("params", json::object());
    for (const auto& item : params.items()) {
      if (std::find(s.params.begin(), s.params.end(), item.key()) == s.params.end()) {
        s.params.push_back(item.key());
      }
    }
    s.trials.push_back(t);
  }
  for (const json& t : s.trials) {
    if (t.contains("metrics") && t["metrics"].contains(s.metric) &&
        t["metrics"][s.metric].is_number()) {
      s.done.push_back(&t);
    }
  }
  return s;
}

// A per-class key ("test_f1_2", "selected_val_confusion_0_1"): left out of the CSV.
bool PerClass(const std::string& key) {
  static const std::regex re(".*_(precision|recall|f1|support|confusion)_[0-9]+(_[0-9]+)?$");
  return std::regex_match(key, re);
}

std::string TrialsCsv(const Sweep& s) {
  std::set<std::string> metrics;
  for (const json& t : s.trials) {
    const json values = t.value("metrics", json::object());
    for (const auto& item : values.items()) {
      if (!PerClass(item.key())) metrics.insert(item.key());
    }
  }
  std::string out = "id,state,epochs";
  for (const std::string& p : s.params) out += "," + CsvEscape(p);
  for (const std::string& m : metrics) out += "," + CsvEscape(m);
  out += "\n";
  for (const json& t : s.trials) {
    out += CsvEscape(internal::StringField(t, "id")) + "," +
           CsvEscape(internal::StringField(t, "state")) + "," +
           std::to_string(internal::IntField(t, "epochs_done"));
    const json params = t.value("params", json::object());
    const json values = t.value("metrics", json::object());
    for (const std::string& p : s.params) {
      out += "," + (params.contains(p) ? CsvEscape(Text(params[p])) : "");
    }
    for (const std::string& m : metrics) {
      out += "," + (values.contains(m) ? values[m].dump() : "");
    }
    out += "\n";
  }
  return out;
}

std::string SvgOpen(int w, int h) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(w) +
         "\" height=\"" + std::to_string(h) + "\" viewBox=\"0 0 " + std::to_string(w) + " " +
         std::to_string(h) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
}

std::string SvgText(double x, double y, const std::string& text, const char* anchor = "start") {
  return "<text x=\"" + Num(x, 6) + "\" y=\"" + Num(y, 6) + "\" text-anchor=\"" + anchor + "\">" +
         XmlEscape(text) + "</text>\n";
}

std::string Curves(const Sweep& s, const std::map<std::string, json>& epochs) {
  std::string metric = "val_accuracy";
  for (const auto& [id, list] : epochs) {
    for (const json& e : list) {
      if (e.contains("values") && e["values"].contains(s.metric)) metric = s.metric;
    }
  }
  std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> series;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const json& t : s.trials) {
    const auto it = epochs.find(internal::StringField(t, "id"));
    if (it == epochs.end()) continue;
    std::vector<std::pair<double, double>> pts;
    for (const json& e : it->second) {
      if (!e.contains("values") || !e["values"].contains(metric) ||
          !e["values"][metric].is_number()) {
        continue;
      }
      const double x = e.value("epoch", 0), y = e["values"][metric].get<double>();
      pts.emplace_back(x, y);
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
    if (!pts.empty()) series.emplace_back(it->first, std::move(pts));
  }
  const int W = 640, H = 360, L = 60, R = 12, T = 16, B = 40;
  std::string svg = SvgOpen(W, H);
  if (series.empty()) return svg + SvgText(L, H / 2, "no per-epoch metrics") + "</svg>\n";
  auto sx = [&](double x) { return L + (x - x0) / std::max(x1 - x0, 1e-12) * (W - L - R); };
  auto sy = [&](double y) { return H - B - (y - y0) / std::max(y1 - y0, 1e-12) * (H - T - B); };
  svg += "<path d=\"M" + std::to_string(L) + "," + std::to_string(T) + "V" +
         std::to_string(H - B) + "H" + std::to_string(W - R) + "\" stroke=\"#999\" fill=\"none\"/>\n";
  svg += SvgText(L - 4, T + 8, Num(y1), "end") + SvgText(L - 4, H - B, Num(y0), "end");
  svg += SvgText(L, H - B + 14, Num(x0)) + SvgText(W - R, H - B + 14, Num(x1), "end");
  svg += SvgText((L + W) / 2.0, H - 8, "epoch; " + metric + " of every trial", "middle");
  const json* best = s.Best();
  const std::string best_id = best ? internal::StringField(*best, "id") : "";
  for (size_t i = 0; i < series.size(); ++i) {
    std::string d;
    for (size_t j = 0; j < series[i].second.size(); ++j) {
      d += (j ? "L" : "M") + Num(sx(series[i].second[j].first), 6) + "," +
           Num(sy(series[i].second[j].second), 6);
    }
    const bool is_best = series[i].first == best_id;
    svg += "<path class=\"curve\" d=\"" + d + "\" fill=\"none\" stroke=\"" +
           (is_best ? std::string("#000") : "hsl(" + std::to_string(i * 47 % 360) + ",60%,45%)") +
           "\" stroke-width=\"" + (is_best ? "2.5" : "1") + "\"><title>" +
           XmlEscape(series[i].first) + "</title></path>\n";
  }
  return svg + "</svg>\n";
}

// Parameter values in order (numbers ascending, others by text), as JSON text.
std::vector<std::string> Values(const Sweep& s, const std::string& param) {
  std::vector<json> values;
  for (const json& t : s.trials) {
    if (!t["params"].contains(param)) continue;
    if (std::find(values.begin(), values.end(), t["params"][param]) == values.end()) {
      values.push_back(t["params"][param]);
    }
  }
  std::sort(values.begin(), values.end(), [](const json& a, const json& b) {
    if (a.is_number() && b.is_number()) return a.get<double>() < b.get<double>();
    return a.dump() < b.dump();
  });
  std::vector<std::string> out;
  for (const json& v : values) out.push_back(v.dump());
  return out;
}

std::string Parallel(const Sweep& s) {
  const int W = 640, H = 320, L = 50, R = 50, T = 30, B = 20;
  std::vector<std::string> axes = s.params;
  axes.push_back(s.metric);
  std::string svg = SvgOpen(W, H);
  if (s.done.empty()) return svg + SvgText(L, H / 2, "no finished trial") + "</svg>\n";
  double m0 = 1e300, m1 = -1e300;
  for (const json* t : s.done) m0 = std::min(m0, s.Metric(*t)), m1 = std::max(m1, s.Metric(*t));
  auto x = [&](size_t i) {
    return axes.size() > 1 ? L + static_cast<double>(i) * (W - L - R) / (axes.size() - 1) : L;
  };
  std::vector<std::vector<std::string>> values;
  for (size_t i = 0; i < axes.size(); ++i) {
    values.push_back(i + 1 < axes.size() ? Values(s, axes[i]) : std::vector<std::string>());
    svg += "<line x1=\"" + Num(x(i), 6) + "\" y1=\"" + std::to_string(T) + "\" x2=\"" +
           Num(x(i), 6) + "\" y2=\"" + std::to_string(H - B) + "\" stroke=\"#999\"/>\n";
    svg += SvgText(x(i), T - 10, axes[i], "middle");
  }
  for (const json* t : s.done) {
    std::string d;
    for (size_t i = 0; i < axes.size(); ++i) {
      double y;
      if (i + 1 == axes.size()) {
        y = H - B - (s.Metric(*t) - m0) / std::max(m1 - m0, 1e-12) * (H - T - B);
      } else {
        const auto& v = values[i];
        const size_t k = std::find(v.begin(), v.end(), (*t)["params"][axes[i]].dump()) - v.begin();
        y = T + (k + 0.5) * (H - T - B) / std::max<size_t>(v.size(), 1);
      }
      d += (i ? "L" : "M") + Num(x(i), 6) + "," + Num(y, 6);
    }
    const double q = (s.Metric(*t) - m0) / std::max(m1 - m0, 1e-12);
    svg += "<path class=\"line\" d=\"" + d + "\" fill=\"none\" stroke=\"hsl(" +
           std::to_string(static_cast<int>((s.maximize ? q : 1 - q) * 120)) +
           ",65%,42%)\"/>\n";
  }
  return svg + "</svg>\n";
}

std::string Heatmap(const Sweep& s) {
  std::vector<std::string> params;
  for (const std::string& p : s.params) {
    if (p != "seed") params.push_back(p);
  }
  std::string svg;
  if (params.size() < 2) return SvgOpen(300, 40) + SvgText(4, 20, "needs two swept parameters") + "</svg>\n";
  const std::vector<std::string> xv = Values(s, params[0]), yv = Values(s, params[1]);
  std::map<std::pair<std::string, std::string>, std::pair<double, int>> cells;
  for (const json* t : s.done) {
    auto& c = cells[{(*t)["params"][params[0]].dump(), (*t)["params"][params[1]].dump()}];
    c.first += s.Metric(*t);
    c.second += 1;
  }
  double lo = 1e300, hi = -1e300;
  for (const auto& [k, c] : cells) lo = std::min(lo, c.first / c.second), hi = std::max(hi, c.first / c.second);
  const int C = 64, L = 90, T = 28;
  const int W = L + C * static_cast<int>(xv.size()) + 10, H = T + C * static_cast<int>(yv.size()) + 30;
  svg = SvgOpen(W, H);
  for (size_t i = 0; i < xv.size(); ++i) svg += SvgText(L + C * i + C / 2.0, T - 8, xv[i], "middle");
  for (size_t j = 0; j < yv.size(); ++j) svg += SvgText(L - 6, T + C * j + C / 2.0 + 4, yv[j], "end");
  for (size_t j = 0; j < yv.size(); ++j) {
    for (size_t i = 0; i < xv.size(); ++i) {
      const auto it = cells.find({xv[i], yv[j]});
      std::string fill = "#eee", label;
      if (it != cells.end()) {
        const double mean = it->second.first / it->second.second;
        const double q = (mean - lo) / std::max(hi - lo, 1e-12);
        const double good = s.maximize ? q : 1 - q;
        fill = "hsl(" + std::to_string(static_cast<int>(good * 120)) + ",60%," +
               std::to_string(static_cast<int>(70 - good * 25)) + "%)";
        label = Num(mean);
      }
      svg += "<rect class=\"cell\" x=\"" + std::to_string(L + C * i) + "\" y=\"" +
             std::to_string(T + C * j) + "\" width=\"" + std::to_string(C - 2) + "\" height=\"" +
             std::to_string(C - 2) + "\" fill=\"" + fill + "\"/>\n";
      svg += SvgText(L + C * i + C / 2.0 - 1, T + C * j + C / 2.0 + 4, label, "middle");
    }
  }
  svg += SvgText(L, H - 8, "x: " + params[0] + ", y: " + params[1] + "; mean " + s.metric);
  return svg + "</svg>\n";
}

// The prefix of the best trial's report ("test" or "selected_val") and its classes.
std::pair<std::string, int> ReportOf(const json& metrics) {
  for (const char* prefix : {"test", "selected_val"}) {
    int k = 0;
    while (metrics.contains(std::string(prefix) + "_support_" + std::to_string(k))) ++k;
    if (k > 0) return {prefix, k};
  }
  return {"", 0};
}

std::string Confusion(const Sweep& s) {
  const json* best = s.Best();
  const auto report = best ? ReportOf((*best)["metrics"]) : std::pair<std::string, int>{"", 0};
  const std::string prefix = report.first;
  const int k = report.second;
  if (k == 0) return SvgOpen(300, 40) + SvgText(4, 20, "no confusion matrix") + "</svg>\n";
  const json& m = (*best)["metrics"];
  const int C = 56, L = 60, T = 44;
  std::string svg = SvgOpen(L + C * k + 10, T + C * k + 24);
  double max = 1;
  auto at = [&](int t, int p) {
    const std::string key = prefix + "_confusion_" + std::to_string(t) + "_" + std::to_string(p);
    return m.contains(key) ? m[key].get<double>() : 0.0;
  };
  for (int t = 0; t < k; ++t) for (int p = 0; p < k; ++p) max = std::max(max, at(t, p));
  svg += SvgText(L, 14, internal::StringField(*best, "id") + ", " +
                            (prefix == "test" ? "test" : "validation") +
                            " part (rows: true class, columns: predicted)");
  for (int t = 0; t < k; ++t) {
    svg += SvgText(L - 6, T + C * t + C / 2.0 + 4, std::to_string(t), "end");
    svg += SvgText(L + C * t + C / 2.0, T - 6, std::to_string(t), "middle");
    for (int p = 0; p < k; ++p) {
      svg += "<rect class=\"cm-cell\" x=\"" + std::to_string(L + C * p) + "\" y=\"" +
             std::to_string(T + C * t) + "\" width=\"" + std::to_string(C - 2) + "\" height=\"" +
             std::to_string(C - 2) + "\" fill=\"rgba(40,90,170," + Num(0.1 + 0.9 * at(t, p) / max, 3) +
             ")\"/>\n";
      svg += SvgText(L + C * p + C / 2.0 - 1, T + C * t + C / 2.0 + 4, Num(at(t, p), 10), "middle");
    }
  }
  return svg + "</svg>\n";
}

std::string TopConfigs(const Sweep& s) {
  std::vector<const json*> order = s.done;
  std::stable_sort(order.begin(), order.end(), [&](const json* a, const json* b) {
    return s.maximize ? s.Metric(*a) > s.Metric(*b) : s.Metric(*a) < s.Metric(*b);
  });
  std::vector<std::string> extra;
  for (const char* m : {"selected_val_f1", "test_accuracy", "test_f1"}) {
    if (m != s.metric) extra.push_back(m);
  }
  std::string out = "% lattice report: the best configurations of sweep " + s.name + "\n";
  out += "\\begin{tabular}{r" + std::string(s.params.size() + 1 + extra.size(), 'l') + "}\n\\toprule\n";
  out += "\\#";
  for (const std::string& p : s.params) out += " & " + TexEscape(p);
  out += " & " + TexEscape(s.metric);
  for (const std::string& m : extra) out += " & " + TexEscape(m);
  out += " \\\\\n\\midrule\n";
  for (size_t i = 0; i < order.size() && i < 10; ++i) {
    const json& t = *order[i];
    out += std::to_string(i + 1);
    for (const std::string& p : s.params) {
      out += " & " + (t["params"].contains(p) ? TexEscape(Text(t["params"][p])) : "");
    }
    out += " & " + Num(s.Metric(t));
    for (const std::string& m : extra) {
      out += " & " + (t["metrics"].contains(m) ? Num(t["metrics"][m].get<double>()) : "--");
    }
    out += " \\\\\n";
  }
  return out + "\\bottomrule\n\\end{tabular}\n";
}

std::string PerClass(const Sweep& s) {
  const json* best = s.Best();
  const auto report = best ? ReportOf((*best)["metrics"]) : std::pair<std::string, int>{"", 0};
  const std::string prefix = report.first;
  const int k = report.second;
  std::string out = "% lattice report: per-class metrics of the best trial" +
                    (best ? " " + internal::StringField(*best, "id") : std::string()) + " on its " +
                    (prefix == "test" ? "test" : "validation") + " part\n";
  out += "\\begin{tabular}{lrrrr}\n\\toprule\nClass & Precision & Recall & F1 & Support \\\\\n\\midrule\n";
  for (int c = 0; c < k; ++c) {
    const json& m = (*best)["metrics"];
    auto v = [&](const char* n) {
      return m.value(prefix + "_" + n + "_" + std::to_string(c), 0.0);
    };
    out += std::to_string(c) + " & " + Num(v("precision")) + " & " + Num(v("recall")) + " & " +
           Num(v("f1")) + " & " + Num(v("support"), 10) + " \\\\\n";
  }
  if (k > 0) {
    const json& m = (*best)["metrics"];
    out += "\\midrule\nMacro F1 & & & " + Num(m.value(prefix + "_f1", 0.0)) + " & \\\\\n";
    out += "Accuracy & & & " + Num(m.value(prefix + "_accuracy", 0.0)) + " & \\\\\n";
  }
  return out + "\\bottomrule\n\\end{tabular}\n";
}

std::string DatasetOverview(const Sweep& s, const json& sweep) {
  const json* best = s.Best();
  const json empty = json::object();
  const json& m = best ? (*best)["metrics"] : empty;
  const json& spec = sweep.contains("spec") ? sweep["spec"] : empty;
  const json dataset = spec.value("dataset", json::object());
  const json split = dataset.value("split", json::object());
  int k = 0;
  while (m.contains("selected_val_support_" + std::to_string(k))) ++k;
  std::string out = "% lattice report: the data of sweep " + s.name + "\n";
  out += "\\begin{tabular}{lrrr}\n\\toprule\nClass & Training & Validation & Test \\\\\n\\midrule\n";
  for (int c = 0; c < k; ++c) {
    const std::string cs = std::to_string(c);
    std::string train = "--";
    if (split.contains("train_per_class")) train = Text(split["train_per_class"]);
    const std::string test_key = "test_support_" + cs;
    out += cs + " & " + train + " & " + Num(m["selected_val_support_" + cs].get<double>(), 10) +
           " & " + (m.contains(test_key) ? Num(m[test_key].get<double>(), 10) : "--") + " \\\\\n";
  }
  return out + "\\bottomrule\n\\end{tabular}\n";
}

// One row per point (the parameters but seed): how many trials, and the mean and sample
// standard deviation of the sweep metric and of test_accuracy over them (repeats: N).
std::string PointsCsv(const Sweep& s) {
  std::vector<std::string> params;
  for (const std::string& p : s.params) {
    if (p != "seed") params.push_back(p);
  }
  std::vector<std::string> order;
  std::map<std::string, std::pair<json, std::map<std::string, std::vector<double>>>> points;
  for (const json* t : s.done) {
    json point = json::object();
    for (const std::string& p : params) point[p] = (*t)["params"].value(p, json());
    const std::string key = point.dump();
    if (!points.count(key)) order.push_back(key);
    auto& entry = points[key];
    entry.first = point;
    for (const std::string& m : {s.metric, std::string("test_accuracy")}) {
      if ((*t)["metrics"].contains(m)) entry.second[m].push_back((*t)["metrics"][m].get<double>());
    }
  }
  auto stats = [](const std::vector<double>& v) -> std::string {
    if (v.empty()) return ",";
    double mean = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    double var = 0;
    for (double x : v) var += (x - mean) * (x - mean);
    const double sd = v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0.0;
    return json(mean).dump() + "," + json(sd).dump();
  };
  std::string out;
  for (const std::string& p : params) out += CsvEscape(p) + ",";
  out += "trials," + CsvEscape(s.metric + "_mean") + "," + CsvEscape(s.metric + "_std") +
         ",test_accuracy_mean,test_accuracy_std\n";
  for (const std::string& key : order) {
    const auto& [point, values] = points[key];
    for (const std::string& p : params) out += CsvEscape(point[p].is_null() ? "" : Text(point[p])) + ",";
    const auto metric = values.find(s.metric);
    const auto test = values.find("test_accuracy");
    out += std::to_string(metric->second.size()) + "," + stats(metric->second) + "," +
           stats(test == values.end() ? std::vector<double>() : test->second) + "\n";
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> BuildReportFiles(const json& sweep, const json& trials,
                                                    const std::map<std::string, json>& epochs) {
  const Sweep s = Load(sweep, trials);
  return {{"trials.csv", TrialsCsv(s)},        {"points.csv", PointsCsv(s)},
          {"curves.svg", Curves(s, epochs)},
          {"parallel.svg", Parallel(s)},       {"heatmap.svg", Heatmap(s)},
          {"confusion.svg", Confusion(s)},     {"top_configs.tex", TopConfigs(s)},
          {"per_class.tex", PerClass(s)},      {"dataset.tex", DatasetOverview(s, sweep)}};
}

int RunReport(const ClientOptions& options, const ReportArgs& args, CommandIo& io) {
  using internal::PrintError;
  auto client = internal::MakeClient(options, "");
  StatusOr<json> sweep = internal::CallJson(*client, "GET", internal::SweepTarget(args.sweep, ""), "", "");
  if (!sweep.ok()) return PrintError(io, sweep.status().message(), 1);
  StatusOr<json> all = internal::FetchAllTrials(*client, args.sweep);
  if (!all.ok()) return PrintError(io, all.status().message(), 1);
  const json trials = (*all)["trials"];
  std::map<std::string, json> epochs;
  for (const json& t : trials) {
    const std::string id = internal::StringField(t, "id");
    StatusOr<json> e = internal::CallJson(
        *client, "GET", "/v1/trials/" + internal::EncodePathSegment(id) + "/metrics", "", "");
    if (!e.ok()) return PrintError(io, e.status().message(), 1);
    epochs[id] = (*e)["epochs"];
  }
  const std::string dir = args.output.empty() ? "report-" + args.sweep : args.output;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return PrintError(io, "cannot create " + dir + ": " + std::strerror(errno), 1);
  }
  const auto files = BuildReportFiles(*sweep, trials, epochs);
  for (const auto& [name, content] : files) {
    if (Status s = WriteFileAtomically(dir + "/" + name, content); !s.ok()) {
      return PrintError(io, s.message(), 1);
    }
  }
  std::string names;
  for (const auto& [name, content] : files) names += (names.empty() ? "" : ", ") + name;
  io.out << "wrote " << files.size() << " files to " << dir << "/: " << names << " ("
         << trials.size() << " trials)\n";
  return 0;
}

void RegisterReportCommand(CLI::App& app, int* exit_code) {
  struct State {
    ClientOptions options;
    ReportArgs args;
  };
  auto st = std::make_shared<State>();
  CLI::App* sub = app.add_subcommand(
      "report",
      "Write a sweep's figures and tables for a paper into a directory: trials.csv, points.csv,\n"
      "curves.svg, parallel.svg, heatmap.svg, confusion.svg (the best trial's), and LaTeX\n"
      "(booktabs) tables top_configs.tex, per_class.tex, dataset.tex. The coordinator also\n"
      "serves them live as a page: http://<host>:<port>/sweeps/<sweep>.");
  sub->add_option("sweep", st->args.sweep, "sweep id or name")->required();
  sub->add_option("-o,--output", st->args.output, "directory (default: report-<sweep>)");
  internal::AddCommonOptions(sub, &st->options);
  internal::SetRunner(sub, exit_code, [st](CommandIo& io) { return RunReport(st->options, st->args, io); });
}

}  // namespace lattice::cli
