// The dashboard in a real browser: Debian's chromium driven by playwright-core (installed under
// target/playwright by scripts/test.sh). Run by tests/dashboard.rs against a real `claw serve`
// (it sets up the workflows and users); exits non-zero on the first failed check.
//
//   BASE=http://127.0.0.1:PORT USER=alice PASS=... SHOTS=target/dashboard-e2e \
//   CHROMIUM=/usr/bin/chromium node scripts/dashboard-e2e.cjs
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

const BASE = process.env.BASE;
const USER = process.env.USER_NAME;
const PASS = process.env.PASS;
const SHOTS = process.env.SHOTS;
const EVIL_RUN = process.env.EVIL_RUN;

function check(ok, what) {
  if (!ok) {
    throw new Error("check failed: " + what);
  }
  console.log("ok - " + what);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

async function login(page, user, pass) {
  await page.goto(BASE + "/login");
  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", pass);
  await page.click("button[type=submit]");
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("dialog", (d) => { problems.push("a dialog opened: " + d.message()); d.dismiss(); });
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) {
      problems.push("console error: " + m.text());
    }
  });

  // No session: the login page.
  await page.goto(BASE + "/runs");
  check(page.url().endsWith("/login"), "without a session /runs leads to the login page");
  await shot(page, "01-login");

  // Log in.
  await login(page, USER, PASS);
  await page.waitForURL(BASE + "/");
  check((await page.textContent("header .user")) === USER, "logged in as " + USER);
  await shot(page, "02-overview");

  // Start a workflow from its form with a param; its log arrives live; approve its gate.
  await page.goto(BASE + "/workflows/hello");
  await page.fill("input[name='param.who']", "browser");
  await shot(page, "03-workflow-form");
  await page.click("#start");
  await page.waitForURL(/\/runs\/[0-9a-z]+$/);
  const runUrl = page.url();
  await page.waitForFunction(() => {
    const pre = document.querySelector("pre.log[data-stream]");
    return pre && pre.textContent.includes("tick-1");
  }, null, { timeout: 20000 });
  check(true, "the running step's log arrives live (SSE)");
  await shot(page, "04-live-log");
  await page.waitForSelector("form.decide", { timeout: 30000 });
  check((await page.textContent("section.gate .message")).includes("Ship browser?"), "the gate asks its question");
  await page.fill("input[name='input.ticket']", "T-42");
  await shot(page, "05-gate");
  await page.click("form.decide button[value=approve]");
  await page.waitForFunction(() => {
    const s = document.querySelector("#run-status");
    return s && s.textContent.trim() === "succeeded";
  }, null, { timeout: 30000 });
  check((await page.textContent("body")).includes("after T-42"), "approved with its input, the run went on");
  await shot(page, "06-succeeded");

  // Cancel a running run.
  await page.goto(BASE + "/workflows/slow");
  await page.click("#start");
  await page.waitForURL(/\/runs\/[0-9a-z]+$/);
  await page.waitForSelector("#cancel");
  await page.click("#cancel");
  await page.waitForFunction(() => {
    const s = document.querySelector("#run-status");
    return s && s.textContent.trim() === "cancelled";
  }, null, { timeout: 30000 });
  check(true, "a running run is cancelled from its page");
  await shot(page, "07-cancelled");

  // Rerun from the failed step: the step before keeps its result.
  await page.goto(BASE + "/workflows/flaky");
  await page.click("#start");
  await page.waitForURL(/\/runs\/[0-9a-z]+$/);
  const failedUrl = page.url();
  await page.waitForFunction(() => {
    const s = document.querySelector("#run-status");
    return s && s.textContent.trim() === "failed";
  }, null, { timeout: 30000 });
  await page.selectOption("#rerun-from", "check");
  await page.click("#rerun");
  await page.waitForURL((u) => /\/runs\/[0-9a-z]+$/.test(u.toString()) && u.toString() !== failedUrl);
  await page.waitForFunction(() => {
    const s = document.querySelector("#run-status");
    return s && s.textContent.trim() === "succeeded";
  }, null, { timeout: 30000 });
  check((await page.textContent("body")).includes("kept from run"), "rerun from the failed step kept the step before it");
  await shot(page, "07b-rerun");

  // Refusals: a form posted without its CSRF token, and one from another origin.
  const before = await (await page.request.get(BASE + "/api/v1/runs")).json();
  const noToken = await page.evaluate(async (base) => {
    const r = await fetch(base + "/workflows/hello/run", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "param.who=csrf",
    });
    return r.status;
  }, BASE);
  check(noToken === 403, "a form posted without its CSRF token is refused (" + noToken + ")");
  const csrf = await page.getAttribute("input[name=csrf]", "value");
  const cross = await page.request.post(BASE + "/workflows/hello/run", {
    headers: { Origin: "http://evil.example", "Content-Type": "application/x-www-form-urlencoded" },
    data: "csrf=" + csrf + "&param.who=cross",
  });
  check(cross.status() === 403, "a form from another origin is refused (" + cross.status() + ")");
  const after = await (await page.request.get(BASE + "/api/v1/runs")).json();
  check(after.runs.length === before.runs.length, "nothing was started by the refused requests");

  // Hostile content is inert: a run whose workflow, params, log and gate hold markup.
  await page.goto(BASE + "/runs/" + EVIL_RUN);
  await page.goto(BASE + "/workflows/evil");
  await page.goto(BASE + "/runs/" + EVIL_RUN);
  await page.waitForTimeout(500);
  const pwned = await page.evaluate(() => window.__pwned);
  check(pwned === undefined, "no hostile script ran");
  check((await page.textContent("body")).includes("<script>"), "hostile markup shows as text");
  await shot(page, "08-hostile");

  // Cron: disable and enable a job from its row, run it now and see its status.
  await page.goto(BASE + "/cron");
  check((await page.textContent("table#jobs")).includes("backup"), "the cron page lists the job");
  await page.click("table#jobs button[data-action=disable]");
  await page.waitForURL(BASE + "/cron");
  check((await page.textContent("table#jobs tbody tr")).includes("false"), "the job is disabled from its row");
  await page.click("table#jobs button[data-action=enable]");
  await page.waitForURL(BASE + "/cron");
  check((await page.textContent("table#jobs tbody tr")).includes("true"), "the job is enabled again");
  await page.click("table#jobs button[data-action='run now']");
  await page.waitForURL(BASE + "/cron");
  let ran = false;
  for (let i = 0; i < 60 && !ran; i++) {
    await page.goto(BASE + "/cron");
    ran = (await page.textContent("table#jobs tbody tr")).includes("ok");
    if (!ran) { await page.waitForTimeout(500); }
  }
  check(ran, "the job ran now and its status shows");
  await shot(page, "10-cron");
  await page.goto(BASE + "/webhooks");
  check((await page.textContent("table#hooks")).includes("deploy"), "the webhooks page lists the hook");
  await shot(page, "11-webhooks");
  await page.goto(BASE + "/watchers");
  check((await page.textContent("h1")) === "Watchers", "the watchers page opens");
  await shot(page, "12-watchers");

  // Log out: the session is gone.
  await page.click("#logout");
  await page.waitForURL(BASE + "/login");
  await page.goto(BASE + runUrl.slice(BASE.length));
  check(page.url().endsWith("/login"), "after logging out, pages lead to the login page");

  // The 6th wrong password in a minute is throttled.
  const ctx2 = await browser.newContext();
  const p2 = await ctx2.newPage();
  for (let i = 0; i < 5; i++) {
    await login(p2, "mallory", "wrong-password-" + i);
    check((await p2.textContent("body")).includes("Wrong user name or password"), "wrong password " + (i + 1));
  }
  await login(p2, "mallory", "wrong-password-6");
  check((await p2.textContent("body")).includes("Too many failed logins"), "the 6th wrong password is throttled");
  await shot(p2, "09-throttled");

  check(problems.length === 0, "no dialog and no console error: " + JSON.stringify(problems));
  await browser.close();
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
