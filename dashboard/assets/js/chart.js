// The dashboard's charts, on uPlot (vendored, see assets/vendor/uplot/MANIFEST): lines,
// stacked areas, bars, a second axis, mode bands, threshold lines and a scatter with boxes.
// Series come as {name, unit, points: [[t_ms, v|null], ...]}. Every time chart zooms by
// dragging (double click resets), shows the values under the cursor in its legend and shares
// the cursor with the other time charts of the page. A chart redrawn with new data keeps the
// user's zoom. Times are in KW.zone() (the site's zone unless the reader chose their own).
"use strict";
const Chart = {};
// Okabe & Ito (2008), told apart with every common colour-vision deficiency; the black of the
// original is the page's foreground here (dark background).
Chart.colors = ["#56B4E9", "#E69F00", "#009E73", "#F0E442", "#CC79A7", "#D55E00", "#0072B2", "#E6EDF3"];
Chart.modeColors = { free: "#009E73", mix: "#56B4E9", evaporative: "#E69F00", humidify: "#CC79A7", recirculation: "#F0E442" };
Chart.warn = "#E69F00";
Chart.bad = "#D55E00";
const SYNC = "kw-page";
const AXIS = { stroke: "#8b98a5", grid: { stroke: "#2d3640", width: 1 }, ticks: { stroke: "#2d3640", width: 1 }, font: "11px system-ui, sans-serif" };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

Chart.height = (opts) => opts.height || (innerWidth >= 2200 ? 360 : 240);

// The x axis in the chosen zone, 24-hour: hours and minutes, the date at local midnights and
// when the ticks are days apart.
function timeValues(u, splits, axisIdx, space, incr) {
  return splits.map((s) => {
    if (s == null) return "";
    const p = KW.parts(s * 1000);
    const midnight = p.hour === "00" && p.minute === "00";
    return incr >= 86400 || midnight ? +p.day + " " + MONTHS[+p.month - 1] : p.hour + ":" + p.minute;
  });
}

// One x array (seconds) for every series, and each series' values on it. A bucket with no
// reading between two close readings (a 15-min backfill under 5-min buckets) is bridged
// (undefined); a gap over four times the usual spacing is a real outage and breaks the line
// (null).
function align(series, scale) {
  const ts = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const idx = new Map(ts.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const a = new Array(ts.length).fill(undefined);
    s.points.forEach(([t, v]) => { if (v != null) a[idx.get(t)] = v / scale; });
    const present = []; a.forEach((v, j) => { if (v !== undefined) present.push(j); });
    const gaps = present.slice(1).map((j, k) => ts[j] - ts[present[k]]).sort((x, y) => x - y);
    const maxGap = 4 * (gaps[Math.floor(gaps.length / 2)] || Infinity);
    for (let k = 1; k < present.length; k++) if (ts[present[k]] - ts[present[k - 1]] > maxGap) a[present[k - 1] + 1] = null;
    return a;
  });
  return [ts.map((t) => t / 1000), ys];
}

// Indices of values whose nearest readings on both sides are gaps (null) or absent.
function isolated(a) {
  const out = [];
  let prev = null;
  for (let j = 0; j < a.length; j++) {
    if (a[j] == null) { if (a[j] === null) prev = null; continue; }
    let k = j + 1; while (k < a.length && a[k] === undefined) k++;
    if (prev === null && (k >= a.length || a[k] === null)) out.push(j);
    prev = j;
  }
  return out.length ? out : null;
}

function fmtValue(v, digits, unit) { return v == null ? "–" : KW.fmt(v, digits) + (unit ? " " + unit : ""); }

// Draws behind the series: mode bands and boxes; in front: threshold lines and the marked point.
function drawHooks(st) {
  const band = (u, x0, x1, y0, y1, fill, stroke) => {
    const ctx = u.ctx, L = u.valToPos(x0, "x", true), R = u.valToPos(x1, "x", true);
    const T = y1 == null ? u.bbox.top : u.valToPos(y1, "y", true), B = y0 == null ? u.bbox.top + u.bbox.height : u.valToPos(y0, "y", true);
    const l = Math.max(L, u.bbox.left), r = Math.min(R, u.bbox.left + u.bbox.width);
    if (r <= l) return;
    ctx.save(); ctx.fillStyle = fill; ctx.fillRect(l, T, r - l, B - T);
    if (stroke) { ctx.strokeStyle = stroke; ctx.lineWidth = devicePixelRatio; ctx.strokeRect(l, T, r - l, B - T); }
    ctx.restore();
  };
  return {
    drawClear: [(u) => {
      (st.modes || []).forEach((m) => band(u, m.from_ms / 1000, m.to_ms / 1000, null, null, (Chart.modeColors[m.mode] || "#ffffff") + "33"));
      (st.boxes || []).forEach((b) => band(u, b.x[0], b.x[1], b.y[0], b.y[1], b.fill, b.stroke));
    }],
    draw: [(u) => {
      const ctx = u.ctx;
      (st.hlines || []).forEach((h) => {
        const y = u.valToPos(h.y, "y", true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
        ctx.save(); ctx.strokeStyle = h.color || Chart.bad; ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]); ctx.lineWidth = devicePixelRatio;
        ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y); ctx.stroke(); ctx.restore();
      });
      if (st.mark) {
        ctx.save(); ctx.fillStyle = "#E6EDF3"; ctx.beginPath();
        ctx.arc(u.valToPos(st.mark[0], "x", true), u.valToPos(st.mark[1], "y", true), 4 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill(); ctx.restore();
      }
    }],
  };
}

