// A small SVG chart renderer: lines, stacked areas, bars, mode bands, a scatter with boxes,
// and hover values. Series are {name, unit, points: [[t_ms, v|null], ...]}.
"use strict";
const Chart = {};
Chart.colors = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#a5d6ff"];
Chart.modeColors = { free: "#3fb95033", mix: "#58a6ff33", evaporative: "#d2992244", humidify: "#bc8cff33", recirculation: "#39c5cf33" };
const NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent) { const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = []; for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}
function timeLabel(t, span, dates) { const d = new Date(t); return dates || span > 3 * 86400e3 ? d.toLocaleDateString([], { month: "short", day: "numeric" }) : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
Chart.tip = (text, ev) => { const t = document.getElementById("tip"); if (!text) { t.style.display = "none"; return; } t.textContent = text; t.style.display = "block"; t.style.left = Math.min(ev.clientX + 14, innerWidth - t.offsetWidth - 8) + "px"; t.style.top = (ev.clientY + 14) + "px"; };

// opts: {stack, bars, unit, scale (divide values), digits, modes: [{from_ms,to_ms,mode}], hlines: [{y, color, label}], y0}
Chart.time = (host, series, opts = {}) => {
  host.innerHTML = "";
  const W = host.clientWidth || 600, H = opts.height || (innerWidth >= 2200 ? 360 : 240);
  const m = { l: 52, r: 10, t: 8, b: 22 };
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", style: `height:${H}px` }, host);
  const scale = opts.scale || 1, digits = opts.digits ?? 1;
  const ts = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  if (!ts.length) { el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no data in this window"; return; }
  const idx = new Map(ts.map((t, i) => [t, i]));
  const vals = series.map((s) => { const a = new Array(ts.length).fill(null); s.points.forEach(([t, v]) => { a[idx.get(t)] = v == null ? null : v / scale; }); return a; });
  const tops = vals.map((a) => a.slice());
  if (opts.stack) for (let i = 1; i < tops.length; i++) tops[i] = tops[i].map((v, j) => (v == null ? null : v + (tops[i - 1][j] || 0)));
  const all = tops.flat().filter((v) => v != null).concat((opts.hlines || []).map((h) => h.y));
  let lo = Math.min(...all), hi = Math.max(...all);
  if (opts.stack || opts.bars || opts.y0) lo = Math.min(0, lo);
  if (hi === lo) { hi += 1; lo -= (opts.y0 || opts.bars || opts.stack) ? 0 : 1; }
  const pad = (hi - lo) * 0.05; hi += pad; if (!(opts.stack || opts.bars || opts.y0)) lo -= pad;
  const t0 = ts[0], t1 = opts.bars ? ts[ts.length - 1] + (ts[1] - ts[0] || 1) : ts[ts.length - 1];
  const X = (t) => m.l + (W - m.l - m.r) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5);
  const Y = (v) => H - m.b - (H - m.t - m.b) * (v - lo) / (hi - lo);
  (opts.modes || []).forEach((s) => { const x0 = Math.max(X(s.from_ms), m.l), x1 = Math.min(X(s.to_ms), W - m.r); if (x1 > x0) el("rect", { x: x0, y: m.t, width: x1 - x0, height: H - m.t - m.b, fill: Chart.modeColors[s.mode] || "#ffffff14" }, svg); });
  niceTicks(lo, hi, 4).forEach((v) => { el("line", { x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), stroke: "#2d3640" }, svg); el("text", { x: m.l - 4, y: Y(v) + 4, "text-anchor": "end" }, svg).textContent = KW.fmt(v, Math.abs(hi - lo) < 5 ? 1 : 0); });
  for (let k = 0; k <= 5; k++) { const t = t0 + (t1 - t0) * k / 5; el("text", { x: X(t), y: H - 6, "text-anchor": k === 0 ? "start" : k === 5 ? "end" : "middle" }, svg).textContent = timeLabel(t, t1 - t0, opts.dates); }
  (opts.hlines || []).forEach((h) => el("line", { x1: m.l, x2: W - m.r, y1: Y(h.y), y2: Y(h.y), stroke: h.color || "#f85149", "stroke-dasharray": "4 3" }, svg));
  const color = (i) => (opts.colors && opts.colors[i]) || Chart.colors[i % Chart.colors.length];
  tops.forEach((a, i) => {
    const c = color(i);
    if (opts.bars) {
      const bw = Math.max(1, (X(ts[1] || ts[0] + 1) - X(ts[0])) * 0.8 / series.length);
      a.forEach((v, j) => { if (v != null) el("rect", { x: X(ts[j]) + i * bw, y: Y(Math.max(v, 0)), width: bw, height: Math.abs(Y(0) - Y(v)), fill: c }, svg); });
      return;
    }
    // Empty buckets between readings (a 15-min backfill under 5-min buckets) are bridged;
    // a gap over four times the usual spacing is a real outage and breaks the line.
    let d = "", last = null;
    const present = []; a.forEach((v, j) => { if (v != null) present.push(ts[j]); });
    const gaps = present.slice(1).map((t, k) => t - present[k]).sort((x, y) => x - y);
    const maxGap = 4 * (gaps[Math.floor(gaps.length / 2)] || Infinity);
    a.forEach((v, j) => { if (v == null) return; d += (last != null && ts[j] - last <= maxGap ? "L" : "M") + X(ts[j]).toFixed(1) + "," + Y(v).toFixed(1); last = ts[j]; });
    if (opts.stack) {
      const below = i ? tops[i - 1] : null;
      let area = "";
      const seg = []; a.forEach((v, j) => { if (v != null) seg.push(j); });
      if (seg.length) {
        area = seg.map((j, k) => (k ? "L" : "M") + X(ts[j]).toFixed(1) + "," + Y(a[j]).toFixed(1)).join("");
        area += seg.slice().reverse().map((j) => "L" + X(ts[j]).toFixed(1) + "," + Y(below ? (below[j] || 0) : 0).toFixed(1)).join("") + "Z";
        el("path", { d: area, fill: c + "55", stroke: "none" }, svg);
      }
    }
    el("path", { d, fill: "none", stroke: c, "stroke-width": 1.6 }, svg);
  });
  const cursor = el("line", { y1: m.t, y2: H - m.b, stroke: "#8b98a5", visibility: "hidden" }, svg);
  svg.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect(), x = (ev.clientX - r.left) * W / r.width;
    const t = t0 + (x - m.l) / (W - m.l - m.r) * (t1 - t0);
    let j = -1; for (let k = 0; k < ts.length; k++) if (vals.some((a) => a[k] != null) && (j < 0 || Math.abs(ts[k] - t) < Math.abs(ts[j] - t))) j = k;
    if (j < 0) return;
    cursor.setAttribute("x1", X(ts[j])); cursor.setAttribute("x2", X(ts[j])); cursor.setAttribute("visibility", "visible");
    const mode = (opts.modes || []).find((s) => s.from_ms <= ts[j] && ts[j] < s.to_ms);
    Chart.tip(new Date(ts[j]).toLocaleString() + (mode ? "\nmode: " + mode.mode : "") + "\n" + series.map((s, i) => s.name + ": " + KW.fmt(vals[i][j], digits) + " " + (opts.unit || s.unit)).join("\n"), ev);
  });
  svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); Chart.tip(null); });
  if (opts.legend !== false) {
    const lg = document.createElement("div"); lg.className = "legend";
    lg.innerHTML = series.map((s, i) => `<span><i style="background:${color(i)}"></i>${KW.esc(s.name)}</span>`).join("") + Object.entries(opts.modes && opts.modes.length ? Chart.modeColors : {}).filter(([k]) => opts.modes.some((s) => s.mode === k)).map(([k, c]) => `<span><i style="background:${c.slice(0, 7)}"></i>${k} mode</span>`).join("");
    host.appendChild(lg);
  }
};

