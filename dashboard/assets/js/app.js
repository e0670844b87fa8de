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
// Runs `fn` now and every `ms`, reporting failures in the header without stopping.
KW.live = (fn, ms = 5000) => {
  const tick = async () => {
    try { await fn(); KW.status("updated " + new Date().toLocaleTimeString()); }
    catch (e) { if (e.forbidden) { KW.forbidden(); clearInterval(id); return; } KW.status("cannot reach Kilowatch (" + e.message + "), retrying…", true); }
  };
  const id = setInterval(tick, ms); tick(); return id;
};
KW.site = async () => { try { const o = await KW.get("/dashboard/overview.json"); KW.set("site", o.site); return o; } catch (e) { return null; } };
