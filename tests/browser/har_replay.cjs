// Loads a page from a HAR file alone in Debian's headless chromium, with
// Playwright's routeFromHAR (notFound: abort, so nothing may come from the
// network), and prints the page's window.__result as JSON, or
// {"error": ...}. Playwright reads the HAR strictly: every entry it matches
// needs its request, response, content (text or base64) and headers.
//   NODE_PATH=<deps>/node_modules node har_replay.cjs HAR URL
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [har, url] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const ctx = await browser.newContext();
    await ctx.routeFromHAR(har, { notFound: "abort" });
    const page = await ctx.newPage();
    const failed = [];
    page.on("requestfailed", (r) => failed.push(r.url()));
    page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
    await page.goto(url);
    await page.waitForFunction(() => window.__done === true, null, { timeout: 20000 });
    const res = await page.evaluate(() => window.__result);
    res.img_width = await page.evaluate(() => document.getElementById("img").naturalWidth);
    res.failed = failed.filter((u) => !u.endsWith("/favicon.ico"));
    process.stdout.write(JSON.stringify(res) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
