// Latency of every dashboard page and of every JSON endpoint the pages read, against a
// backfilled demo: p50 and p99 over N sequential requests each, against the targets (JSON
// p99 < 50 ms, page p99 < 200 ms). Usage:
//   node scripts/dashboard-bench.mjs [--nodes 127] [--backfill 30d] [--n 100] [--bin target/release/kilowatch]
// or against a running server: BASE=http://127.0.0.1:8080 node scripts/dashboard-bench.mjs
import { spawn } from "node:child_process";

const arg = (k, d) => { const i = process.argv.indexOf("--" + k); return i > 0 ? process.argv[i + 1] : d; };
const N = Number(arg("n", "100"));
const PORT = 18000 + Math.floor(Math.random() * 2000);
let BASE = process.env.BASE;
let demo = null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
if (!BASE) {
  BASE = `http://127.0.0.1:${PORT}`;
  demo = spawn(arg("bin", "target/debug/kilowatch"), ["demo", "--listen", `127.0.0.1:${PORT}`, "--nodes", arg("nodes", "127"), "--backfill", arg("backfill", "30d")], { env: { ...process.env, RUST_LOG: "warn" }, stdio: ["ignore", "ignore", "inherit"] });
  const t0 = Date.now();
  for (;;) {
    try { if ((await fetch(BASE + "/api/v1/health")).ok) break; } catch { /* backfilling */ }
    if (Date.now() - t0 > 1800e3) { console.error("demo did not start"); process.exit(1); }
    await sleep(1000);
  }
  await sleep(5000);
}
const headers = process.env.KILOWATCH_READ_TOKEN ? { Authorization: "Token " + process.env.KILOWATCH_READ_TOKEN } : {};
const o = await (await fetch(BASE + "/dashboard/overview.json", { headers })).json();
const end = new Date(o.data_time || Date.now());
const day = encodeURIComponent(new Date(end - 86400e3).toISOString()), to = encodeURIComponent(end.toISOString());
const targets = [
  ...["/", "/jobs", "/job?id=x", "/gpus", "/gpu?node=dgx-001", "/cooling", "/alerts", "/dashboard/assets/chart.js"].map((u) => ["page", u]),
  ...["/dashboard/overview.json", "/dashboard/power.json?range=24h", "/dashboard/power.json?range=7d", "/dashboard/power.json?range=30d",
    "/dashboard/climate.json?range=24h", "/dashboard/climate.json?range=30d", "/dashboard/cooling.json?range=24h", "/dashboard/cooling.json?range=30d",
    "/dashboard/water.json?range=24h", "/dashboard/water.json?range=30d", "/dashboard/gpus.json", "/dashboard/gpus/dgx-001?range=6h",
    "/dashboard/gpus/dgx-001/0?range=24h", "/api/v1/kpi?period=live", "/api/v1/kpi?period=day", "/api/v1/kpi?period=month", "/api/v1/kpi?period=rolling12",
    `/api/v1/jobs?from=${day}&to=${to}`, "/api/v1/alerts", "/api/v1/silences", "/api/v1/rules"].map((u) => ["json", u]),
];
let failed = 0;
console.log(`${"kind".padEnd(5)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} target  endpoint`);
for (const [kind, u] of targets) {
  const ms = [];
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    const r = await fetch(BASE + u, { headers });
    await r.arrayBuffer();
    ms.push(performance.now() - t);
    if (!r.ok) { console.error(`${u}: HTTP ${r.status}`); break; }
  }
  ms.sort((a, b) => a - b);
  const q = (p) => ms[Math.min(ms.length - 1, Math.ceil(p * ms.length) - 1)];
  const limit = kind === "page" ? 200 : 50, ok = q(0.99) < limit;
  if (!ok) failed++;
  console.log(`${kind.padEnd(5)} ${q(0.5).toFixed(1).padStart(8)} ${q(0.99).toFixed(1).padStart(8)} ${(ok ? "ok" : "OVER").padEnd(7)} ${u.replace(/from=.*&to=.*/, "from=-24h&to=now")}`);
}
console.log(failed ? `${failed} endpoint(s) over target` : "all within target");
if (demo) demo.kill("SIGINT");
