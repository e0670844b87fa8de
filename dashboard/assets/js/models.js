"use strict";
// Energy, water and CO2 per token (GET /api/v1/models over the chosen window): per model and
// tenant, per hour, and per training step.
const HOUR = 3600e3;
const RANGES = { "24h": 24, "7d": 168, "30d": 720 };
let last = null;
const key = (m) => m.model + (m.tenant ? " · " + m.tenant : "");
function scatter() {
  const m = last && last.models.find((x) => key(x) === KW.$("pick").value);
  const pts = m ? m.hours.filter((h) => h.generation_tokens > 0).map((h) => [h.it_power_w / 1000, h.tokens_per_s]) : [];
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  Chart.scatter(KW.$("scatter"), pts, { x: [0, Math.max(1, ...xs) * 1.1], y: [0, Math.max(1, ...ys) * 1.1], xlabel: "IT kW", ylabel: "tokens/s" });
}
async function load() {
  // Whole hours ending at the last complete one: the ledger's own steps.
  const to = Math.floor(Date.now() / HOUR) * HOUR, from = to - (RANGES[KW.range] || 24) * HOUR;
  const q = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString() });
  const v = await KW.get("/api/v1/models?" + q);
  last = v;
  KW.set("window", `${KW.time(from)} – ${KW.time(to)}`);
  const sum = (f) => v.models.reduce((a, m) => a + f(m), 0);
  // Without a valid PUE the facility energy is unknown (null), never a 0 to add up.
  const gen = sum((m) => m.generation_tokens), fac = v.facility_unavailable ? null : sum((m) => m.energy_kwh.facility);
  KW.set("gen", KW.fmt(gen / 1e6, 0));
  KW.set("prompt", KW.fmt(sum((m) => m.prompt_tokens) / 1e6, 0) + " million prompt tokens, " + KW.fmt(sum((m) => m.requests), 0) + " requests");
  KW.set("serving-kwh", fac == null ? "–" : KW.fmt(fac, 0));
  KW.set("serving-share", v.it_energy_kwh ? KW.fmt(100 * v.serving_it_energy_kwh / v.it_energy_kwh, 1) + " % of the site's IT energy" : "");
  KW.set("fleet-j", gen && fac != null ? KW.fmt(fac * 3.6e6 / gen, 2) : "–");
  KW.set("train-steps", KW.fmt(v.training.reduce((a, t) => a + t.steps, 0), 0));
  KW.set("train-sub", v.training.length + " jobs, " + KW.fmt(v.training.reduce((a, t) => a + t.tokens, 0) / 1e9, 1) + " billion tokens");
  const conf = (m) => `<td class="l ${m.confidence === "high" ? "ok" : "warn"}" title="${KW.esc((m.low_confidence_reasons || []).join("; "))}">${KW.esc(m.confidence)}</td>`;
  KW.$("models").tBodies[0].innerHTML = v.models.map((m) => {
    const p = m.per_token;
    return `<tr><td class="l">${KW.esc(m.model)}</td><td class="l">${KW.esc(m.tenant || "shared")}</td><td class="l">${m.servers.length}</td><td>${m.gpus.length}</td><td>${KW.fmt(m.generation_tokens / 1e6, 1)}</td><td>${KW.fmt(m.prompt_tokens / 1e6, 1)}</td><td>${KW.fmt(m.requests, 0)}</td>`
      + `<td>${KW.fmt(p.j_per_generated_token && p.j_per_generated_token.gpu, 3)}</td><td>${KW.fmt(p.j_per_token && p.j_per_token.facility, 3)}</td><td>${KW.fmt(p.wh_per_request, 3)}</td><td>${KW.fmt(p.water_l_per_mtok, 2)}</td><td>${KW.fmt(p.co2_g_per_mtok, 1)}</td>${conf(m)}</tr>`;
  }).join("") || "<tr><td colspan=13>no inference server reported in this window</td></tr>";
  const series = (f, unit) => v.models.map((m) => ({ name: key(m), unit, points: m.hours.map((h) => [Date.parse(h.t), f(h)]) }));
  Chart.time(KW.$("per-mtok"), series((h) => h.facility_kwh_per_mtok, "kWh"), { digits: 3, unit: "kWh" });
  Chart.time(KW.$("tps"), series((h) => (h.generation_tokens > 0 ? h.tokens_per_s : null), "tokens/s"), { digits: 0, unit: "tokens/s", y0: true });
  const pick = KW.$("pick"), keep = pick.value;
  pick.innerHTML = v.models.map((m) => `<option>${KW.esc(key(m))}</option>`).join("");
  if (v.models.some((m) => key(m) === keep)) pick.value = keep;
  scatter();
  KW.$("training").tBodies[0].innerHTML = v.training.map((t) => `<tr><td class="l">${KW.esc(t.job)}</td><td class="l">${KW.esc(t.owner)}</td><td>${KW.fmt(t.steps, 0)}</td><td>${KW.fmt(t.tokens / 1e9, 2)}</td>`
    + `<td>${KW.fmt(t.kwh_per_step && t.kwh_per_step.it, 3)}</td><td>${KW.fmt(t.kwh_per_step && t.kwh_per_step.facility, 3)}</td><td>${KW.fmt(t.water_l_per_step, 3)}</td><td>${KW.fmt(t.co2_kg_per_step, 4)}</td><td>${KW.fmt(t.kwh_per_billion_tokens && t.kwh_per_billion_tokens.facility, 1)}</td>`
    + `<td class="l ${t.confidence === "high" ? "ok" : "warn"}">${KW.esc(t.confidence)}</td></tr>`).join("") || "<tr><td colspan=10>no training job reported progress in this window</td></tr>";
}
KW.$("pick").onchange = scatter;
KW.onRange(() => load().catch((e) => KW.status(e.message, true)));
KW.live(load, 60000);
