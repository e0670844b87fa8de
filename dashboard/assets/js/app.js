// Shared by every page: the token, JSON fetches, number formats, the range selector and the
// live refresh loop (polling; every figure on a page is re-read every few seconds).
"use strict";
const KW = {};
KW.params = new URLSearchParams(location.search);
KW.token = KW.params.get("token") || sessionStorage.getItem("kilowatch-token");
if (KW.params.get("token")) sessionStorage.setItem("kilowatch-token", KW.params.get("token"));
KW.headers = () => (KW.token ? { Authorization: "Token " + KW.token } : {});
KW.get = async (url) => {
  const r = await fetch(url, { headers: KW.headers() });
  if (r.status === 403) { const e = new Error(url.split("?")[0] + ": not available to this token"); e.forbidden = true; throw e; }
  if (!r.ok) throw new Error(url.split("?")[0] + ": HTTP " + r.status);
  return r.json();
};
// A token scoped to a customer's jobs gets 403 from operator views: the page says so instead
// of retrying, and points to what the token can see.
KW.forbidden = () => {
  if (KW.denied) return;
  KW.denied = true;
  KW.$("main").innerHTML = `<div class="card w12"><h2>Not available to this token</h2><div class="sub">This token is scoped to its own jobs: this page is an operator view. Your jobs, their energy and your statements are on the <a href="${KW.link("/jobs")}">Jobs</a> page.</div></div>`;
  const s = KW.$("status"); s.textContent = "scoped token"; s.className = "";
};
KW.fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toLocaleString("en", { minimumFractionDigits: d, maximumFractionDigits: d });
KW.kw = (w) => (w === null || w === undefined) ? "–" : KW.fmt(w / 1000, 1);
KW.esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
KW.$ = (id) => document.getElementById(id);
KW.set = (id, text) => { const e = KW.$(id); if (e) e.textContent = text; };
KW.range = KW.params.get("range") || "24h";
KW.status = (text, bad) => { if (KW.denied) return; const s = KW.$("status"); s.textContent = text; s.className = bad ? "bad" : ""; };
KW.dur = (s) => { if (s == null) return "–"; const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60); return h ? h + " h " + m + " min" : m + " min"; };
// Links keep the token and range.
document.querySelectorAll("a[data-nav]").forEach((a) => {
  const p = new URLSearchParams(); if (KW.params.get("token")) p.set("token", KW.params.get("token"));
  if (p.toString()) a.href += "?" + p;
});
KW.link = (path, extra) => { const p = new URLSearchParams(extra || {}); if (KW.params.get("token")) p.set("token", KW.params.get("token")); return path + "?" + p; };
// The range buttons (elements with data-range) set KW.range and redraw.
KW.onRange = (redraw) => {
  document.querySelectorAll("[data-range]").forEach((b) => {
    b.classList.toggle("on", b.dataset.range === KW.range);
    b.onclick = () => {
      KW.range = b.dataset.range;
      document.querySelectorAll("[data-range]").forEach((c) => c.classList.toggle("on", c === b));
      const u = new URL(location.href); u.searchParams.set("range", KW.range); history.replaceState(null, "", u);
      redraw();
    };
  });
};
// Times: every time on every page is shown in one zone, the site's (`site.timezone`, from the
// overview) unless the reader switched to their browser's with the header's button (kept in
// localStorage), on a 24-hour clock.
KW.browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
KW.siteZone = null;
KW.useBrowserZone = localStorage.getItem("kilowatch-zone") === "browser";
KW.zone = () => (KW.useBrowserZone || !KW.siteZone ? KW.browserZone : KW.siteZone);
const zoneFormats = {};
// The parts of instant `t` (ms, Date or RFC 3339 text) in the chosen zone: year, month, day,
// hour (00-23), minute, second, as two-digit strings.
KW.parts = (t) => {
  const z = KW.zone();
  const f = zoneFormats[z] || (zoneFormats[z] = new Intl.DateTimeFormat("en-GB", { timeZone: z, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }));
  const o = {}; for (const p of f.formatToParts(t instanceof Date ? t : new Date(t))) o[p.type] = p.value;
  return o;
};
// Parses what the APIs send: ms, RFC 3339 (nanoseconds allowed), or ns since the epoch (> 1e15).
KW.instant = (t) => {
  if (t == null || t === "") return null;
  if (typeof t === "number") return t > 1e15 ? t / 1e6 : t;
  const ms = Date.parse(String(t).replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(ms) ? null : ms;
};
// "2026-11-28 14:05:08" in the chosen zone; `minutes` drops the seconds.
KW.time = (t, minutes) => {
  const ms = KW.instant(t); if (ms == null) return t == null || t === "" ? "–" : String(t);
  const p = KW.parts(ms);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}` + (minutes ? "" : ":" + p.second);
};
KW.clock = (t) => { const p = KW.parts(KW.instant(t) ?? Date.now()); return `${p.hour}:${p.minute}:${p.second}`; };
function showZone() {
  const b = KW.$("zone"); if (!b) return;
  b.textContent = KW.zone() + (KW.useBrowserZone ? " (browser)" : " (site)");
  b.title = "times are shown in " + KW.zone() + "; switch to " + (KW.useBrowserZone ? "the site's zone" + (KW.siteZone ? " (" + KW.siteZone + ")" : "") : "this browser's zone (" + KW.browserZone + ")");
}
if (KW.$("zone")) KW.$("zone").onclick = () => {
  KW.useBrowserZone = !KW.useBrowserZone;
  localStorage.setItem("kilowatch-zone", KW.useBrowserZone ? "browser" : "site");
  // Every figure and chart is redrawn in the new zone.
  location.reload();
};
// The site (its name and zone) before anything is drawn.
KW.site = async () => { try { const o = await KW.get("/dashboard/overview.json"); KW.set("site", o.site); if (o.timezone) KW.siteZone = o.timezone; showZone(); return o; } catch (e) { return null; } };
KW.ready = KW.site();
// Runs `fn` now and every `ms`, reporting failures in the header without stopping.
KW.live = (fn, ms = 5000) => {
  const tick = async () => {
    try { await fn(); KW.status("updated " + KW.clock()); }
    catch (e) { if (e.forbidden) { KW.forbidden(); clearInterval(id); return; } KW.status("cannot reach Kilowatch (" + e.message + "), retrying…", true); }
  };
  const id = setInterval(tick, ms); KW.ready.then(tick); return id;
};
// On a phone the tables are lists (app.css): each cell is labelled with its column's heading.
const narrow = matchMedia("(max-width: 700px)");
const labelCells = () => {
  if (!narrow.matches) return;
  document.querySelectorAll("main table:not(.u-legend)").forEach((t) => {
    const head = t.querySelector("tr:has(th)"); if (!head) return;
    const names = [...head.children].map((th) => th.textContent.trim());
    t.querySelectorAll("tr").forEach((tr) => { if (tr !== head) [...tr.children].forEach((td, i) => { if (names[i] && td.dataset.label !== names[i]) td.dataset.label = names[i]; }); });
  });
};
new MutationObserver(labelCells).observe(document.getElementById("main"), { childList: true, subtree: true });
