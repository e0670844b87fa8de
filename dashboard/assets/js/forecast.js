"use strict";
// The forecast (GET /api/v1/forecast) as a table, and the advice for a job (GET /api/v1/advice).
// Times in the site's zone (or the browser's, as chosen in the header), 24-hour.
const hhmm = (t) => KW.time(t, true);
async function advice() {
  const q = new URLSearchParams({ gpus: KW.$("adv-gpus").value || "64", hours: KW.$("adv-hours").value || "6", within: "48h", weight: KW.$("adv-weight").value });
  const a = await KW.get("/api/v1/advice?" + q);
  const rows = a.refused ? [] : [["now", a.now], ...a.best.map((o, i) => [o.in_h === 0 ? "best " + (i + 1) + " (now)" : "best " + (i + 1) + " (in " + o.in_h + " h)", o])];
  KW.$("advice").tBodies[0].innerHTML = rows.map(([k, o]) => `<tr><td class="l">${k}</td><td class="l">${KW.esc(hhmm(o.start))}</td><td>${KW.fmt(o.expected.facility_kwh, 0)}</td><td>${KW.fmt(o.expected.water_l, 0)}</td><td>${KW.fmt(o.expected.co2_kg, 1)}</td><td>${k === "now" ? "" : KW.fmt(o.saves.facility_kwh, 0) + " / " + KW.fmt(o.saves.water_l, 0) + " / " + KW.fmt(o.saves.co2_kg, 1)}</td><td class="l"><code>${k === "now" ? "" : KW.esc(o.sbatch)}</code></td></tr>`).join("") || "<tr><td colspan=7>no advice</td></tr>";
  KW.set("adv-note", a.refused ? a.refused : `${a.gpus} GPUs × ${a.hours} h = ${KW.fmt(a.it_kwh, 0)} kWh of IT energy, whenever it runs; the starts differ in overhead, water and grid carbon.`);
  KW.$("adv-note").className = a.refused ? "sub bad" : "sub";
}
async function load() {
  const f = await KW.get("/api/v1/forecast");
  const m = f.model || {};
  const fit = m.state === "ready" ? `model fitted on ${m.report.hours} h, held-back daily error PUE ${KW.fmt(m.report.pue.mae_daily, 3)}${m.report.wue ? ", WUE " + KW.fmt(m.report.wue.mae_daily, 3) + " L/kWh" : ""}` : `too little history (${m.hours} of ${m.needed} h)`;
  KW.set("fc-note", `${fit}; weather ${f.weather_provider || "none"} ${hhmm(f.weather_issued)}, grid ${f.carbon_provider || "configured factor"} ${hhmm(f.carbon_issued)}` + (f.stale ? " — stale: " + f.stale.reasons.join("; ") : ""));
  KW.$("fc-note").className = f.stale ? "sub bad" : "sub";
  KW.$("forecast").tBodies[0].innerHTML = f.hours.map((h) => `<tr><td class="l">${KW.esc(hhmm(h.t))}</td><td>${KW.fmt(h.dry_bulb_c, 1)}</td><td>${KW.fmt(h.wet_bulb_c, 1)}</td><td>${KW.fmt(h.pue.value, 3)}</td><td>${KW.fmt(h.pue.low, 3)}–${KW.fmt(h.pue.high, 3)}</td><td>${h.wue_l_per_kwh ? KW.fmt(h.wue_l_per_kwh.value, 2) : "–"}</td><td>${KW.fmt(h.grid_g_per_kwh, 0)}</td><td>${KW.fmt(h.co2_g_per_it_kwh.value, 0)}</td></tr>`).join("") || "<tr><td colspan=8>no forecast</td></tr>";
  await advice();
}
KW.$("adv-form").onsubmit = (ev) => { ev.preventDefault(); advice().catch((e) => KW.set("adv-note", e.message)); };
KW.live(load, 60000);
