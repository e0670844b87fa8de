"use strict";
// Per-unit supply air against the ASHRAE TC 9.9 (2021) envelope, modes, and water vs wet bulb.
const inRec = (u) => u.supply_temp_c != null && u.supply_temp_c >= 18 && u.supply_temp_c <= 27 && u.dew_point_c >= -9 && u.dew_point_c <= 15 && u.supply_rh_pct <= 70;
async function load() {
  KW.site();
  const [units, water] = await Promise.all([KW.get("/dashboard/cooling.json?range=" + KW.range), KW.get("/dashboard/water.json?range=" + KW.range)]);
  KW.$("units").tBodies[0].innerHTML = units.map((u) => `<tr><td>${KW.esc(u.unit)}</td><td>${KW.fmt(u.supply_temp_c)}</td><td>${KW.fmt(u.supply_rh_pct, 0)}</td><td>${KW.fmt(u.dew_point_c)}</td><td class="l">${KW.esc(u.mode || "–")}</td><td class="l ${inRec(u) ? "ok" : "warn"}">${u.supply_temp_c == null ? "–" : inRec(u) ? "inside" : "outside"}</td></tr>`).join("") || "<tr><td colspan=6>no cooling units reporting</td></tr>";
  Chart.scatter(KW.$("envelope"), units.flatMap((u) => u.envelope), {
    x: [10, 36], y: [-15, 25], xlabel: "dry bulb °C", ylabel: "dew point °C",
    boxes: [{ x: [15, 32], y: [-12, 17], fill: "#E69F0022", stroke: "#E69F00" }, { x: [18, 27], y: [-9, 15], fill: "#009E7322", stroke: "#009E73" }],
  });
  const pick = (n) => units.flatMap((u) => u.series.filter((s) => s.name === n).map((s) => ({ ...s, name: u.unit + " " + n })));
  Chart.time(KW.$("supply"), pick("supply temperature"), { unit: "°C", hlines: [{ y: 27, color: Chart.warn }, { y: 18, color: Chart.warn }] });
  Chart.time(KW.$("rh"), pick("supply RH").concat(pick("dew point")), { hlines: [{ y: 70, color: Chart.warn }, { y: 15, color: Chart.warn }] });
  const first = units[0];
  Chart.time(KW.$("modes"), first ? first.series.filter((s) => s.name === "supply temperature").map((s) => ({ ...s, name: first.unit + " supply °C" })) : [], { modes: first ? first.modes : [], unit: "°C", height: 160 });
  // Water as bars on the left axis (L), wet bulb as a line on the right one (°C).
  for (const [id, s] of [["water-h", water.hourly], ["water-d", water.daily]]) {
    Chart.time(KW.$(id), s.filter((x) => x.unit === "L").concat(s.filter((x) => x.unit !== "L")), { bars: true, digits: 1, unit: "L", right: { unit: "°C", digits: 1, colors: [Chart.warn] } });
  }
}
KW.onRange(() => load().catch((e) => KW.status(e.message, true)));
KW.live(load, 30000);
