// The sweep report page (GET /sweeps/{id}): hand-written SVG, no library, no network
// access beyond this coordinator's own API. Every number shown is the API's value (cells
// carry it exactly in data-value; the text shows it rounded).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const sweepId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const state = { sweep: null, trials: [], epochs: {}, sortKey: null, sortDesc: true };

  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  async function getJson(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }
  function paramNames() {
    const spec = state.sweep.spec || {};
    const p = (spec.search && spec.search.parameters) || {};
    const names = Object.keys(p);
    for (const t of state.trials) {
      for (const k of Object.keys(t.params || {})) if (!names.includes(k)) names.push(k);
    }
    return names;
  }
  function metricOf(t) {
    const v = t.metrics ? t.metrics[state.sweep.metric] : undefined;
    return typeof v === "number" ? v : null;
  }
  function better(a, b) { return state.sweep.maximize ? a > b : a < b; }
  function bestTrial() {
    let best = null;
    for (const t of state.trials) {
      const v = metricOf(t);
      if (v !== null && (best === null || better(v, metricOf(best)))) best = t;
    }
    return best;
  }
  function curveMetric() {
    const sel = document.getElementById("curve-metric");
    return sel && sel.value ? sel.value : state.sweep.metric;
  }

  // ---- trials table ---------------------------------------------------------------------
  function renderTable() {
    const names = paramNames();
    const metricKeys = [state.sweep.metric, "selected_val_f1", "test_accuracy", "test_f1"]
        .filter((k, i, a) => a.indexOf(k) === i);
    const cols = [["id", t => t.id], ["state", t => t.state], ["epochs", t => t.epochs_done]]
        .concat(names.map(n => [n, t => (t.params || {})[n]]))
        .concat(metricKeys.map(m => [m, t => (t.metrics || {})[m]]));
    const rows = state.trials.slice();
    if (state.sortKey !== null) {
      const get = cols[state.sortKey][1];
      rows.sort((a, b) => {
        const x = get(a), y = get(b);
        if (x === undefined || x === null) return 1;
        if (y === undefined || y === null) return -1;
        const c = typeof x === "number" && typeof y === "number" ? x - y
                  : JSON.stringify(x).localeCompare(JSON.stringify(y));
        return state.sortDesc ? -c : c;
      });
    }
    const table = el("table", { id: "trials-table" });
    const head = el("tr");
    cols.forEach(([name], i) => {
      const th = el("th", { "data-col": i }, name + (state.sortKey === i ? (state.sortDesc ? " ▼" : " ▲") : ""));
      th.addEventListener("click", () => {
        state.sortDesc = state.sortKey === i ? !state.sortDesc : true;
        state.sortKey = i;
        renderTable();
      });
      head.appendChild(th);
    });
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    const best = bestTrial();
    for (const t of rows) {
      const tr = el("tr", { "data-trial": t.id, class: best && t.id === best.id ? "best" : "" });
      for (const [name, get] of cols) {
        const v = get(t);
        const td = el("td", { "data-key": name }, fmt(v));
        if (typeof v === "number") td.setAttribute("data-value", String(v));
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    const box = document.getElementById("trials");
    box.replaceChildren(table);
  }

  // ---- axes helpers -----------------------------------------------------------------------
  function scale(d0, d1, r0, r1) {
    const span = d1 - d0 || 1;
    return v => r0 + (v - d0) / span * (r1 - r0);
  }
  function extent(values) {
    const v = values.filter(x => typeof x === "number" && isFinite(x));
    return v.length ? [Math.min(...v), Math.max(...v)] : [0, 1];
  }

  // ---- learning curves --------------------------------------------------------------------
  function renderCurves() {
    const metric = curveMetric();
    const W = 640, H = 320, L = 56, R = 12, T = 12, B = 32;
    const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const series = state.trials.map(t => [t, (state.epochs[t.id] || [])
        .filter(e => typeof e.values[metric] === "number")
        .map(e => [e.epoch, e.values[metric]])]).filter(([, pts]) => pts.length > 0);
    const xs = extent(series.flatMap(([, p]) => p.map(q => q[0])));
    const ys = extent(series.flatMap(([, p]) => p.map(q => q[1])));
    const x = scale(xs[0], xs[1], L, W - R), y = scale(ys[0], ys[1], H - B, T);
    svg.appendChild(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    svg.appendChild(el("svg:line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    svg.appendChild(el("svg:text", { x: L - 4, y: T + 10, "text-anchor": "end" }, fmt(ys[1])));
    svg.appendChild(el("svg:text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmt(ys[0])));
    svg.appendChild(el("svg:text", { x: W - R, y: H - 8, "text-anchor": "end" }, "epoch " + xs[1]));
    const best = bestTrial();
    series.forEach(([t, pts], i) => {
      const d = pts.map((p, j) => (j ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join("");
      const path = el("svg:path", { d, class: "curve" + (best && t.id === best.id ? " best" : ""),
                                    "data-trial": t.id, stroke: `hsl(${(i * 47) % 360},60%,45%)` });
      path.appendChild(el("svg:title", {}, t.id + " " + JSON.stringify(t.params)));
      svg.appendChild(path);
    });
    document.getElementById("curves").replaceChildren(svg);
  }

  // ---- parallel coordinates ---------------------------------------------------------------
  function renderParallel() {
    const names = paramNames();
    const axes = names.concat([state.sweep.metric]);
    const W = 640, H = 300, T = 24, B = 24, L = 40, R = 40;
    const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const done = state.trials.filter(t => metricOf(t) !== null);
    const ax = axes.map((name, i) => {
      const xPos = L + (axes.length > 1 ? i * (W - L - R) / (axes.length - 1) : 0);
      const isMetric = i === axes.length - 1;
      const vals = done.map(t => isMetric ? metricOf(t) : (t.params || {})[name]);
      let pos;
      if (vals.every(v => typeof v === "number")) {
        const [a, b] = extent(vals);
        const s = scale(a, b, H - B, T);
        pos = v => s(v);
      } else {
        const cats = [...new Set(vals.map(v => JSON.stringify(v)))].sort();
        pos = v => T + (cats.indexOf(JSON.stringify(v)) + 0.5) * (H - T - B) / Math.max(cats.length, 1);
      }
      svg.appendChild(el("svg:line", { x1: xPos, y1: T, x2: xPos, y2: H - B, class: "axis" }));
      svg.appendChild(el("svg:text", { x: xPos, y: T - 8, "text-anchor": "middle" }, name));
      return { xPos, pos, isMetric, name };
    });
    const [m0, m1] = extent(done.map(metricOf));
    for (const t of done) {
      const d = ax.map((a, i) => (i ? "L" : "M") + a.xPos.toFixed(1) + "," +
          a.pos(a.isMetric ? metricOf(t) : t.params[a.name]).toFixed(1)).join("");
      const q = (metricOf(t) - m0) / ((m1 - m0) || 1);
      const good = state.sweep.maximize ? q : 1 - q;
      svg.appendChild(el("svg:path", { d, class: "line", "data-trial": t.id,
                                       stroke: `hsl(${Math.round(good * 120)},65%,42%)` }));
    }
    document.getElementById("parallel").replaceChildren(svg);
  }

  // ---- heatmap of two parameters ----------------------------------------------------------
  function renderHeatmap() {
    const names = paramNames().filter(n => n !== "seed");
    const px = document.getElementById("heat-x"), py = document.getElementById("heat-y");
    for (const sel of [px, py]) {
      if (sel.options.length !== names.length) {
        sel.replaceChildren(...names.map(n => el("option", { value: n }, n)));
      }
    }
    if (!px.value && names.length) px.value = names[0];
    if (!py.value && names.length) py.value = names[Math.min(1, names.length - 1)];
    if (px.dataset.init !== "1" && names.length > 1) { py.value = names[1]; px.dataset.init = "1"; }
    const box = document.getElementById("heatmap");
    if (names.length < 2) { box.replaceChildren(el("p", {}, "needs two swept parameters")); return; }
    const key = v => JSON.stringify(v);
    const done = state.trials.filter(t => metricOf(t) !== null);
    const xv = [...new Set(state.trials.map(t => key(t.params[px.value])))];
    const yv = [...new Set(state.trials.map(t => key(t.params[py.value])))];
    const sortVals = a => a.sort((p, q) => { const u = JSON.parse(p), v = JSON.parse(q);
      return typeof u === "number" && typeof v === "number" ? u - v : p.localeCompare(q); });
    sortVals(xv); sortVals(yv);
    // Each cell: the mean of the metric over the trials with those two values (the other
    // parameters and repeats averaged), and how many there were.
    const cells = {};
    for (const t of done) {
      const k = key(t.params[px.value]) + "|" + key(t.params[py.value]);
      (cells[k] = cells[k] || []).push(metricOf(t));
    }
    const means = Object.values(cells).map(v => v.reduce((a, b) => a + b, 0) / v.length);
    const [lo, hi] = extent(means);
    const C = 64, L = 90, T = 24;
    const W = Math.max(L + C * xv.length + 10, 360), H = T + C * yv.length + 30;
    const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                                "data-x-param": px.value, "data-y-param": py.value });
    xv.forEach((v, i) => svg.appendChild(el("svg:text", { x: L + C * i + C / 2, y: T - 6, "text-anchor": "middle" }, fmt(JSON.parse(v)))));
    yv.forEach((v, j) => svg.appendChild(el("svg:text", { x: L - 6, y: T + C * j + C / 2 + 4, "text-anchor": "end" }, fmt(JSON.parse(v)))));
    yv.forEach((b, j) => xv.forEach((a, i) => {
      const vals = cells[a + "|" + b];
      const mean = vals ? vals.reduce((s, q) => s + q, 0) / vals.length : null;
      const q = mean === null ? 0 : (mean - lo) / ((hi - lo) || 1);
      const good = state.sweep.maximize ? q : 1 - q;
      const rect = el("svg:rect", { x: L + C * i, y: T + C * j, width: C - 2, height: C - 2, class: "cell",
                                    "data-x": a, "data-y": b,
                                    fill: mean === null ? "#eee" : `hsl(${Math.round(good * 120)},60%,${70 - good * 25}%)` });
      if (mean !== null) rect.setAttribute("data-value", String(mean));
      svg.appendChild(rect);
      svg.appendChild(el("svg:text", { x: L + C * i + C / 2 - 1, y: T + C * j + C / 2 + 4, "text-anchor": "middle" }, fmt(mean)));
    }));
    svg.appendChild(el("svg:text", { x: L, y: H - 8 }, `x: ${px.value}, y: ${py.value}; mean ${state.sweep.metric}`));
    box.replaceChildren(svg);
  }

  // ---- best trial's confusion matrix ------------------------------------------------------
  function renderConfusion() {
    const box = document.getElementById("confusion");
    const best = bestTrial();
    const m = best ? best.metrics : {};
    const prefix = Object.keys(m).some(k => k.startsWith("test_confusion_")) ? "test" : "selected_val";
    const re = new RegExp("^" + prefix + "_confusion_(\\d+)_(\\d+)$");
    let k = 0;
    for (const key of Object.keys(m)) { const r = re.exec(key); if (r) k = Math.max(k, +r[1] + 1, +r[2] + 1); }
    if (!best || k === 0) { box.replaceChildren(el("p", {}, "no confusion matrix yet")); return; }
    const C = 56, L = 60, T = 40;
    const svg = el("svg:svg", { width: Math.max(L + C * k + 10, 420), height: T + C * k + 10 });
    let max = 1;
    for (let t = 0; t < k; ++t) for (let p = 0; p < k; ++p) max = Math.max(max, m[`${prefix}_confusion_${t}_${p}`] || 0);
    svg.appendChild(el("svg:text", { x: L, y: 14 }, `${best.id}, ${prefix === "test" ? "test" : "validation"} part: rows true, columns predicted`));
    for (let t = 0; t < k; ++t) {
      svg.appendChild(el("svg:text", { x: L - 6, y: T + C * t + C / 2 + 4, "text-anchor": "end" }, String(t)));
      svg.appendChild(el("svg:text", { x: L + C * t + C / 2, y: T - 4, "text-anchor": "middle" }, String(t)));
      for (let p = 0; p < k; ++p) {
        const v = m[`${prefix}_confusion_${t}_${p}`] || 0;
        svg.appendChild(el("svg:rect", { x: L + C * p, y: T + C * t, width: C - 2, height: C - 2, class: "cm-cell",
                                         "data-value": String(v), fill: `rgba(40,90,170,${(0.1 + 0.9 * v / max).toFixed(3)})` }));
        svg.appendChild(el("svg:text", { x: L + C * p + C / 2 - 1, y: T + C * t + C / 2 + 4, "text-anchor": "middle" }, String(v)));
      }
    }
    const per = el("table", { id: "per-class" });
    per.appendChild(el("tr")).append(...["class", "precision", "recall", "F1", "support"].map(h => el("th", {}, h)));
    for (let c = 0; c < k; ++c) {
      const tr = per.appendChild(el("tr"));
      tr.appendChild(el("td", {}, String(c)));
      for (const n of ["precision", "recall", "f1", "support"]) {
        const v = m[`${prefix}_${n}_${c}`];
        tr.appendChild(el("td", { "data-value": String(v) }, fmt(v)));
      }
    }
    box.replaceChildren(svg, per);
  }

  function renderSummary() {
    const s = state.sweep, best = bestTrial();
    const counts = s.counts || {};
    document.getElementById("title").textContent = `Sweep ${s.name} (${s.id})`;
    document.getElementById("summary").textContent =
        `${s.state}; ${state.trials.length} trials` +
        Object.entries(counts).filter(([, v]) => typeof v === "number").map(([k, v]) => `, ${k} ${v}`).join("") +
        `; metric ${s.metric} (${s.maximize ? "maximize" : "minimize"})` +
        (best ? `; best ${best.id}: ${fmt(metricOf(best))} with ${JSON.stringify(best.params)}` : "");
  }

  function renderAll() {
    const sel = document.getElementById("curve-metric");
    const names = new Set();
    for (const list of Object.values(state.epochs)) for (const e of list) for (const k of Object.keys(e.values)) names.add(k);
    if (sel.options.length !== names.size) {
      const keep = sel.value || (names.has(state.sweep.metric) ? state.sweep.metric : "val_accuracy");
      sel.replaceChildren(...[...names].sort().map(n => el("option", { value: n }, n)));
      if (names.has(keep)) sel.value = keep;
    }
    renderSummary();
    renderTable();
    renderCurves();
    renderParallel();
    renderHeatmap();
    renderConfusion();
  }

  async function load() {
    state.sweep = await getJson("/v1/sweeps/" + encodeURIComponent(sweepId));
    const trials = [];
    let after = null;
    do {
      const page = await getJson("/v1/sweeps/" + encodeURIComponent(sweepId) + "/trials" +
                                 (after === null ? "" : "?after=" + after));
      trials.push(...page.trials);
      after = page.next_after === undefined ? null : page.next_after;
    } while (after !== null);
    state.trials = trials;
    await Promise.all(trials.filter(t => t.epochs_done > 0 || t.state === "running").map(async t => {
      const e = await getJson("/v1/trials/" + encodeURIComponent(t.id) + "/metrics");
      state.epochs[t.id] = e.epochs;
    }));
    renderAll();
    const live = ["queued", "running", "pending"].includes(state.sweep.state);
    document.body.setAttribute("data-state", state.sweep.state);
    document.body.setAttribute("data-ready", "1");
    if (live) setTimeout(tick, 2000);
  }
  function tick() {
    load().catch(err => {
      document.getElementById("summary").textContent = "cannot load: " + err.message;
      setTimeout(tick, 5000);
    });
  }
  for (const id of ["curve-metric", "heat-x", "heat-y"]) {
    document.getElementById(id).addEventListener("change", () => state.sweep && renderAll());
  }
  tick();
})();
