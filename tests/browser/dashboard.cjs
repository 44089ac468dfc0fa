// Opens bench/dashboard's page (a file:// URL) in Debian's headless chromium
// with the network cut off, saves a full-page screenshot and prints what the
// page shows as JSON: every chart's key, its drawn size, its data points and
// line, the rows of the latest-run table and the page's own data block.
//   NODE_PATH=<deps>/node_modules node dashboard.cjs FILE_URL SCREENSHOT.png
// playwright-core drives /usr/bin/chromium; it never downloads a browser.
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [url, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const requests = [];
    // the page must need nothing but itself: any other request is recorded and refused
    await context.route("**/*", (route) => {
      const u = route.request().url();
      if (u === url) return route.continue();
      requests.push(u);
      return route.abort();
    });
    const page = await context.newPage();
    page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
    await page.goto(url);
    const result = await page.evaluate(() => {
      const charts = [...document.querySelectorAll("figure.chart")].map((fig) => {
        const svg = fig.querySelector("svg");
        const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
        const line = fig.querySelector("polyline.series");
        const pts = line ? line.getAttribute("points").trim().split(/\s+/).filter(Boolean) : [];
        const circles = [...fig.querySelectorAll("circle.point")].map((c) => {
          const b = c.getBoundingClientRect();
          return { x: b.x, y: b.y, w: b.width, h: b.height };
        });
        return { key: fig.dataset.key, points: Number(fig.dataset.points),
                 width: box.width, height: box.height, line: pts.length, circles };
      });
      const rows = document.querySelectorAll("#latest tbody tr").length;
      const data = JSON.parse(document.getElementById("dashboard-data").textContent);
      return { charts, rows, data, title: document.title };
    });
    result.requests = requests;
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(JSON.stringify(result) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
