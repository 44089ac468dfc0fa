// Loads one page in Debian's headless chromium through a proxy and prints
// the page's window.__result as JSON once window.__done is set.
//   NODE_PATH=<deps>/node_modules node drive.cjs URL PROXY [TIMEOUT_MS]
// playwright-core drives /usr/bin/chromium; it never downloads a browser.
// Chromium reads trusted CAs from $HOME/.pki/nssdb (the caller's HOME).
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [url, proxy, timeout] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Chromium sends loopback addresses past any proxy unless told not to.
    args: ["--proxy-server=" + proxy, "--proxy-bypass-list=<-loopback>", "--no-sandbox",
           "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => process.stderr.write("page: " + m.text() + "\n"));
    page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
    await page.goto(url);
    await page.waitForFunction(() => window.__done === true, null,
                               { timeout: Number(timeout || 30000) });
    process.stdout.write(JSON.stringify(await page.evaluate(() => window.__result)) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
