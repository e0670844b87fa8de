"use strict";
// The fleet heatmap on one canvas (10,000 GPUs draw in a few milliseconds; as many DOM cells
// took seconds): one row per node, one cell per GPU, coloured by the chosen metric on the
// viridis scale (ordered in lightness, readable with every common colour-vision deficiency).
// Search by node, GPU UUID or job lists the matching GPUs as links and outlines them.
let metric = "power_w", cells = [], jobsByGpu = null, jobsAt = 0, hits = new Set(), geometry = null;
const spec = { power_w: { lo: 0, hi: 700, unit: "W" }, temp_margin_c: { lo: 0, hi: 40, unit: "°C" }, util_pct: { lo: 0, hi: 100, unit: "%" } };
// Thermal slowdown (sw 0x20, hw 0x40), hardware slowdown 0x08 and power brake 0x80; a
// power cap (0x04) is normal under load and is not highlighted.
const THROTTLE = 0x08 | 0x20 | 0x40 | 0x80;
const VIRIDIS = ["#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
const SILENT = "#30363d", THR = "#E69F00", FLT = "#D55E00", HIT = "#ffffff";
const ROW = 14, LABEL = 66, GAP = 18, COL_MIN = 300;
function color(v) {
  if (v == null) return SILENT;
  const s = spec[metric], x = Math.max(0, Math.min(1, (v - s.lo) / (s.hi - s.lo)));
  return VIRIDIS[Math.round(x * (VIRIDIS.length - 1))];
}
const throttled = (c) => (c.throttle_reasons & THROTTLE) !== 0;
function legend() {
  const s = spec[metric], c = KW.$("scale"), ctx = c.getContext("2d");
  VIRIDIS.forEach((v, i) => { ctx.fillStyle = v; ctx.fillRect(i * c.width / VIRIDIS.length, 0, c.width / VIRIDIS.length + 1, c.height); });
  KW.set("legend-lo", s.lo + " " + s.unit);
  KW.set("legend-hi", s.hi + " " + s.unit + (metric === "temp_margin_c" ? " margin" : ""));
  c.setAttribute("aria-label", `colour scale from ${s.lo} ${s.unit} (dark purple) to ${s.hi} ${s.unit} (yellow)`);
}
function draw() {
  const t0 = performance.now();
  const canvas = KW.$("heat"), ctx = canvas.getContext("2d");
  const byNode = new Map();
  let width = 1;
  for (const c of cells) { if (!byNode.has(c.node)) byNode.set(c.node, []); byNode.get(c.node)[c.gpu] = c; width = Math.max(width, c.gpu + 1); }
  const nodes = [...byNode.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  const w = KW.$("heatbox").clientWidth, dpr = devicePixelRatio || 1;
  const cols = Math.max(1, Math.min(nodes.length, Math.floor((w + GAP) / (COL_MIN + GAP)))), colW = (w - GAP * (cols - 1)) / cols;
  const rows = Math.max(1, Math.ceil(nodes.length / cols)), cellW = (colW - LABEL) / width;
  canvas.style.width = w + "px"; canvas.style.height = rows * ROW + "px";
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(rows * ROW * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = "10px system-ui, sans-serif"; ctx.textBaseline = "middle";
  geometry = { nodes, byNode, rows, colW, cellW, width };
  nodes.forEach((n, i) => {
    const x0 = Math.floor(i / rows) * (colW + GAP), y = (i % rows) * ROW, gpus = byNode.get(n);
    ctx.fillStyle = "#8b98a5"; ctx.fillText(n, x0, y + ROW / 2, LABEL - 4);
    for (let g = 0; g < width; g++) {
      const c = gpus[g], x = x0 + LABEL + g * cellW;
      ctx.fillStyle = color(c && !c.stale ? c[metric] : null);
      ctx.fillRect(x, y, cellW - 1, ROW - 1);
      const edge = !c || c.stale ? FLT : throttled(c) ? THR : null;
      if (edge) { ctx.strokeStyle = edge; ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, cellW - 3, ROW - 3); }
      if (c && hits.has(n + ":" + g)) { ctx.strokeStyle = HIT; ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, cellW - 3, ROW - 3); }
    }
  });
  const ms = performance.now() - t0;
  KW.set("render", `${cells.length} GPUs on ${nodes.length} nodes, drawn in ${ms.toFixed(0)} ms`);
  // For the browser test: when the first full heatmap was on screen, from navigation start.
  if (cells.length && window.heatReadyMs == null) window.heatReadyMs = performance.now();
  window.heatDrawMs = ms;
}
// The GPU under a point of the canvas, or null.
function at(ev) {
  if (!geometry) return null;
  const r = KW.$("heat").getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
  const { nodes, byNode, rows, colW, cellW, width } = geometry;
  const col = Math.floor(x / (colW + GAP)), cx = x - col * (colW + GAP), row = Math.floor(y / ROW), i = col * rows + row;
  if (row < 0 || row >= rows || i >= nodes.length || cx < 0 || cx > colW) return null;
  const g = cx < LABEL ? null : Math.floor((cx - LABEL) / cellW);
  return { node: nodes[i], gpu: g, cell: g == null || g >= width ? null : byNode.get(nodes[i])[g] };
}
function describe(c) {
  return `${c.node} GPU ${c.gpu}${c.uuid ? " · " + c.uuid : ""}: ${KW.fmt(c[metric], 0)} ${spec[metric].unit}${c.stale ? " (silent)" : ""}${throttled(c) ? " (throttled 0x" + c.throttle_reasons.toString(16) + ")" : ""}`;
}
KW.$("heat").onmousemove = (ev) => {
  const h = at(ev), tip = KW.$("heat-tip");
  if (!h) { tip.hidden = true; return; }
  tip.textContent = h.cell ? describe(h.cell) : h.node;
  const c = KW.$("heat"); tip.hidden = false; tip.style.left = Math.min(c.offsetLeft + ev.offsetX + 14, c.offsetLeft + c.clientWidth - tip.offsetWidth) + "px"; tip.style.top = c.offsetTop + ev.offsetY + 14 + "px";
};
KW.$("heat").onmouseleave = () => { KW.$("heat-tip").hidden = true; };
KW.$("heat").onclick = (ev) => { const h = at(ev); if (h) location.href = KW.link("/gpu", h.gpu == null ? { node: h.node } : { node: h.node, gpu: h.gpu }); };
// Jobs that held each GPU in the last hour of data, fetched when a search needs them.
async function jobs() {
  if (jobsByGpu && Date.now() - jobsAt < 30000) return jobsByGpu;
  const o = await KW.site(), end = o && o.data_time ? new Date(o.data_time) : new Date();
  const j = await KW.get("/api/v1/jobs?from=" + encodeURIComponent(new Date(end - 3600e3).toISOString()) + "&to=" + encodeURIComponent(end.toISOString())).catch(() => ({ jobs: [] }));
  jobsByGpu = new Map();
  for (const x of j.jobs || []) for (const g of x.gpus || []) { if (!jobsByGpu.has(g)) jobsByGpu.set(g, []); jobsByGpu.get(g).push(x.job); }
  jobsAt = Date.now();
  return jobsByGpu;
}
// Matches by node and UUID show at once; job matches join when the job list has come (it is
// computed over every GPU of the site and can take seconds on a large one).
async function search() {
  show(jobsByGpu || new Map());
  if (KW.$("q").value.trim() && !(jobsByGpu && Date.now() - jobsAt < 30000)) {
    const q = KW.$("q").value;
    const byJob = await jobs();
    if (KW.$("q").value === q) show(byJob);
  }
}
function show(byJob) {
  const q = KW.$("q").value.trim().toLowerCase();
  hits = new Set();
  if (!q) { KW.$("results-card").hidden = true; KW.set("found", ""); draw(); return; }
  const found = cells.filter((c) => c.node.toLowerCase().includes(q) || (c.uuid || "").toLowerCase().includes(q) || (byJob.get(c.node + ":" + c.gpu) || []).some((j) => j.toLowerCase().includes(q)));
  found.forEach((c) => hits.add(c.node + ":" + c.gpu));
  KW.set("found", found.length + " GPUs match");
  KW.$("results-card").hidden = false;
  KW.$("results").innerHTML = found.slice(0, 64).map((c) => `<div><a href="${KW.link("/gpu", { node: c.node, gpu: c.gpu })}">${KW.esc(describe(c))}</a>${(byJob.get(c.node + ":" + c.gpu) || []).map((j) => ` · job <a href="${KW.link("/job", { id: j })}">${KW.esc(j)}</a>`).join("")}</div>`).join("") + (found.length > 64 ? `<div>… ${found.length - 64} more</div>` : "") || "none";
  draw();
}
let typing = null;
KW.$("q").oninput = () => { clearTimeout(typing); typing = setTimeout(() => search().catch((e) => KW.status(e.message, true)), 150); };
KW.$("q").value = KW.params.get("q") || "";
document.querySelectorAll("[data-metric]").forEach((b) => b.onclick = () => {
  metric = b.dataset.metric;
  document.querySelectorAll("[data-metric]").forEach((c) => { c.classList.toggle("on", c === b); c.setAttribute("aria-pressed", String(c === b)); });
  legend(); draw();
});
let drawnWidth = 0;
// Not once a scoped token's notice has replaced the page (the heatmap is gone).
new ResizeObserver(() => { if (KW.denied) return; const w = KW.$("heatbox").clientWidth; if (cells.length && w !== drawnWidth) { drawnWidth = w; draw(); } }).observe(KW.$("heatbox"));
legend();
// The first read starts with the page, beside the site's (the heatmap shows no times).
let first = KW.get("/dashboard/gpus.json");
first.catch(() => {}); // reported by the tick that awaits it
KW.live(async () => {
  const next = first || KW.get("/dashboard/gpus.json"); first = null;
  cells = await next;
  const live = cells.filter((c) => !c.stale);
  KW.set("n", live.length + " / " + cells.length);
  KW.set("thr", cells.filter(throttled).length);
  KW.set("flt", cells.filter((c) => c.stale).length);
  KW.set("sum", KW.kw(live.reduce((a, c) => a + (c.power_w || 0), 0)));
  const per = {}; live.forEach((c) => per[c.node] = (per[c.node] || 0) + (c.power_w || 0));
  KW.$("top").innerHTML = Object.entries(per).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([n, w]) => `<div><a href="${KW.link("/gpu", { node: n })}">${KW.esc(n)}</a> ${KW.kw(w)} kW</div>`).join("");
  if (KW.$("q").value.trim()) search().catch((e) => KW.status(e.message, true)); else draw();
}, 5000);