// A scatter of [x, y] points with rectangles drawn under it (the ASHRAE envelope).
Chart.scatter = (host, points, opts) => {
  host.innerHTML = "";
  const W = host.clientWidth || 400, H = opts.height || 240, m = { l: 40, r: 10, t: 8, b: 26 };
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", style: `height:${H}px` }, host);
  const [x0, x1] = opts.x, [y0, y1] = opts.y;
  const X = (v) => m.l + (W - m.l - m.r) * (v - x0) / (x1 - x0), Y = (v) => H - m.b - (H - m.t - m.b) * (v - y0) / (y1 - y0);
  (opts.boxes || []).forEach((b) => el("rect", { x: X(b.x[0]), y: Y(b.y[1]), width: X(b.x[1]) - X(b.x[0]), height: Y(b.y[0]) - Y(b.y[1]), fill: b.fill, stroke: b.stroke }, svg));
  niceTicks(x0, x1, 6).forEach((v) => { el("text", { x: X(v), y: H - 8, "text-anchor": "middle" }, svg).textContent = v; });
  niceTicks(y0, y1, 4).forEach((v) => { el("text", { x: m.l - 4, y: Y(v) + 4, "text-anchor": "end" }, svg).textContent = v; });
  el("text", { x: W - m.r, y: H - m.b - 4, "text-anchor": "end" }, svg).textContent = opts.xlabel;
  el("text", { x: m.l + 4, y: m.t + 10 }, svg).textContent = opts.ylabel;
  points.forEach(([x, y], i) => {
    const c = el("circle", { cx: X(x), cy: Y(y), r: i === points.length - 1 ? 4 : 2, fill: i === points.length - 1 ? "#f0f6fc" : "#58a6ff99" }, svg);
    c.addEventListener("mousemove", (ev) => Chart.tip(opts.xlabel + ": " + KW.fmt(x, 1) + "\n" + opts.ylabel + ": " + KW.fmt(y, 1), ev));
    c.addEventListener("mouseleave", () => Chart.tip(null));
  });
};
