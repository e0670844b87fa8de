// End-to-end test of what a customer sees: `kilowatch demo --tenant "mistral-ai/*"` (4 nodes,
// a day of backfill) and Debian's chromium through playwright-core, with the customer's scoped
// read token in the link, as the demo prints it. The jobs page lists that customer's jobs and
// no other tenant's job or owner (the operator's answer, read without a token, says which
// those are); another tenant's job page says it does not exist; the operator pages say they
// are not available to this token and show no other tenant either. Screenshot:
// $SHOTS/jobs-tenant.png.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BIN = process.env.KILOWATCH_BIN || "target/debug/kilowatch";
const SHOTS = process.env.SHOTS || "target/dashboard-shots";
const PORT = 20000 + Math.floor(Math.random() * 2000);
const BASE = `http://127.0.0.1:${PORT}`;
const TENANT = "e2e-tenant-token-0123456789";
const MINE = (owner) => (owner || "").startsWith("mistral-ai/");
mkdirSync(SHOTS, { recursive: true });

const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const demo = spawn(BIN, ["demo", "--listen", `127.0.0.1:${PORT}`, "--nodes", "4", "--backfill", "1d", "--speed", "60", "--tenant", "mistral-ai/*"], {
  env: { ...process.env, KILOWATCH_TENANT_TOKEN: TENANT, RUST_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"],
});
let printed = "";
demo.stdout.on("data", (d) => { printed += d; });
let browser;
try {
  for (const t0 = Date.now(); ; await sleep(500)) {
    if (Date.now() - t0 > 120000) throw new Error("the demo did not answer within 120 s");
    try { if ((await fetch(BASE + "/api/v1/health")).ok) break; } catch { /* not yet */ }
  }
  if (!printed.includes(`/jobs?token=${TENANT}`)) fail("the demo did not print the customer's link: " + printed);
  // The operator's view of the same window the page asks for (the last 24 h of data).
  const end = new Date((await (await fetch(BASE + "/dashboard/overview.json")).json()).data_time);
  const from = new Date(end - 86400e3);
  const all = await (await fetch(`${BASE}/api/v1/jobs?from=${from.toISOString()}&to=${end.toISOString()}`)).json();
  const others = all.jobs.filter((j) => !MINE(j.owner));
  const own = all.jobs.filter((j) => MINE(j.owner));
  if (!others.length || !own.length) throw new Error(`the demo's day needs jobs of both kinds: ${own.length} own, ${others.length} others`);
  const foreignOwners = [...new Set(others.map((j) => j.owner))];
  const leaks = (text) => [...foreignOwners.filter((o) => text.includes(o)), ...others.map((j) => j.job).filter((id) => text.includes(id))];
  console.log(`ok the operator sees ${own.length} mistral-ai jobs and ${others.length} of ${foreignOwners.length} other owners`);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  const open = async (path) => {
    const page = await ctx.newPage();
    // 403 and 404 answers are the point here; anything else logged as an error is not.
    page.on("console", (m) => { if (m.type() === "error" && !/status of 40[34]/.test(m.text())) errors.push(`${path}: ${m.text()}`); });
    page.on("pageerror", (e) => errors.push(`${path}: ${e.message}`));
    await page.goto(BASE + path);
    return page;
  };

  // The jobs page: the customer's own jobs, nobody else's.
  {
    const page = await open(`/jobs?token=${TENANT}`);
    await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr").length > 0, null, { timeout: 30000 })
      .catch(() => fail("the jobs page lists no job for the customer"));
    await sleep(1500);
    const owners = await page.$$eval("#jobs tbody tr td:nth-child(2)", (tds) => tds.map((td) => td.textContent));
    const strangers = owners.filter((o) => !MINE(o));
    if (strangers.length) fail(`the customer's jobs page lists other owners: ${strangers.slice(0, 5).join(", ")}`);
    else console.log(`ok the customer's jobs page lists ${owners.length} jobs, all mistral-ai's`);
    const text = await page.textContent("body");
    if (!text.includes("your jobs only")) fail("the jobs page does not say it shows the customer's jobs only");
    const leaked = leaks(text);
    if (leaked.length) fail(`the customer's jobs page shows: ${leaked.slice(0, 5).join(", ")}`);
    // The page's own search over every job id, typed as a curious customer would.
    await page.fill("#q", others[0].job);
    await sleep(300);
    const found = await page.$$eval("#jobs tbody tr", (trs) => trs.length);
    if (found) fail(`searching another tenant's job ${others[0].job} finds ${found} rows`);
    await page.fill("#q", "");
    await page.screenshot({ path: `${SHOTS}/jobs-tenant.png`, fullPage: true });
    await page.close();
  }

  // Another tenant's job: as if it did not exist.
  {
    const page = await open(`/job?id=${encodeURIComponent(others[0].job)}&token=${TENANT}`);
    await page.waitForFunction(() => /not found|not known|no such job|unknown/i.test(document.body.textContent), null, { timeout: 20000 })
      .catch(async () => fail(`another tenant's job page does not say it is not found: ${(await page.textContent("body")).slice(0, 300)}`));
    const leaked = leaks(await page.textContent("body")).filter((x) => x !== others[0].job);
    if (leaked.length) fail(`another tenant's job page shows: ${leaked.join(", ")}`);
    else console.log(`ok another tenant's job (${others[0].job}) is not found for the customer`);
    await page.screenshot({ path: `${SHOTS}/job-tenant-foreign.png`, fullPage: true });
    await page.close();
  }
  // One of its own jobs opens.
  {
    const page = await open(`/job?id=${encodeURIComponent(own[0].job)}&token=${TENANT}`);
    await page.waitForFunction((j) => document.getElementById("job-id").textContent === j, own[0].job, { timeout: 20000 })
      .then(() => console.log(`ok the customer's job ${own[0].job} opens`), () => fail(`the customer's job ${own[0].job} does not open`));
    const leaked = leaks(await page.textContent("body"));
    if (leaked.length) fail(`the customer's job page shows: ${leaked.join(", ")}`);
    await page.close();
  }

  // Operator pages: said to be out of reach, with no other tenant on them.
  for (const path of ["/", "/gpus", "/cooling", "/alerts", "/models"]) {
    const page = await open(`${path}?token=${TENANT}`);
    await page.waitForFunction(() => /not available to this token/i.test(document.body.textContent), null, { timeout: 20000 })
      .then(() => console.log(`ok ${path} says it is not available to the customer's token`), () => fail(`${path} does not say it is not available to this token`));
    const leaked = leaks(await page.textContent("body"));
    if (leaked.length) fail(`${path} shows the customer: ${leaked.slice(0, 5).join(", ")}`);
    await page.close();
  }
  for (const e of errors) fail("console: " + e);
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (browser) await browser.close();
  demo.kill("SIGTERM");
}
