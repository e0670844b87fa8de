"use strict";
// Alerts, silences and rules from the alert API. Creating or expiring a silence is a write:
// it needs a write token, typed here and kept for this browser tab only.
const tokenBox = KW.$("s-token");
tokenBox.value = sessionStorage.getItem("kilowatch-write-token") || "";
const labels = (l) => Object.entries(l || {}).filter(([k, v]) => !["alertname", "severity", "site"].includes(k) && v != null).map(([k, v]) => k + "=" + v).join(" ");
const ts = (t) => KW.time(t);
const writeHeaders = () => { const t = tokenBox.value.trim() || KW.token; return t ? { Authorization: "Token " + t, "Content-Type": "application/json" } : { "Content-Type": "application/json" }; };
async function load() {
  KW.site();
  const [a, s, r] = await Promise.all([KW.get("/api/v1/alerts"), KW.get("/api/v1/silences"), KW.get("/api/v1/rules")]);
  const all = a.alerts || [];
  const firing = all.filter((x) => x.alert.status === "firing");
  KW.$("firing").tBodies[0].innerHTML = firing.map((x) => `<tr><td class="l"><span class="pill ${KW.esc(x.alert.labels.severity)}">${KW.esc(x.alert.labels.severity)}</span></td><td class="l">${KW.esc(x.alert.labels.alertname || x.alert.rule)}</td><td class="l">${KW.esc(labels(x.alert.labels))}</td><td>${KW.fmt(x.alert.value, 2)}</td><td class="l">${KW.esc(ts(x.alert.fired_at))}</td><td class="l">${x.muted ? KW.esc(typeof x.muted === "string" ? x.muted : JSON.stringify(x.muted)) : ""}</td><td><button data-silence="${KW.esc("alertname=" + (x.alert.labels.alertname || "") + (x.alert.labels.node ? " node=" + x.alert.labels.node : "") + (x.alert.labels.unit ? " unit=" + x.alert.labels.unit : ""))}">silence…</button></td></tr>`).join("") || "<tr><td colspan=7>none firing</td></tr>";
  KW.$("recent").tBodies[0].innerHTML = all.filter((x) => x.alert.status !== "firing").slice(0, 50).map((x) => `<tr><td class="l">${KW.esc(x.alert.status)}</td><td class="l">${KW.esc(x.alert.labels.alertname || x.alert.rule)}</td><td class="l">${KW.esc(labels(x.alert.labels))}</td><td class="l">${KW.esc(ts(x.alert.resolved_at))}</td></tr>`).join("") || "<tr><td colspan=4>none</td></tr>";
  KW.$("silences").tBodies[0].innerHTML = (s.silences || []).map((x) => `<tr><td class="l">${KW.esc(x.silence.id)}</td><td class="l">${KW.esc(x.silence.matchers.map((m) => typeof m === "string" ? m : m.name + ((m.isEqual ?? m.is_equal ?? true) ? "" : "!") + ((m.isRegex ?? m.is_regex) ? "=~" : "=") + m.value).join(" "))}</td><td class="l">${KW.esc(ts(x.silence.endsAt))}</td><td class="l">${KW.esc(x.silence.createdBy)}</td><td class="l">${KW.esc(x.silence.comment)}</td><td class="l">${x.active ? "active" : "expired"}</td><td>${x.active ? `<button data-expire="${KW.esc(x.silence.id)}">expire</button>` : ""}</td></tr>`).join("") || "<tr><td colspan=7>none</td></tr>";
  KW.$("rules").tBodies[0].innerHTML = (r.rules || []).map((x) => { const ru = x.rule, st = x.status || {}; const cond = Object.entries(ru).filter(([k]) => !["name", "metric", "match", "for", "severity", "labels", "annotations"].includes(k) && ru[k] != null).map(([k, v]) => k + " " + (typeof v === "object" ? JSON.stringify(v) : v)).join(", "); return `<tr><td class="l">${KW.esc(ru.name)}</td><td class="l">${KW.esc(ru.severity)}</td><td class="l">${KW.esc(ru.metric)}</td><td class="l">${KW.esc(cond)}</td><td>${KW.esc(ru.for ?? "")}</td><td>${st.series ?? "–"}</td><td>${st.active ?? "–"}</td><td class="l bad">${KW.esc(st.error || "")}</td></tr>`; }).join("");
}
KW.$("silence-form").onsubmit = async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("kilowatch-write-token", tokenBox.value.trim());
  const matchers = KW.$("s-matchers").value.trim().split(/\s+/).filter(Boolean);
  const body = { matchers, duration: KW.$("s-duration").value.trim() || "2h", comment: KW.$("s-comment").value, createdBy: KW.$("s-by").value || "dashboard" };
  const r = await fetch("/api/v1/silences", { method: "POST", headers: writeHeaders(), body: JSON.stringify(body) });
  const j = await r.json().catch(() => ({}));
  KW.set("s-msg", r.ok ? "silence " + j.silenceID + " created" : "not created: " + (j.message || "HTTP " + r.status));
  KW.$("s-msg").className = r.ok ? "sub ok" : "sub bad";
  await load();
};
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button"); if (!b) return;
  if (b.dataset.silence) { KW.$("s-matchers").value = b.dataset.silence; KW.$("s-matchers").focus(); }
  if (b.dataset.expire) {
    const r = await fetch("/api/v1/silences/" + encodeURIComponent(b.dataset.expire), { method: "DELETE", headers: writeHeaders() });
    KW.set("s-msg", r.ok ? "silence expired" : "not expired: HTTP " + r.status); await load();
  }
});
KW.live(load, 10000);
