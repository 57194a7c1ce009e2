#include "scheduler/report_page.h"

namespace lattice::scheduler {

std::string SweepReportHtml() {
  static const std::string page = std::string(R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Lattice sweep report</title>
<link rel="icon" href="data:,">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
#summary { color: #555; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f4f4f4; cursor: pointer; user-select: none; }
tr.best td { background: #eef7ee; font-weight: 600; }
#trials { max-height: 420px; overflow: auto; }
svg text { font-size: 11px; fill: #333; }
.axis { stroke: #999; stroke-width: 1; }
.curve { fill: none; stroke-width: 1.2; opacity: 0.75; }
.curve.best { stroke: #000 !important; stroke-width: 2.5; opacity: 1; }
.line { fill: none; stroke-width: 1.2; opacity: 0.7; }
.grid { display: flex; flex-wrap: wrap; gap: 24px; }
</style>
</head>
<body>
<h1 id="title">Sweep</h1>
<div id="summary">loading…</div>
<h2>Trials</h2>
<div id="trials"></div>
<div class="grid">
  <div><h2>Learning curves <select id="curve-metric"></select></h2><div id="curves"></div></div>
  <div><h2>Parameters → metric</h2><div id="parallel"></div></div>
  <div><h2>Heatmap <select id="heat-x"></select> × <select id="heat-y"></select></h2>
       <div id="heatmap"></div></div>
  <div><h2>Best trial: confusion matrix</h2><div id="confusion"></div></div>
</div>
<script>
)") + internal::SweepReportScript() + R"(
</script>
</body>
</html>
)";
  return page;
}

}  // namespace lattice::scheduler
