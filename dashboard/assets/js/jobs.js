"use strict";
// The job table over a window: searchable and sortable in the page, refreshed every 30 s.
let data = null, sortKey = "it_energy_kwh", sortDir = -1;
const spans = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
async function load() {
  const o = await KW.site();
  const end = o && o.data_time ? new Date(o.data_time) : new Date();
  const from = new Date(end - spans[KW.range]);
  data = await KW.get("/api/v1/jobs?from=" + encodeURIComponent(from.toISOString()) + "&to=" + encodeURIComponent(end.toISOString()));
  data.jobs.forEach((j) => { j.n_gpus = (j.gpus || []).length; j.dur = j.start ? ((j.end ? new Date(j.end) : end) - new Date(j.start)) / 1000 : null; });
  KW.set("jobs-kwh", KW.fmt(data.jobs_it_energy_kwh, 1));
  KW.set("idle-kwh", KW.fmt(data.idle_kwh, 1));
  KW.set("unattr-kwh", KW.fmt(data.unattributed_kwh, 1));
  KW.set("it-kwh", KW.fmt(data.it_energy_kwh, 1));
  KW.set("window", data.window + " · " + KW.time(data.from, true) + " to " + KW.time(data.to, true) + " (" + KW.zone() + ")" + (data.scope ? " · your jobs only (" + data.scope.owners.join(", ") + ")" : ""));
  // A scoped token sees its own jobs and the site's E_IT, not the site's idle and unattributed energy.
  ["idle-kwh", "unattr-kwh"].forEach((id) => { KW.$(id).closest(".card").style.display = data.scope ? "none" : ""; });
  KW.set("pue-note", "facility energy, water and CO2 follow each hour's PUE, WUE and carbon factor; window PUE " + KW.fmt(data.pue, 3));
  const owners = Object.entries(data.by_owner || {}).sort((a, b) => b[1].it_energy_kwh - a[1].it_energy_kwh);
  KW.$("owners").tBodies[0].innerHTML = owners.map(([o, r]) => `<tr><td>${KW.esc(o)}</td><td>${r.jobs}</td><td>${KW.fmt(r.it_energy_kwh)}</td><td>${KW.fmt(r.facility_energy_kwh)}</td><td>${KW.fmt(r.water_l)}</td><td>${KW.fmt(r.co2_kg, 2)}</td></tr>`).join("");
  draw();
}
function draw() {
  if (!data) return;
  const q = KW.$("q").value.trim().toLowerCase();
  const rows = data.jobs.filter((j) => !q || (j.job + " " + (j.owner || "") + " " + (j.project || "")).toLowerCase().includes(q));
  rows.sort((a, b) => { const x = a[sortKey], y = b[sortKey]; return (typeof x === "string" ? String(x).localeCompare(y) : (x ?? -1) - (y ?? -1)) * sortDir; });
  KW.set("count", rows.length + " of " + data.jobs.length + " jobs");
  KW.$("jobs").tBodies[0].innerHTML = rows.slice(0, 500).map((j) => `<tr><td><a href="${KW.link("/job", { id: j.job })}">${KW.esc(j.job)}</a></td><td class="l">${KW.esc(j.owner)}</td><td>${j.n_gpus}</td><td>${KW.dur(j.dur)}</td><td>${KW.fmt(j.gpu_energy_kwh, 2)}</td><td>${KW.fmt(j.it_energy_kwh, 2)}</td><td>${KW.fmt(j.facility_energy_kwh, 2)}</td><td>${KW.fmt(j.water_l, 1)}</td><td>${KW.fmt(j.co2_kg, 3)}</td><td class="${j.confidence === "low" ? "warn" : ""}">${KW.esc(j.confidence)}${j.estimated ? " (estimated)" : ""}</td></tr>`).join("");
}
// Column headings sort (click, or Enter / Space from the keyboard), and say how.
document.querySelectorAll("#jobs th").forEach((th) => {
  th.tabIndex = 0;
  th.onclick = () => {
    const k = th.dataset.k; sortDir = k === sortKey ? -sortDir : -1; sortKey = k;
    document.querySelectorAll("#jobs th").forEach((h) => h.setAttribute("aria-sort", h === th ? (sortDir < 0 ? "descending" : "ascending") : "none"));
    draw();
  };
  th.onkeydown = (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); th.click(); } };
});
KW.$("q").value = KW.params.get("q") || "";
KW.$("q").oninput = draw;
KW.onRange(() => load().catch((e) => KW.status(e.message, true)));
KW.live(load, 30000);
