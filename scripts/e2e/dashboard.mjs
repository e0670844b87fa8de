// End-to-end test of the dashboard: starts `kilowatch demo` on loopback (4 nodes, one day of
// backfill, 60x speed), gives it data that makes every page non-empty through the API (a hot
// supply-air sample that fires SupplyAirTooWarm, a silence, a job), drives Debian's chromium
// through playwright-core, and checks that every page loads and shows that data with no
// console or page error, a live value changes, a job can be found and opened, a silence can be
// created and one expired with the Alerts page's own button; that a chart zooms by dragging,
// that times are in the site's zone (the browser runs in another) on a 24-hour clock, that
// axe-core finds no serious or critical violation on any page, and that the overview and
// Alerts fit a phone's width. Screenshots (1600x1000 and 390x844) go to $SHOTS (default
// target/dashboard-shots).
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const AXE_SRC = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
// The demo's `site.timezone`, and a browser in another zone, so a time shown in the browser's
// zone by mistake is caught.
const SITE_ZONE = "Europe/Paris";
const BROWSER_ZONE = "America/New_York";
const TIME_24H = /^\d{4}-\d\d-\d\d ([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/;
// The instant `ms` as the pages must show it: in `zone`, 24-hour.
const inZone = (ms, zone) => {
  const o = {}; for (const p of new Intl.DateTimeFormat("en-GB", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(new Date(ms))) o[p.type] = p.value;
  return `${o.year}-${o.month}-${o.day} ${o.hour}:${o.minute}:${o.second}`;
};

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
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 }, timezoneId: BROWSER_ZONE });
  // axe-core over the whole page; serious and critical violations fail the test.
  const axe = async (page, name) => {
    // Evaluated through the debugging protocol: the pages' CSP (script-src 'self') refuses an
    // injected <script>, rightly.
    await page.evaluate(AXE_SRC);
    const found = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) })));
    const bad = found.filter((v) => v.impact === "serious" || v.impact === "critical");
    for (const v of bad) fail(`${name}: axe ${v.impact} ${v.id}: ${v.help} (${v.nodes.join(", ")})`);
    console.log(`ok axe ${name}: ${bad.length} serious or critical, ${found.length - bad.length} other (${found.map((v) => v.id).join(", ") || "none"})`);
  };
  const errors = [];
  const watch = (page, name) => {
    page.on("console", (m) => { if (m.type() === "error") errors.push(`${name}: ${m.text()}`); });
    page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
    // Every request stays on this server: no CDN.
    page.on("request", (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith("data:")) errors.push(`${name}: request to ${r.url()}`); });
  };
  // Every page, and what must be on it: (name, path, [selector, text it must contain]…).
  const pages = [
    ["overview", "/", ["#power-chart canvas", ""], ["#climate-chart canvas", ""], ["#alerts", "SupplyAirTooWarm"]],
    ["jobs", "/jobs", ["#jobs tbody", "e2e:1"]],
    ["gpus", "/gpus", ["#heat", ""], ["#render", "GPUs on 4 nodes"], ["#n", "/"]],
    ["cooling", "/cooling?range=24h", ["#units tbody", "cu-e2e"], ["#supply canvas", ""], ["#modes canvas", ""], ["#water-h canvas", ""], ["#water-d canvas", ""], ["#envelope canvas", ""]],
    ["alerts", "/alerts", ["#firing tbody", "SupplyAirTooWarm"], ["#firing tbody", "cu-e2e"], ["#silences tbody", silence], ["#rules tbody tr", ""]],
    ["node", "/gpu?node=dgx-001", ["#chart1 canvas", ""]],
    ["gpu", "/gpu?node=dgx-001&gpu=0&range=1h", ["#chart1 canvas", ""], ["#chart2 canvas", ""]],
    ["job", "/job?id=e2e:1", ["#job-id", "e2e:1"], ["#job-chart canvas", ""]],
    ["forecast", "/forecast", ["#forecast tbody", ""], ["#advice tbody", ""]],
  ];
  for (const [name, path, ...wants] of pages) {
    const page = await ctx.newPage(); watch(page, name);
    await page.goto(BASE + path);
    await page.waitForFunction(() => /^(updated|live)/.test(document.getElementById("status").textContent), null, { timeout: 20000 })
      .catch(async () => fail(`${name}: never updated (status: ${await page.textContent("#status")})`));
    for (const [sel, text] of wants) {
      await page.waitForFunction(([s, t]) => [...document.querySelectorAll(s)].some((e) => e.textContent.includes(t) && (t || e.childElementCount || e.tagName === "CANVAS" || e.textContent.trim())), [sel, text], { timeout: 20000 })
        .catch(() => fail(`${name}: ${sel} does not show ${JSON.stringify(text || "anything")}`));
    }
    await sleep(1500); // the slower loaders of the page (charts, jobs)
    const status = await page.textContent("#status");
    if (!/^(updated|live)/.test(status)) fail(`${name}: status says ${JSON.stringify(status)}`);
    const zone = await page.textContent("#zone");
    if (zone !== `${SITE_ZONE} (site)`) fail(`${name}: the header's zone reads ${JSON.stringify(zone)}, not the site's`);
    await axe(page, name);
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
    // The data time is the newest data's, in the site's zone, 24-hour.
    const shown = (await page.textContent("#data-time")).replace(/^data at /, "");
    const o = await (await fetch(BASE + "/dashboard/overview.json")).json();
    if (o.timezone !== SITE_ZONE) fail(`overview.json names zone ${o.timezone}`);
    if (!TIME_24H.test(shown)) fail(`the data time reads ${JSON.stringify(shown)}, not a 24-hour time`);
    // The data time moves at 60x: it must be within a few data minutes of the JSON's, in the
    // site's zone (Paris and New York are 6 hours apart).
    const near = [-1, 0, 1, 2, 3, 4, 5].map((m) => inZone(Date.parse(o.data_time) - m * 60000, SITE_ZONE).slice(0, 16));
    if (!near.includes(shown.slice(0, 16))) fail(`the data time ${shown} is not ${o.data_time} in ${SITE_ZONE} (${near[1]})`);
    else console.log(`ok times in the site's zone, 24-hour: ${shown} (${SITE_ZONE}; the browser is in ${BROWSER_ZONE})`);
    // A day of data: the rolling 12 months shows its metered share and is not official.
    await page.waitForFunction(() => /rolling 12 months/.test(document.getElementById("pue-periods").textContent), null, { timeout: 20000 }).catch(() => {});
    const r12 = await page.evaluate(() => [...document.querySelectorAll("#pue-periods tr")].map((r) => r.textContent).find((t) => t.startsWith("rolling 12 months")) || "");
    if (!/% metered/.test(r12) || /official/.test(r12)) fail(`the overview's rolling 12 months reads ${JSON.stringify(r12)}`);
    else console.log(`ok rolling 12 months: ${r12.replace(/\s+/g, " ")}`);
    // Hovering a chart shows the values under the cursor in its legend.
    const chart = page.locator("#power-chart .u-over");
    await chart.waitFor({ timeout: 15000 }).catch(() => fail("no chart on the overview"));
    const box = await chart.boundingBox();
    if (box) {
      await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2);
      await page.waitForFunction(() => [...document.querySelectorAll("#power-chart .u-legend .u-series:not(:first-child) .u-value")].some((v) => /\d/.test(v.textContent)), null, { timeout: 5000 })
        .then(async () => { console.log("ok chart hover shows: " + (await page.textContent("#power-chart .u-legend")).replace(/\s+/g, " ")); await page.screenshot({ path: `${SHOTS}/overview-hover.png` }); },
          () => fail("hovering the chart showed no values"));
      const hoverTime = await page.textContent("#power-chart .u-legend .u-series:first-child .u-value");
      if (!TIME_24H.test(hoverTime)) fail(`the hovered time reads ${JSON.stringify(hoverTime)}`);
      // The cursor is shared: the climate chart's legend follows the power chart's.
      const climateTime = await page.textContent("#climate-chart .u-legend .u-series:first-child .u-value");
      if (climateTime !== hoverTime) fail(`the climate chart's cursor is at ${climateTime}, the power chart's at ${hoverTime}`);
      else console.log("ok cursor shared across the page's charts at " + hoverTime);
      // Dragging across the middle fifth zooms the x axis to about that; a double click resets.
      const range = () => page.evaluate(() => { const s = document.getElementById("power-chart")._kw.u.scales.x; return [s.min, s.max]; });
      const [lo, hi] = await range();
      await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 5 });
      await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
      const [zlo, zhi] = await range();
      const frac = (zhi - zlo) / (hi - lo);
      if (!(zlo > lo && zhi < hi && frac > 0.1 && frac < 0.3)) fail(`dragging did not zoom: x ${lo}..${hi} became ${zlo}..${zhi}`);
      else console.log(`ok drag zoomed the x axis to ${(frac * 100).toFixed(0)} % of the window`);
      await page.screenshot({ path: `${SHOTS}/overview-zoomed.png` });
      await page.mouse.dblclick(box.x + box.width * 0.5, box.y + box.height / 2);
      const [rlo, rhi] = await range();
      if (rhi - rlo < (hi - lo) * 0.99) fail(`a double click did not reset the zoom: ${rlo}..${rhi}`);
      else console.log("ok double click reset the zoom");
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
    await page.waitForSelector("#job-chart canvas", { timeout: 10000 }).catch(() => fail("job chart missing"));
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

  // The Alerts page shows its times in the site's zone, 24-hour (not RFC 3339 in UTC); the
  // header's button switches to the browser's zone, and back, remembered across pages.
  {
    const page = await ctx.newPage(); watch(page, "alerts-times");
    await page.goto(BASE + "/alerts");
    await page.waitForFunction(() => document.querySelector("#firing tbody tr td:nth-child(5)"), null, { timeout: 20000 }).catch(() => {});
    const since = (await page.textContent("#firing tbody tr td:nth-child(5)").catch(() => "")) || "";
    if (!TIME_24H.test(since)) fail(`the Alerts page shows a firing alert's time as ${JSON.stringify(since)}`);
    else console.log(`ok alert times read ${since}`);
    await page.click("#zone");
    await page.waitForFunction((z) => document.getElementById("zone").textContent === z + " (browser)", BROWSER_ZONE, { timeout: 10000 })
      .catch(async () => fail(`the zone button did not switch to the browser's zone: ${await page.textContent("#zone")}`));
    await page.goto(BASE + "/");
    await page.waitForFunction((z) => document.getElementById("zone").textContent === z + " (browser)", BROWSER_ZONE, { timeout: 10000 })
      .then(() => console.log("ok the browser's zone is kept across pages"), () => fail("the zone choice was not remembered"));
    await page.click("#zone");
    await page.waitForFunction((z) => document.getElementById("zone").textContent === z + " (site)", SITE_ZONE, { timeout: 10000 })
      .catch(() => fail("the zone button did not switch back to the site's zone"));
    await page.close();
  }

  // A phone at 3 a.m.: the overview and Alerts at 390 x 844, no horizontal scrolling.
  for (const [name, path] of [["overview", "/"], ["alerts", "/alerts"]]) {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, timezoneId: BROWSER_ZONE }); watch(page, name + "-phone");
    await page.goto(BASE + path);
    await page.waitForFunction(() => /^(updated|live)/.test(document.getElementById("status").textContent), null, { timeout: 20000 }).catch(() => {});
    await sleep(2000);
    const [sw, cw] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    if (sw > cw) fail(`${name} at 390 px scrolls sideways (${sw} > ${cw})`);
    else console.log(`ok ${name} fits 390 px (${sw} <= ${cw})`);
    await page.screenshot({ path: `${SHOTS}/${name}-phone.png` });
    await page.screenshot({ path: `${SHOTS}/${name}-phone-full.png`, fullPage: true });
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