// Builds the chart in `host`, or gives the one already there new data when its shape is the
// same (the zoom is kept).
function mount(host, key, st, data, build) {
  const old = host._kw;
  if (old && old.key === key && old.u) {
    Object.assign(old.st, st);
    old.u.setData(data, !old.st.zoomed);
    if (old.st.zoomed) old.u.redraw();
    return old.u;
  }
  if (old && old.u) old.u.destroy();
  if (old && old.ro) old.ro.disconnect();
  host.innerHTML = "";
  const opts = build(st);
  opts.width = host.clientWidth || 600;
  // The user's drag marks the chart zoomed (new data keeps the zoom) until a double click.
  opts.hooks = opts.hooks || {};
  opts.hooks.setSelect = [(u) => { if (u.select.width > 0) st.zoomed = true; }];
  const u = new uPlot(opts, data, host);
  u.over.addEventListener("dblclick", () => { st.zoomed = false; });
  // For a screen reader the chart is an image named by its series; the figures it draws are
  // in the page's tables and tiles.
  u.over.setAttribute("role", "img");
  u.over.setAttribute("aria-label", "chart of " + opts.series.slice(1).map((s) => s.label).join(", ") + "; drag to zoom, double click to reset");
  const ro = new ResizeObserver(() => { const w = host.clientWidth; if (w && Math.abs(w - u.width) > 1) u.setSize({ width: w, height: u.height }); });
  ro.observe(host);
  host._kw = { key, st, u, ro };
  return u;
}

function empty(host, text) {
  if (host._kw) { if (host._kw.u) host._kw.u.destroy(); if (host._kw.ro) host._kw.ro.disconnect(); host._kw = null; }
  host.innerHTML = `<div class="nodata">${KW.esc(text)}</div>`;
}

