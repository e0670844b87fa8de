"use strict";
// The fleet heatmap: one row per node, one cell per GPU, coloured by the chosen metric.
let metric = "power_w", cells = [];
const spec = { power_w: { lo: 0, hi: 700, unit: "W", hot: true }, temp_margin_c: { lo: 0, hi: 40, unit: "°C", hot: false }, util_pct: { lo: 0, hi: 100, unit: "%", hot: true } };
// Thermal slowdown (sw 0x20, hw 0x40), hardware slowdown 0x08 and power brake 0x80; a
// power cap (0x04) is normal under load and is not highlighted.
const THROTTLE = 0x08 | 0x20 | 0x40 | 0x80;
function color(v) {
  if (v == null) return "#30363d";
  const s = spec[metric]; let x = Math.max(0, Math.min(1, (v - s.lo) / (s.hi - s.lo))); if (!s.hot) x = 1 - x;
  const h = 220 - 220 * x; return `hsl(${h},70%,${30 + 20 * x}%)`;
}
function draw() {
  const nodes = [...new Set(cells.map((c) => c.node))].sort();
  const by = new Map(cells.map((c) => [c.node + ":" + c.gpu, c]));
  KW.$("heat").innerHTML = nodes.map((n) => `<div class="heat"><div class="n"><a href="${KW.link("/gpu", { node: n })}">${KW.esc(n)}</a></div>` + [0, 1, 2, 3, 4, 5, 6, 7].map((g) => {
    const c = by.get(n + ":" + g); const v = c ? c[metric] : null;
    const cls = c ? (c.stale ? " flt" : (c.throttle_reasons & THROTTLE ? " thr" : "")) : " flt";
    return `<div class="c${cls}" style="background:${color(c && !c.stale ? v : null)}" data-n="${KW.esc(n)}" data-g="${g}" title="${KW.esc(n)} GPU ${g}: ${KW.fmt(v, 0)} ${spec[metric].unit}${c && c.stale ? " (silent)" : ""}${c && (c.throttle_reasons & THROTTLE) ? " (throttled 0x" + c.throttle_reasons.toString(16) + ")" : ""}"></div>`;
  }).join("") + "</div>").join("");
  KW.set("legend", `${spec[metric].lo} → ${spec[metric].hi} ${spec[metric].unit}; orange outline: throttled; red outline: silent`);
}
KW.$("heat").onclick = (ev) => { const d = ev.target.closest(".c"); if (d) location.href = KW.link("/gpu", { node: d.dataset.n, gpu: d.dataset.g }); };
document.querySelectorAll("[data-metric]").forEach((b) => b.onclick = () => { metric = b.dataset.metric; document.querySelectorAll("[data-metric]").forEach((c) => c.classList.toggle("on", c === b)); draw(); });
KW.site();
KW.live(async () => {
  cells = await KW.get("/dashboard/gpus.json");
  const live = cells.filter((c) => !c.stale);
  KW.set("n", live.length + " / " + cells.length);
  KW.set("thr", cells.filter((c) => c.throttle_reasons & THROTTLE).length);
  KW.set("flt", cells.filter((c) => c.stale).length);
  KW.set("sum", KW.kw(live.reduce((a, c) => a + (c.power_w || 0), 0)));
  const per = {}; live.forEach((c) => per[c.node] = (per[c.node] || 0) + (c.power_w || 0));
  KW.$("top").innerHTML = Object.entries(per).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([n, w]) => `<div><a href="${KW.link("/gpu", { node: n })}">${KW.esc(n)}</a> ${KW.kw(w)} kW</div>`).join("");
  draw();
}, 5000);
