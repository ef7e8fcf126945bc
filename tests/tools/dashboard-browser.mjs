// Drives Debian's chromium (headless, through playwright-core) against a Cairn node's
// dashboard for tests/e2e/dashboard.rs, and reports what the page shows, read from its DOM.
//
//   node dashboard-browser.mjs URL TOKEN|- SCREENSHOT_DIR
//
// Speaks lines of JSON on stdout, one per step, and waits for a line on stdin between steps
// (the test changes the node's state in between):
//   1. {"step":"loaded", ...}   the page after its first refresh; then waits for "next"
//   2. {"step":"refreshed", ...} the page once it has shown new npm requests by itself
//   3. {"step":"searched", ...} the search box's answers, and what a hostile query did
//   4. {"step":"narrow", ...}   the page on a phone-width screen
// A failure is a line {"error": "..."} and exit status 1.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [url, token, shots] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const waitForTest = async () => {
  const next = await lines.next();
  if (next.done) throw new Error("the test closed stdin");
};

// What the page shows, as the DOM holds it (data-value: exact numbers behind the text).
function read() {
  const value = (sel) => {
    const e = document.querySelector(sel);
    return e ? Number(e.dataset.value) : null;
  };
  const rowsOf = (body) =>
    [...document.querySelectorAll(`#${body} tr`)].filter((r) => !r.classList.contains("empty"));
  const traffic = {};
  for (const row of rowsOf("traffic-rows")) {
    const e = row.dataset.ecosystem;
    traffic[e] = {};
    for (const td of row.querySelectorAll("td[data-field]")) {
      traffic[e][td.dataset.field] = td.dataset.value === undefined ? td.textContent : Number(td.dataset.value);
    }
  }
  const upstreams = rowsOf("upstream-rows").map((row) => ({
    ecosystem: row.dataset.ecosystem,
    text: [...row.cells].map((c) => c.textContent),
    requests: Number(row.querySelector("[data-field=requests]")?.dataset.value),
  }));
  const store = rowsOf("store-rows").map((row) => ({
    ecosystem: row.dataset.ecosystem,
    held: Number(row.querySelector("[data-field=held]").dataset.value),
    files: Number(row.querySelector("[data-field=files]").dataset.value),
  }));
  const refusals = rowsOf("refusal-rows").map((row) => ({
    kind: row.dataset.kind,
    text: [...row.cells].map((c) => c.textContent),
  }));
  return {
    refreshes: Number(document.body.dataset.refreshes),
    problem: document.getElementById("problem").hidden ? null : document.getElementById("problem").textContent,
    node: document.getElementById("node").textContent,
    spared: value("#spared"),
    traffic,
    upstreams,
    swarm: document.getElementById("swarm-said").textContent,
    store_said: document.getElementById("store-said").textContent,
    held: Number(document.getElementById("store-said").dataset.held),
    store,
    refusals,
  };
}

async function search(page, query) {
  await page.fill("#q", query);
  const before = await page.textContent("#search-said");
  await page.click("#search-form button");
  await page.waitForFunction(
    (before) => {
      const said = document.getElementById("search-said").textContent;
      return said !== before && said !== "Searching…";
    },
    before,
    { timeout: 15000 },
  );
  return page.evaluate(() => ({
    said: document.getElementById("search-said").textContent,
    files: [...document.querySelectorAll("#search-rows tr")].map((r) => ({
      key: r.dataset.key,
      root: r.dataset.root,
      link: r.querySelector("a")?.getAttribute("href"),
      text: [...r.cells].map((c) => c.textContent),
    })),
  }));
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const context = await browser.newContext({
    viewport: { width: 1280, height: 1000 },
    ...(token === "-" ? {} : { httpCredentials: { username: "dashboard", password: token } }),
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null, { timeout: 20000 });
  const loaded = await page.evaluate(read);
  await page.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });
  say({ step: "loaded", ...loaded, console_errors: consoleErrors });

  // The test makes more requests; the page must show them without being reloaded.
  await waitForTest();
  const requestsBefore = loaded.traffic.npm?.requests ?? 0;
  await page.waitForFunction(
    (before) => {
      const td = document.querySelector('#traffic-rows tr[data-ecosystem="npm"] td[data-field="requests"]');
      return td && Number(td.dataset.value) > before;
    },
    requestsBefore,
    { timeout: 20000 },
  );
  // One more refresh, so that every panel has caught up with the same state.
  const seen = await page.evaluate(() => Number(document.body.dataset.refreshes));
  await page.waitForFunction((seen) => Number(document.body.dataset.refreshes) > seen, seen, { timeout: 20000 });
  say({ step: "refreshed", ...(await page.evaluate(read)), navigations: await page.evaluate(() => performance.getEntriesByType("navigation").length) });

  await waitForTest();
  const found = await search(page, "dash-lib@1.0.0");
  const missing = await search(page, "no-such-package@9.9.9");
  const hostile = await search(page, `<img src=x onerror="document.title='owned'">`);
  const injected = await page.evaluate(() => ({
    title: document.title,
    images: document.querySelectorAll("#search img, #search-said img").length,
  }));
  await page.screenshot({ path: `${shots}/dashboard-search.png`, fullPage: true });
  say({ step: "searched", found, missing, hostile, injected });

  await waitForTest();
  await page.setViewportSize({ width: 360, height: 800 });
  await page.waitForTimeout(300);
  const narrow = await page.evaluate(() => ({
    page_width: document.documentElement.scrollWidth,
    view_width: window.innerWidth,
  }));
  await page.screenshot({ path: `${shots}/dashboard-phone.png`, fullPage: true });
  say({ step: "narrow", ...narrow, console_errors: consoleErrors });
  await browser.close();
  process.exit(0);
} catch (e) {
  say({ error: String(e && e.stack ? e.stack : e) });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
