// Manual check (not run in CI): the Cooling page's daily water and wet-bulb charts on a demo
// with BACKFILL of history (default 30d): screenshots of /cooling at 24 h, 7 d and 30 d in
// $SHOTS, and the daily series printed (one bar per local day, a wet bulb per day).
//   BACKFILL=7d node scripts/e2e/cooling-days.mjs
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BIN = process.env.KILOWATCH_BIN || "target/debug/kilowatch";
const SHOTS = process.env.SHOTS || "target/dashboard-shots";
const BACKFILL = process.env.BACKFILL || "30d";
const PORT = 22000 + Math.floor(Math.random() * 2000);
const BASE = `http://127.0.0.1:${PORT}`;
mkdirSync(SHOTS, { recursive: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const demo = spawn(BIN, ["demo", "--listen", `127.0.0.1:${PORT}`, "--nodes", "4", "--backfill", BACKFILL, "--speed", "60"], { env: { ...process.env, RUST_LOG: "warn" }, stdio: ["ignore", "ignore", "inherit"] });
let browser;
try {
  for (const t0 = Date.now(); ; await sleep(1000)) {
    if (Date.now() - t0 > 600000) throw new Error("no demo within 600 s");
    try { if ((await fetch(BASE + "/api/v1/health")).ok) break; } catch { /* not yet */ }
  }
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu"] });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  for (const range of ["24h", "7d", "30d"]) {
    const w = await (await fetch(`${BASE}/dashboard/water.json?range=${range}`)).json();
    console.log(`${BACKFILL} demo, ${range}: daily ` + w.daily.map((s) => s.name + " " + JSON.stringify(s.points.map(([t, v]) => [new Date(t).toISOString().slice(0, 16), v == null ? null : +v.toFixed(1)]))).join(" | "));
    await page.goto(`${BASE}/cooling?range=${range}`);
    await page.waitForSelector("#water-d canvas", { timeout: 30000 });
    await sleep(1500);
    await page.locator("#water-d").screenshot({ path: `${SHOTS}/cooling-${BACKFILL}-${range}-daily.png` });
  }
} finally {
  if (browser) await browser.close();
  demo.kill("SIGINT");
}
