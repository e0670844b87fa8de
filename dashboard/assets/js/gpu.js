"use strict";
// A node (power of its 8 GPUs) or one GPU (power, margin, utilization), and the jobs it ran.
const node = KW.params.get("node") || "", gpu = KW.params.get("gpu");
if (!KW.params.get("range")) KW.range = "6h";
KW.$("back").href = KW.link("/gpus");
KW.$("gpu-links").innerHTML = `<a href="${KW.link("/gpu", { node })}">all</a> ` + [0, 1, 2, 3, 4, 5, 6, 7].map((g) => `<a href="${KW.link("/gpu", { node, gpu: g })}">${g}</a>`).join(" ");
KW.set("title", node + (gpu != null ? " GPU " + gpu : " (all GPUs)"));
const spans = { "1h": 3600e3, "6h": 21600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
async function load() {
  const o = await KW.site();
  const d = await KW.get("/dashboard/gpus/" + encodeURIComponent(node) + (gpu != null ? "/" + gpu : "") + "?range=" + KW.range);
  const pick = (n) => d.series.filter((s) => s.name.startsWith(n));
  if (gpu == null) {
    Chart.time(KW.$("chart1"), d.series, { unit: "W", digits: 0 });
    KW.$("card2").style.display = KW.$("card3").style.display = "none";
  } else {
    Chart.time(KW.$("chart1"), pick("power"), { unit: "W", digits: 0, y0: true });
    Chart.time(KW.$("chart2"), pick("temperature margin"), { unit: "°C", hlines: [{ y: 5, color: Chart.warn }, { y: 0 }] });
    Chart.time(KW.$("chart3"), pick("utilization"), { unit: "%", digits: 0, y0: true });
  }
  const end = o && o.data_time ? new Date(o.data_time) : new Date();
  const j = await KW.get("/api/v1/jobs?from=" + encodeURIComponent(new Date(end - spans[KW.range]).toISOString()) + "&to=" + encodeURIComponent(end.toISOString()));
  const mine = j.jobs.filter((x) => (x.gpus || []).some((g) => gpu != null ? g === node + ":" + gpu : g.startsWith(node + ":")));
  KW.$("jobs").tBodies[0].innerHTML = mine.map((x) => `<tr><td><a href="${KW.link("/job", { id: x.job })}">${KW.esc(x.job)}</a></td><td class="l">${KW.esc(x.owner)}</td><td class="l">${KW.esc(x.gpus.filter((g) => g.startsWith(node + ":")).join(", "))}</td><td class="l">${KW.esc(KW.time(x.start))}</td><td class="l">${KW.esc(x.end ? KW.time(x.end) : "running")}</td><td>${KW.fmt(x.it_energy_kwh, 2)}</td></tr>`).join("") || "<tr><td colspan=6>none</td></tr>";
}
KW.onRange(() => load().catch((e) => KW.status(e.message, true)));
KW.live(load, 15000);
