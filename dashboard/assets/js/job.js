"use strict";
// One job: its figures over its whole run, its power over time and its allocations.
const id = KW.params.get("id") || "";
async function load() {
  KW.site();
  const r = await fetch("/api/v1/jobs/" + encodeURIComponent(id), { headers: KW.headers() });
  if (r.status === 404) { KW.set("job-id", id); KW.set("job-meta", "not known to the job ledger"); return; }
  if (!r.ok) throw new Error("job: HTTP " + r.status);
  const d = await r.json(), j = d.job;
  KW.set("job-id", j.job);
  KW.set("job-meta", `owner ${j.owner || "–"} · project ${j.project || "–"} · ${(j.gpus || []).length} GPUs · ${KW.time(j.start)} to ${j.end ? KW.time(j.end) : "running"}`);
  const rows = [["GPU energy", j.gpu_energy_kwh, "kWh"], ["node share (non-GPU)", j.it_energy_kwh - j.gpu_energy_kwh, "kWh"], ["IT energy", j.it_energy_kwh, "kWh"], ["facility overhead", j.facility_energy_kwh - j.it_energy_kwh, "kWh"], ["facility energy", j.facility_energy_kwh, "kWh"], ["water", j.water_l, "L"], ["CO2", j.co2_kg, "kg"]];
  KW.$("breakdown").innerHTML = rows.map(([n, v, u]) => `<tr><td>${n}</td><td>${KW.fmt(v, 3)}</td><td class="l">${u}</td></tr>`).join("");
  KW.set("job-note", `confidence ${j.confidence}${j.estimated ? ", estimated from power" : ""} · PUE over the run ${KW.fmt(d.pue, 3)} · carbon factor ${d.carbon_factor ? (d.carbon_factor.source || d.carbon_factor.kind) : "–"} · step ${d.step_s} s`);
  // Steps before the job's first reading carry no energy: nothing is drawn there, not 0 kW.
  const pts = (j.series || []).map((p) => [KW.instant(p.t), p.it_power_w]);
  const first = pts.findIndex(([, v]) => v > 0);
  Chart.time(KW.$("job-chart"), [{ name: "IT power", unit: "kW", points: first < 0 ? [] : pts.slice(first) }], { scale: 1000, unit: "kW", y0: true });
  KW.$("allocs").tBodies[0].innerHTML = (d.allocations || []).map((a) => `<tr><td><a href="${KW.link("/gpu", { node: a.node })}">${KW.esc(a.node)}</a></td><td class="l">${KW.esc((a.gpus || []).join(", "))}</td><td class="l">${KW.esc(fmtT(a.start))}</td><td class="l">${KW.esc(a.end == null ? "running" : fmtT(a.end))}</td><td class="l">${KW.esc(a.source || "")}</td></tr>`).join("");
}
const fmtT = (t) => KW.time(t);
KW.live(load, 30000);
