"use strict";
// Live tiles every 3 s; KPI periods, charts and alerts every 30 s or on a range change.
function render(o) {
  KW.set("site", o.site);
  const cat = o.pue_category ? " (Cat " + o.pue_category + ")" : "";
  KW.set("pue-title", "PUE" + cat + " · " + o.window);
  KW.set("pue", KW.fmt(o.pue, 3));
  KW.set("wue-title", "WUE · " + o.window);
  KW.set("wue", KW.fmt(o.wue_l_per_kwh, 3));
  KW.set("facility", KW.kw(o.facility_power_w));
  KW.set("it", KW.kw(o.it_power_w));
  KW.set("it-sub", o.pue_category ? "IT energy category " + o.pue_category : "no IT meter");
  KW.set("otemp", KW.fmt(o.outside_temp_c, 1));
  KW.set("orh", "RH " + KW.fmt(o.outside_rh_pct, 0) + " % · supply " + KW.fmt(o.supply_temp_c, 1) + " °C");
  KW.set("mode", "mode " + (o.cooling_mode || "–"));
  KW.set("faults", o.faults.length ? o.faults.join(" · ") : "none");
  KW.$("faults").className = o.faults.length ? "sub bad" : "sub";
  KW.set("data-time", "data at " + KW.time(o.data_time));
}
async function periods() {
  const rows = [["today", "period=day"], ["this month", "period=month"], ["year to date", "period=ytd"], ["rolling 12 months", "period=rolling12"]];
  const out = await Promise.all(rows.map(([, q]) => KW.get("/api/v1/kpi?" + q).catch(() => null)));
  const t = KW.$("pue-periods");
  t.innerHTML = "<tr><th class=l>window</th><th>PUE</th><th>WUE L/kWh</th><th>CO2 g/kWh</th></tr>" + rows.map(([name], i) => {
    const k = out[i];
    if (!k) return `<tr><td>${name}</td><td colspan=3>unavailable</td></tr>`;
    const g = k.facility_energy_kwh > 0 ? k.co2_location_kg / k.facility_energy_kwh * 1000 : null;
    // The metered share of the window when under 100 %: a year's figure from 40 days of
    // data says so, and is not called official (the API decides, see official_min_coverage_pct).
    const cov = k.data_quality ? k.data_quality.coverage_pct : null;
    const share = cov != null && cov < 100 ? ` <span class="pill partial" title="share of the window metered">${KW.fmt(cov, cov < 10 ? 1 : 0)} % metered</span>` : "";
    return `<tr title="${KW.esc(k.pue_label)}"><td>${name}${k.official ? " (official)" : ""}${share}</td><td>${KW.fmt(k.pue, 3)}${k.pue_category ? " <span class=pill>Cat " + k.pue_category + "</span>" : ""}</td><td>${KW.fmt(k.wue_l_per_kwh, 3)}</td><td>${KW.fmt(g, 0)}</td></tr>`;
  }).join("");
}
async function charts() {
  const [p, c] = await Promise.all([KW.get("/dashboard/power.json?range=" + KW.range), KW.get("/dashboard/climate.json?range=" + KW.range)]);
  // Facility on top of the stack would count IT twice: stack IT, cooling, losses, and the
  // remainder of facility power.
  const by = Object.fromEntries(p.map((s) => [s.name, s]));
  const stacked = ["IT", "cooling", "losses"].filter((n) => by[n]).map((n) => by[n]);
  if (by.facility) {
    const sum = new Map(); stacked.forEach((s) => s.points.forEach(([t, v]) => sum.set(t, (sum.get(t) || 0) + (v || 0))));
    stacked.push({ name: "other (facility − above)", unit: "W", points: by.facility.points.map(([t, v]) => [t, v == null ? null : Math.max(0, v - (sum.get(t) || 0))]) });
  }
  Chart.time(KW.$("power-chart"), stacked, { stack: true, scale: 1000, unit: "kW", digits: 1 });
  Chart.time(KW.$("climate-chart"), c.series, { modes: c.modes, digits: 1, height: 200 });
}
async function alerts() {
  const a = await KW.get("/api/v1/alerts?state=firing").catch(() => ({ alerts: [] }));
  const list = a.alerts || [];
  KW.$("alerts").innerHTML = list.length ? list.slice(0, 12).map((x) => `<div><span class="pill ${KW.esc((x.alert.labels.severity||""))}">${KW.esc((x.alert.labels.severity||""))}</span> ${KW.esc(x.alert.labels.alertname || x.alert.rule)} ${KW.esc(Object.entries(x.alert.labels || {}).filter(([k]) => !["site","alertname","severity"].includes(k)).map(([k, v]) => k + "=" + v).join(" "))}</div>`).join("") + (list.length > 12 ? `<div>… ${list.length - 12} more</div>` : "") : "none firing";
}
KW.onRange(() => charts().catch((e) => KW.status(e.message, true)));
async function tiles() { render(await KW.get("/dashboard/overview.json")); }
// Live tiles from the server's event stream; polling only where it cannot be opened.
KW.ready.then(() => {
if (window.EventSource) {
  const es = new EventSource("/dashboard/live" + (KW.token ? "?token=" + encodeURIComponent(KW.token) : ""));
  es.addEventListener("overview", (ev) => { render(JSON.parse(ev.data)); KW.status("live · " + KW.clock()); });
  es.addEventListener("error", (ev) => { if (ev.data) KW.status("live view failed: " + ev.data, true); else KW.status("live stream interrupted, reconnecting…", true); });
} else {
  KW.live(tiles, 3000);
}
});
KW.live(async () => { await Promise.all([periods(), charts(), alerts()]); }, 30000);
