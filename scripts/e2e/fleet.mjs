// End-to-end test of the fleet page: three `kilowatch demo` sites (2 nodes, 3 hours of
// backfill, live at 1x) and a fleet aggregator (`kilowatch serve` with a [fleet] section) on
// loopback; one site is killed, and the page must show three cards, that one stale with its
// age and its last figures, the fleet's energy-weighted PUE, no console error and no serious
// axe-core violation; a card opens the site's own dashboard. Screenshot: $SHOTS/fleet.png.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const AXE_SRC = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const BIN = process.env.KILOWATCH_BIN || "target/debug/kilowatch";
const SHOTS = process.env.SHOTS || "target/dashboard-shots";
const BASE_PORT = 24000 + Math.floor(Math.random() * 2000);
const SITES = [["paris", "Europe/Paris"], ["amsterdam", "Europe/Amsterdam"], ["dublin", "Europe/Dublin"]];
mkdirSync(SHOTS, { recursive: true });
const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (what, ms, f) => {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(300)) {
    try { const v = await f(); if (v) return v; } catch { /* not yet */ }
  }
  throw new Error(what + ": not within " + ms / 1000 + " s");
};

const procs = [];
const run = (args) => { const p = spawn(BIN, args, { env: { ...process.env, RUST_LOG: "warn" }, stdio: ["ignore", "ignore", "inherit"] }); procs.push(p); return p; };
const sites = SITES.map(([name, zone], i) => ({ name, zone, port: BASE_PORT + 1 + i }));
for (const s of sites) s.proc = run(["demo", "--listen", `127.0.0.1:${s.port}`, "--nodes", "2", "--backfill", "3h", "--backfill-step", "15m", "--speed", "1", "--seed", String(5 + s.port % 7)]);
const dir = mkdtempSync(join(tmpdir(), "kilowatch-fleet-e2e-"));
const FLEET = `http://127.0.0.1:${BASE_PORT}`;
writeFileSync(join(dir, "fleet.toml"), `[server]
listen = "127.0.0.1:${BASE_PORT}"
data_dir = "${join(dir, "data")}"
[fleet]
timezone = "Europe/Paris"
refresh_interval_s = 1
history_days = 1
settle_h = 0
stale_after_s = 10
${sites.map((s) => `[[fleet.sites]]
name = "${s.name}"
url = "http://127.0.0.1:${s.port}"
token = "demo-reads-are-open-0123456789"
timezone = "${s.zone}"
`).join("")}`);
let browser;
const t0 = Date.now();
try {
  for (const s of sites) await until(`demo ${s.name}`, 60000, async () => (await fetch(`http://127.0.0.1:${s.port}/api/v1/health`)).ok);
  run(["serve", "--config", join(dir, "fleet.toml"), "--insecure-no-auth"]);
  const kpi = () => fetch(FLEET + "/api/v1/fleet/kpi?period=day").then((r) => r.json());
  await until("every site fetched", 30000, async () => (await kpi()).sites.every((s) => !s.stale && s.it_energy_kwh > 0));
  console.log(`ok fleet fetched three sites (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  const before = await kpi();
  // Dublin's aggregator dies.
  sites[2].proc.kill("SIGKILL");
  await until("dublin stale", 20000, async () => (await kpi()).sites[2].stale);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu"] });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(FLEET + "/fleet?range=day");
  await page.waitForSelector(".site-card.stale", { timeout: 15000 });
  await page.waitForSelector("#eu tbody tr", { timeout: 15000 });
  await page.waitForSelector("#it-chart canvas", { timeout: 15000 });
  await page.waitForSelector("#pue-chart canvas", { timeout: 15000 });
  const cards = await page.$$eval(".site-card", (cs) => cs.map((c) => ({ site: c.dataset.site, stale: c.classList.contains("stale"), text: c.textContent.replace(/\s+/g, " ").trim(), href: c.getAttribute("href") })));
  if (cards.length !== 3) fail(`${cards.length} site cards, want 3`);
  const stale = cards.filter((c) => c.stale).map((c) => c.site);
  if (stale.join() !== "dublin") fail(`stale cards: ${stale.join() || "none"}, want dublin`);
  const d = cards.find((c) => c.site === "dublin");
  if (!d || !/stale · \d+ s ago/.test(d.text)) fail(`dublin's card shows no age: ${d && d.text}`);
  if (d && /(^|\s)0\.00 MWh E_IT/.test(d.text)) fail(`dublin shown as zero: ${d.text}`);
  // The open hour moves on while the page loads: the same PUE to within a few thousandths.
  const fpue = (await page.textContent("#f-pue")).trim();
  if (!(Math.abs(Number(fpue) - before.fleet.pue) < 0.005)) fail(`fleet PUE ${fpue}, want about ${before.fleet.pue.toFixed(3)}`);
  console.log("ok cards: " + cards.map((c) => `${c.site}${c.stale ? " (stale)" : ""}`).join(", ") + `; fleet PUE ${fpue}`);
  await page.evaluate(AXE_SRC);
  const bad = (await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }))))
    .filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) fail(`axe ${v.impact} ${v.id}: ${v.help} (${v.nodes.join(", ")})`);
  await page.screenshot({ path: `${SHOTS}/fleet.png`, fullPage: true });
  // A phone: one card a row, nothing wider than the screen.
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  phone.on("pageerror", (e) => errors.push("phone: " + e.message));
  await phone.goto(FLEET + "/fleet?range=day");
  await phone.waitForSelector(".site-card.stale", { timeout: 15000 });
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 390) fail(`the fleet page is ${wide} px wide on a 390 px phone`);
  await phone.screenshot({ path: `${SHOTS}/fleet-phone.png` });
  // A card drills into the site's own dashboard.
  await page.click('.site-card[data-site="paris"]');
  await page.waitForURL(`http://127.0.0.1:${sites[0].port}/**`, { timeout: 10000 });
  if (!(await page.title()).includes("Overview")) fail(`the paris card opened ${page.url()} (${await page.title()})`);
  else console.log("ok a card opens the site's own dashboard");
  for (const e of errors) fail("console: " + e);
  console.log(`fleet e2e: ${process.exitCode ? "FAIL" : "ok"} in ${((Date.now() - t0) / 1000).toFixed(1)} s, screenshot ${SHOTS}/fleet.png`);
} catch (e) {
  fail(e.message);
} finally {
  if (browser) await browser.close();
  for (const p of procs) p.kill("SIGINT");
}
