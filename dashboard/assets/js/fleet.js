"use strict";
// The fleet: every site as a card (PUE, WUE, E_IT, water, age; stale when it does not answer,
// with its last figures kept), their energy-weighted sum, owners across sites, and each site's
// EU filing side by side. A card opens the site's own dashboard.
const period = () => (["day", "month", "ytd"].includes(KW.range) ? KW.range : "month");
const ago = (s) => (s == null ? "never" : s < 90 ? Math.round(s) + " s ago" : KW.dur(s) + " ago");
const pueText = (k) => (k.pue == null ? "–" : KW.fmt(k.pue, 3));
const pueLabel = (k) => (k.mixed_categories ? "PUE · mixed categories (" + k.pue_categories.map((c) => "Cat " + c).join(", ") + ")" : "PUE" + (k.pue_category ? " · Cat " + k.pue_category : ""));
function card(s) {
  const cls = s.stale ? "card w4 site-card stale" : "card w4 site-card";
  const badge = s.stale ? `<span class="pill critical">stale · ${KW.esc(ago(s.age_s))}</span>` : `<span class="pill">updated ${KW.esc(ago(s.age_s))}</span>`;
  const why = s.stale && s.last_error ? `<div class="sub bad" title="${KW.esc(s.last_error)}">not answering: ${KW.esc(s.last_error.split(": ").pop().slice(0, 60))}</div>` : "";
  return `<a class="${cls}" href="${KW.esc(s.dashboard_url)}" data-site="${KW.esc(s.name)}">
  <h2>${KW.esc(s.name)} <span class="zone-tag">${KW.esc(s.timezone)}</span> ${badge}</h2>
  <div class="fleet-row">
    <div><span class="value">${pueText(s)}</span><div class="sub">${KW.esc(pueLabel(s))}</div></div>
    <div><span class="value">${KW.fmt(s.wue_l_per_kwh, 2)}</span><span class="unit">L/kWh</span><div class="sub">WUE</div></div>
  </div>
  <div class="fleet-row small">
    <div>${KW.fmt(s.it_energy_kwh / 1000, 2)} <span class="unit">MWh E_IT</span></div>
    <div>${s.water_m3 == null ? "not metered" : KW.fmt(s.water_m3, 1)} <span class="unit">m³ water</span></div>
    <div>${KW.fmt(s.coverage_pct, 0)} <span class="unit">% of hours metered</span></div>
  </div>${why}${s.stale ? `<div class="sub warn">last known figures, not counted as zero</div>` : ""}</a>`;
}
async function load() {
  let k;
  try { k = await KW.get("/api/v1/fleet/kpi?period=" + period()); }
  catch (e) {
    if (!/HTTP 404$/.test(e.message)) throw e;
    KW.$("main").innerHTML = `<div class="card w12"><h2>No fleet here</h2><div class="sub">This aggregator has no [fleet] section: it shows its own site on the <a href="${KW.link("/")}">Overview</a>. See docs/fleet.md.</div></div>`;
    return;
  }
  KW.set("site", "fleet of " + k.sites.length);
  KW.siteZone = k.timezone;
  KW.set("window", k.window);
  const f = k.fleet;
  KW.set("f-pue", pueText(f)); KW.set("f-pue-label", pueLabel(f) + ", energy-weighted");
  KW.set("f-wue", KW.fmt(f.wue_l_per_kwh, 2)); KW.set("f-it", KW.fmt(f.it_energy_kwh / 1000, 2));
  KW.set("f-dc", KW.fmt(f.facility_energy_kwh / 1000, 2)); KW.set("f-water", f.water_m3 == null ? "–" : KW.fmt(f.water_m3, 1));
  const note = KW.$("f-note");
  note.textContent = f.stale_sites.length ? "stale: " + f.stale_sites.join(", ") + " (their last known hours are included)" : f.complete ? "every site up to date" : "every site up to date; readings cover " + KW.fmt(f.coverage_pct, 0) + " % of the window's hours so far";
  note.className = "sub" + (f.stale_sites.length ? " bad" : "");
  KW.$("sites").innerHTML = k.sites.map(card).join("");
  const h = await KW.get("/api/v1/fleet/hours?period=" + period());
  Chart.time(KW.$("it-chart"), h.it_kwh, { stack: true, unit: "kWh", digits: 1, height: 200 });
  Chart.time(KW.$("pue-chart"), h.pue, { digits: 3, height: 200 });
  const j = await KW.get("/api/v1/fleet/jobs?period=" + period());
  const owners = Object.entries(j.by_owner || {}).sort((a, b) => b[1].it_energy_kwh - a[1].it_energy_kwh).slice(0, 15);
  KW.$("owners").tBodies[0].innerHTML = owners.map(([o, r]) => `<tr><td>${KW.esc(o)}</td><td>${r.jobs}</td><td>${KW.fmt(r.it_energy_kwh)}</td><td>${KW.fmt(r.facility_energy_kwh)}</td><td>${KW.fmt(r.water_l)}</td><td>${KW.fmt(r.co2_kg, 2)}</td></tr>`).join("") || "<tr><td colspan=6>no jobs in this window</td></tr>";
  KW.set("jobs-note", j.jobs.length + " jobs; idle " + KW.fmt(j.idle_kwh, 0) + " kWh, unattributed " + KW.fmt(j.unattributed_kwh, 0) + " kWh of " + KW.fmt(j.it_energy_kwh, 0) + " kWh E_IT");
}
// EU filings change once a day at most: read them once per page load, not on every refresh.
async function loadEu() {
  const year = new Date().getFullYear();
  const eu = await KW.get("/api/v1/fleet/eu-indicators?year=" + year);
  const first = eu.sites.find((s) => s.filing && s.filing.annex_ii);
  const t = KW.$("eu");
  t.tHead.innerHTML = `<tr><th class="l">${year} · Annex II</th>${eu.sites.map((s) => `<th>${KW.esc(s.name)}</th>`).join("")}</tr>`;
  if (!first) { t.tBodies[0].innerHTML = `<tr><td colspan=${eu.sites.length + 1}>no site answered</td></tr>`; return; }
  const cell = (s, key) => {
    if (!s.filing) return `<td class="bad" title="${KW.esc(s.error || "")}">not answering</td>`;
    const i = (s.filing.annex_ii || []).find((x) => x.key === key);
    if (!i || i.value == null) return `<td class="sub">${KW.esc(i ? i.status : "–")}</td>`;
    return `<td>${typeof i.value === "number" ? KW.fmt(i.value, 1) : KW.esc(JSON.stringify(i.value))}</td>`;
  };
  t.tBodies[0].innerHTML = first.filing.annex_ii.map((i) => `<tr><td class="l">${KW.esc(i.name)} <span class="unit">${KW.esc(i.unit)}</span></td>${eu.sites.map((s) => cell(s, i.key)).join("")}</tr>`).join("");
}
KW.onRange(() => load().catch((e) => KW.status(e.message, true)));
KW.ready.then(() => loadEu().catch((e) => KW.set("eu", e.message)));
KW.live(load, 15000);
