// End-to-end test of the dashboard: starts `kilowatch demo` on loopback (4 nodes, one day of
// backfill, 60x speed), gives it data that makes every page non-empty through the API (a hot
// supply-air sample that fires SupplyAirTooWarm, a silence, a job), drives Debian's chromium
// through playwright-core, and checks that every page loads and shows that data with no
// console or page error, a live value changes, a job can be found and opened, a silence can be
// created and one expired with the Alerts page's own button. Screenshots go to $SHOTS (default
// target/dashboard-shots).
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

  // Data for every page. The demo's clock runs at 60x: the hot sample is stamped at its data
  // time, and SupplyAirTooWarm (> 27 °C for 5 data minutes) fires within a few evaluations.
  const api = async (method, path, body, type = "application/json") => {
    const r = await fetch(BASE + path, { method, headers: { Authorization: "Token " + WRITE, "Content-Type": type }, body: typeof body === "string" ? body : JSON.stringify(body) });
    if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  };
  const dataTime = async () => new Date((await (await fetch(BASE + "/dashboard/overview.json")).json()).data_time);
  const t = await dataTime();
  await api("POST", "/api/v2/write?precision=ns", `cooling,site=dc5,unit=cu-e2e supply_temp_c=40,supply_rh_pct=40 ${BigInt(t.getTime()) * 1000000n}\n`, "text/plain");
  const firing = async () => ((await (await fetch(BASE + "/api/v1/alerts")).json()).alerts || [])
    .filter((x) => x.alert.status === "firing" && x.alert.labels.unit === "cu-e2e");
  for (const t0 = Date.now(); !(await firing()).length; await sleep(1000)) {
    if (Date.now() - t0 > 90000) throw new Error("the hot supply-air sample fired no alert within 90 s");
  }
  console.log("ok alert firing: " + (await firing()).map((x) => x.alert.labels.alertname + "/" + x.alert.labels.severity).join(", "));
  const silence = (await api("POST", "/api/v1/silences", { matchers: ["alertname=SupplyAirTooWarm", "unit=cu-e2e"], duration: "1h", comment: "e2e: expire me", createdBy: "e2e" })).silenceID;
  const start = new Date(t.getTime() - 2 * 3600e3).toISOString();
  await api("POST", "/api/v1/jobs", { job: "e2e:1", owner: "e2e-owner", project: "browser-test", node: "dgx-001", gpus: [0, 1], start });
  console.log(`ok silence ${silence} and job e2e:1 created through the API`);
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
  // Every page, and what must be on it: (name, path, [selector, text it must contain]…).
  const pages = [
    ["overview", "/", ["#power-chart svg", ""], ["#alerts", "SupplyAirTooWarm"]],
    ["jobs", "/jobs", ["#jobs tbody", "e2e:1"]],
    ["gpus", "/gpus", ["#heat .heat", "dgx-001"], ["#n", "/"]],
    ["cooling", "/cooling?range=24h", ["#units tbody", "cu-e2e"], ["#supply svg", ""]],
    ["alerts", "/alerts", ["#firing tbody", "SupplyAirTooWarm"], ["#firing tbody", "cu-e2e"], ["#silences tbody", silence], ["#rules tbody tr", ""]],
    ["node", "/gpu?node=dgx-001", ["#chart1 svg", ""]],
    ["gpu", "/gpu?node=dgx-001&gpu=0&range=1h", ["#chart1 svg", ""]],
  ];
  for (const [name, path, ...wants] of pages) {
    const page = await ctx.newPage(); watch(page, name);
    await page.goto(BASE + path);
    await page.waitForFunction(() => /^(updated|live)/.test(document.getElementById("status").textContent), null, { timeout: 20000 })
      .catch(async () => fail(`${name}: never updated (status: ${await page.textContent("#status")})`));
    for (const [sel, text] of wants) {
      await page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(t) && (t || e.childElementCount || e.tagName === "svg" || e.textContent.trim())), [sel, text], { timeout: 20000 })
        .catch(() => fail(`${name}: ${sel} does not show ${JSON.stringify(text || "anything")}`));
    }
    await sleep(1500); // the slower loaders of the page (charts, jobs)
    const status = await page.textContent("#status");
    if (!/^(updated|live)/.test(status)) fail(`${name}: status says ${JSON.stringify(status)}`);
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

  // The silence made through the API is expired with the Alerts page's own button.
  {
    const page = await ctx.newPage(); watch(page, "expire");
    await page.goto(BASE + "/alerts");
    await page.fill("#s-token", WRITE);
    const button = page.locator(`button[data-expire="${silence}"]`);
    await button.waitFor({ timeout: 20000 }).catch(() => fail(`no expire button for silence ${silence}`));
    await button.click();
    await page.waitForFunction(() => document.getElementById("s-msg").textContent === "silence expired", null, { timeout: 10000 })
      .catch(async () => fail("expire: " + await page.textContent("#s-msg")));
    await page.waitForFunction((id) => [...document.querySelectorAll("#silences tbody tr")].some((r) => r.textContent.includes(id) && r.textContent.includes("expired")), silence, { timeout: 10000 })
      .catch(() => fail(`silence ${silence} is not listed as expired`));
    const listed = ((await (await fetch(BASE + "/api/v1/silences")).json()).silences || []).find((x) => x.silence.id === silence);
    if (!listed || listed.active) fail(`the API still has silence ${silence} active: ${JSON.stringify(listed)}`);
    else console.log(`ok silence ${silence} expired from the page`);
    await page.screenshot({ path: `${SHOTS}/alerts-expired.png`, fullPage: true });
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
