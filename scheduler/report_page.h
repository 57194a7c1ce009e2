// The sweep report page: GET /sweeps/{id} (HTML). One self-contained document: the page's
// script (scheduler/report/sweep_report.js, embedded at build time) draws everything with
// hand-written SVG from the coordinator's own JSON API (GET /v1/sweeps/{id}, .../trials,
// /v1/trials/{id}/metrics), so viewing it needs no network access and no library:
//   - a summary line (state, counts, metric, best trial);
//   - the trials table, sortable by any column (click a header);
//   - the learning curves of every trial (one <path class="curve"> each; any per-epoch metric);
//   - parallel coordinates, swept parameters -> the sweep metric (<path class="line">);
//   - a heatmap of any two swept parameters (<rect class="cell">: the mean metric of the
//     trials with those two values);
//   - the best trial's confusion matrix (<rect class="cm-cell">; its test part when it has
//     one, else validation) and per-class precision / recall / F1.
// While the sweep is queued or running the page reloads its data every 2 s. Each number
// cell carries the API's value exactly in data-value. <body data-ready="1"> once drawn.
#pragma once

#include <string>

namespace lattice::scheduler {

// The page (the same for every sweep: the script reads the id from the URL).
std::string SweepReportHtml();

namespace internal {
const char* SweepReportScript();  // generated from scheduler/report/sweep_report.js
}  // namespace internal

}  // namespace lattice::scheduler