// opts: {stack, bars, unit, scale (divide values), digits, modes: [{from_ms,to_ms,mode}],
// hlines: [{y, color}], y0, height, colors, right: {unit, digits, colors} (series whose unit
// differs from the first series' go on a right-hand axis, drawn as lines)}
Chart.time = (host, series, opts = {}) => {
  const scale = opts.scale || 1, digits = opts.digits ?? 1;
  const [xs, ys] = align(series, scale);
  if (!xs.length) return empty(host, "no data in this window");
  const right = opts.right ? series.map((s) => s.unit !== series[0].unit) : series.map(() => false);
  const color = (i) => (right[i] && opts.right.colors ? opts.right.colors[0] : (opts.colors && opts.colors[i]) || Chart.colors[i % Chart.colors.length]);
  // Stacked: each series drawn at the sum of those below it, its band filled down to the one
  // below; the legend shows its own value.
  const drawn = ys.map((a) => a.slice());
  if (opts.stack) for (let i = 1; i < drawn.length; i++) drawn[i] = drawn[i].map((v, j) => (v == null ? v : v + (drawn[i - 1][j] || 0)));
  const st = { modes: opts.modes, hlines: opts.hlines, raw: ys };
  const step = xs.length > 1 ? xs[1] - xs[0] : 3600;
  const key = JSON.stringify([series.map((s) => s.name + "|" + s.unit), !!opts.stack, !!opts.bars, opts.unit, !!opts.right, opts.y0, Chart.height(opts), KW.zone()]);
  const unitOf = (i) => (right[i] ? opts.right.unit : opts.unit) || series[i].unit;
  mount(host, key, st, [xs, ...drawn], (st) => ({
    height: Chart.height(opts),
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), KW.zone()),
    cursor: { sync: { key: SYNC, setSeries: false }, drag: { x: true, y: false, setScale: true }, focus: { prox: 16 } },
    legend: { live: true },
    scales: {
      x: { time: true, range: opts.bars ? (u, lo, hi) => [lo - step / 2, hi + step / 2] : undefined },
      y: { range: (u, lo, hi) => {
        if (lo == null) return [0, 1];
        const zero = opts.y0 || opts.stack || opts.bars;
        // A nearly flat series gets at least one unit of axis: ticks a hundredth apart would
        // round to the same label.
        let l = zero ? Math.min(0, lo) : lo, h = hi;
        if (h - l < 1) { const mid = (h + l) / 2; l = zero && l >= 0 ? l : mid - 0.5; h = Math.max(h, l + 1); }
        const pad = (h - l) * 0.06;
        return [zero && l >= 0 ? 0 : l - pad, h + pad];
      } },
      y2: { range: (u, lo, hi) => (lo == null ? [0, 1] : [lo - 1, hi + 1]) },
    },
    axes: [
      { ...AXIS, values: timeValues, space: 60, splits: opts.bars && xs.length <= 62 ? (u) => {
        // Bars: one label per bar, thinned to fit; the bars are local days or hours.
        const vis = u.data[0].filter((x) => x >= u.scales.x.min && x <= u.scales.x.max), k = Math.max(1, Math.ceil(vis.length / Math.max(1, u.bbox.width / devicePixelRatio / 60)));
        return vis.filter((_, i) => i % k === 0);
      } : undefined },
      { ...AXIS, size: 56 },
      ...(right.some(Boolean) ? [{ ...AXIS, scale: "y2", side: 1, size: 44, grid: { show: false } }] : []),
    ],
    series: [
      { value: (u, v) => (v == null ? "–" : KW.time(v * 1000)) },
      ...series.map((s, i) => {
        const c = color(i), bars = opts.bars && !right[i];
        return {
          label: s.name, stroke: c, width: bars ? 0 : 1.6, scale: right[i] ? "y2" : "y",
          fill: bars ? c + "cc" : opts.stack ? c + "55" : undefined,
          paths: bars ? uPlot.paths.bars({ size: [0.7, 80], align: 0 }) : undefined,
          // A reading with no neighbour to join is drawn as a dot (a lone hot sample).
          points: bars ? { show: false } : { filter: (u, si, show) => (show ? null : isolated(u.data[si])) },
          value: (u, v, si, idx) => (idx == null ? "–" : fmtValue(st.raw[i][idx], right[i] ? opts.right.digits ?? 1 : digits, unitOf(i))),
        };
      }),
    ],
    bands: opts.stack ? series.slice(1).map((_, i) => ({ series: [i + 2, i + 1] })) : undefined,
    hooks: drawHooks(st),
  }));
  // The modes under the chart: a legend of the bands present.
  const modes = [...new Set((opts.modes || []).map((m) => m.mode))];
  let ml = host.querySelector(".modelegend");
  if (modes.length) {
    if (!ml) { ml = document.createElement("div"); ml.className = "legend modelegend"; host.appendChild(ml); }
    ml.innerHTML = modes.map((m) => `<span><i style="background:${Chart.modeColors[m] || "#ffffff"}88"></i>${KW.esc(m)} mode</span>`).join("");
  } else if (ml) ml.remove();
};

// A scatter of [x, y] points (the newest, last, marked) over boxes (the ASHRAE envelope).
// opts: {x: [lo, hi], y: [lo, hi], xlabel, ylabel, boxes: [{x, y, fill, stroke}], height}
Chart.scatter = (host, points, opts) => {
  if (!points.length) return empty(host, "no readings in this window");
  const sorted = points.slice().sort((a, b) => a[0] - b[0]);
  const st = { boxes: opts.boxes, mark: points[points.length - 1] };
  mount(host, "scatter", st, [sorted.map((p) => p[0]), sorted.map((p) => p[1])], (st) => ({
    height: opts.height || 240,
    cursor: { drag: { x: true, y: true, setScale: true }, points: { size: 8 } },
    legend: { live: true },
    scales: { x: { time: false, range: opts.x }, y: { range: opts.y } },
    axes: [{ ...AXIS, label: opts.xlabel, labelSize: 18, labelFont: AXIS.font }, { ...AXIS, label: opts.ylabel, labelSize: 18, labelFont: AXIS.font, size: 40 }],
    series: [
      { label: opts.xlabel, value: (u, v) => fmtValue(v, 1) },
      { label: opts.ylabel, stroke: Chart.colors[0], paths: () => null, points: { show: true, size: 4, fill: Chart.colors[0] + "99", stroke: Chart.colors[0] }, value: (u, v) => fmtValue(v, 1) },
    ],
    hooks: drawHooks(st),
  }));
};
