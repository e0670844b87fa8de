// End-to-end test of the dashboard: starts `kilowatch demo` on loopback (4 nodes, one day of
// backfill, 60x speed), drives Debian's chromium through playwright-core, and checks that
// every page loads with no console error, a live value changes, a job can be found and
// opened, and a silence can be created. Screenshots go to $SHOTS (default target/dashboard-shots).
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BIN = process.env.KILOWATCH_BIN || "target/debug/kilowatch";
const SHOTS = process.env.SHOTS || "target/dashboard-shots";
const PORT = 18000 + Math.floor(Math.random() * 2000);
const BASE = `http://127.0.0.1:${PORT}`;
const WRITE = "e2e-write-token-0123456789";
mkdirSync(SHOTS, { recursive: true });

const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const demo = spawn(BIN, ["demo", "--listen", `127.0.0.1:${PORT}`, "--nodes", "4", "--backfill", "1d", "--speed", "60"], {
  env: { ...process.env, KILOWATCH_WRITE_TOKEN: WRITE, RUST_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"],
});
let browser;
try {
  // The demo backfills, then prints its URL and starts serving.
  const t0 = Date.now();
  for (;;) {
    if (Date.now() - t0 > 120000) throw new Error("the demo did not answer within 120 s");
    try { const r = await fetch(BASE + "/api/v1/health"); if (r.ok) break; } catch { /* not yet */ }
    await sleep(500);
  }
  await sleep(3000); // the first live samples and an alert evaluation
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  const watch = (page, name) => {
    page.on("console", (m) => { if (m.type() === "error") errors.push(`${name}: ${m.text()}`); });
    page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
    // Every request stays on this server: no CDN.
    page.on("request", (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith("data:")) errors.push(`${name}: request to ${r.url()}`); });
  };
  const pages = [["overview", "/"], ["jobs", "/jobs"], ["gpus", "/gpus"], ["cooling", "/cooling?range=24h"], ["alerts", "/alerts"], ["node", "/gpu?node=dgx-001"], ["gpu", "/gpu?node=dgx-001&gpu=0&range=1h"]];
  for (const [name, path] of pages) {
    const page = await ctx.newPage(); watch(page, name);
    await page.goto(BASE + path);
    await page.waitForFunction(() => /^(updated|live)/.test(document.getElementById("status").textContent), null, { timeout: 20000 })
      .catch(() => fail(`${name}: never updated (status: ${"?"})`));
    await sleep(1500); // the slower loaders of the page (charts, jobs)
    await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
    console.log(`ok page ${name}`);
    await page.close();
  }

  // A live value changes without a reload.
  {
    const page = await ctx.newPage(); watch(page, "overview-live");
    await page.goto(BASE + "/");
    await page.waitForFunction(() => !document.getElementById("data-time").textContent.endsWith("–"), null, { timeout: 15000 });
    const before = await page.textContent("#data-time");
    await page.waitForFunction((b) => document.getElementById("data-time").textContent !== b, before, { timeout: 10000 })
      .then(() => console.log("ok live value changed"), () => fail("the live data time did not change within 10 s"));
    // Hovering a chart shows the values under the cursor.
    const chart = page.locator("svg.chart").first();
    await chart.waitFor({ timeout: 15000 }).catch(() => fail("no chart on the overview"));
    const box = await chart.boundingBox();
    if (box) {
      await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2);
      await page.waitForFunction(() => { const t = document.getElementById("tip"); return t && t.style.display === "block" && /\d/.test(t.textContent); }, null, { timeout: 5000 })
        .then(async () => { console.log("ok chart hover shows: " + (await page.textContent("#tip")).replace(/\n/g, " | ")); await page.screenshot({ path: `${SHOTS}/overview-hover.png` }); },
          () => fail("hovering the chart showed no values"));
    }
    await page.close();
  }

  // A job is found by search and opened.
  {
    const page = await ctx.newPage(); watch(page, "jobs-search");
    await page.goto(BASE + "/jobs");
    await page.waitForSelector("#jobs tbody tr a", { timeout: 30000 });
    const id = await page.textContent("#jobs tbody tr a");
    await page.fill("#q", id);
    await page.waitForFunction((j) => [...document.querySelectorAll("#jobs tbody tr a")].every((a) => a.textContent.includes(j)), id);
    await page.click(`#jobs tbody tr a`);
    await page.waitForFunction((j) => document.getElementById("job-id").textContent === j, id, { timeout: 20000 })
      .then(() => console.log(`ok job ${id} found and opened`), () => fail(`job ${id} did not open`));
    await page.waitForSelector("#job-chart svg", { timeout: 10000 }).catch(() => fail("job chart missing"));
    await page.screenshot({ path: `${SHOTS}/job.png`, fullPage: true });
    await page.close();
  }

  // A silence is created from the Alerts page.
  {
    const page = await ctx.newPage(); watch(page, "silence");
    await page.goto(BASE + "/alerts");
    await page.fill("#s-matchers", "alertname=E2eSilence node=dgx-001");
    await page.fill("#s-duration", "1h");
    await page.fill("#s-comment", "browser test");
    await page.fill("#s-token", WRITE);
    await page.click("#s-create");
    await page.waitForFunction(() => document.getElementById("s-msg").textContent.includes("created"), null, { timeout: 10000 })
      .catch(() => fail("silence not created: " + "see screenshot"));
    await page.waitForFunction(() => document.getElementById("silences").textContent.includes("E2eSilence"), null, { timeout: 10000 })
      .then(() => console.log("ok silence created"), () => fail("the new silence is not listed"));
    await page.screenshot({ path: `${SHOTS}/alerts-silenced.png`, fullPage: true });
    await page.close();
  }

  // A wall screen: the overview at 2560 x 1440.
  {
    const page = await browser.newPage({ viewport: { width: 2560, height: 1440 } }); watch(page, "wall");
    await page.goto(BASE + "/");
    await page.waitForFunction(() => /^(updated|live)/.test(document.getElementById("status").textContent), null, { timeout: 20000 }).catch(() => {});
    await sleep(1500);
    await page.screenshot({ path: `${SHOTS}/overview-wall.png` });
    await page.close();
  }
  for (const e of errors) fail(e);
  console.log(process.exitCode ? "dashboard e2e: FAILED" : `dashboard e2e: passed; screenshots in ${SHOTS}`);
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (browser) await browser.close();
  demo.kill("SIGINT");
}
