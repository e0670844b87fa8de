// The Models page in Chromium: starts `kilowatch demo` with the whole simulated DC5 (its
// inference fleet runs on the last six nodes; pretraining jobs report their steps), a day and a
// half of backfill, opens /models through playwright-core and checks that the models table
// lists the fleet's five models, the training table is filled, every chart drew, and no console
// or page error happened, no request left the server, and axe-core finds no serious or critical
// violation. Screenshot (1600x1000, full page) in $SHOTS/models.png.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const AXE_SRC = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const BIN = process.env.KILOWATCH_BIN || "target/debug/kilowatch";
const SHOTS = process.env.SHOTS || "target/dashboard-shots";
const PORT = 20000 + Math.floor(Math.random() * 2000);
const BASE = `http://127.0.0.1:${PORT}`;
mkdirSync(SHOTS, { recursive: true });
const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const demo = spawn(BIN, ["demo", "--listen", `127.0.0.1:${PORT}`, "--backfill", "36h", "--speed", "60"], { env: { ...process.env, RUST_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"] });
let browser;
try {
  const t0 = Date.now();
  for (;;) {
    if (Date.now() - t0 > 300000) throw new Error("the demo did not answer within 300 s");
    try { const r = await fetch(BASE + "/api/v1/health"); if (r.ok) break; } catch { /* not yet */ }
    await sleep(1000);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 }, timezoneId: "Europe/Paris" });
  const page = await ctx.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("request", (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith("data:")) errors.push(`request to ${r.url()}`); });
  await page.goto(BASE + "/models");
  // The first answer attributes the whole site over 24 h: give it time.
  await page.waitForFunction(() => document.querySelectorAll("#models tbody tr").length >= 5, null, { timeout: 240000 });
  await page.waitForSelector("#per-mtok canvas, #per-mtok .nodata", { timeout: 30000 });
  const rows = await page.$$eval("#models tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
  console.log("models:\n" + rows.map((r) => "  " + r.join(" | ")).join("\n"));
  if (rows.length !== 5) fail(`expected the fleet's 5 models, got ${rows.length}`);
  for (const id of ["per-mtok", "scatter", "tps"]) {
    if (!(await page.$(`#${id} canvas`))) fail(`chart #${id} did not draw`);
  }
  const training = await page.$$eval("#training tbody tr", (trs) => trs.length);
  if (training < 1 || (await page.textContent("#training tbody")).includes("no training job")) fail("no training job in the table");
  console.log(`ok training rows: ${training}; fleet ${await page.textContent("#fleet-j")} J facility per generated token`);
  // axe-core through the debugging protocol (the page's CSP refuses an injected <script>).
  await page.evaluate(AXE_SRC);
  const found = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help })));
  for (const v of found.filter((x) => x.impact === "serious" || x.impact === "critical")) fail(`axe ${v.impact} ${v.id}: ${v.help}`);
  console.log(`ok axe: ${found.map((v) => v.id + "/" + v.impact).join(", ") || "no violation"}`);
  if (errors.length) fail("console or page errors: " + errors.join("; "));
  await page.screenshot({ path: `${SHOTS}/models.png`, fullPage: true });
  console.log(`ok screenshot ${SHOTS}/models.png`);
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (browser) await browser.close();
  demo.kill("SIGTERM");
}
