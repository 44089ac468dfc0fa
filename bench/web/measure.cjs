// Drives the `reel web` UI in Debian's headless chromium over a large
// session and prints what it timed as JSON on stdout (bench/web/run).
//   NODE_PATH=<deps>/node_modules node measure.cjs CONFIG_JSON
// CONFIG_JSON: {url, runs, filter, scroll_pages, scroll_last, scroll_all, total}
// Every time is from the action (navigation, key, slider, submit) until
// the row it asked for is in the DOM, measured in the page with
// performance.now() (first rows: from the navigation's start).
"use strict";
const { chromium } = require("playwright-core");

const T = 30000;

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"],
  });
  const out = { runs: [], errors: [], failed: [] };
  try {
    for (let run = 0; run < cfg.runs; run++) {
      // a new context each run: no cache, no cookie, as a first visit
      const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
      const page = await ctx.newPage();
      page.setDefaultTimeout(T);
      page.on("pageerror", (e) => out.errors.push(String(e)));
      page.on("response", (r) => { if (r.status() >= 400) out.failed.push(r.status() + " " + r.url()); });
      await page.addInitScript(() => {
        window.__first = null;
        new MutationObserver((m, o) => {
          if (document.querySelector(".row[data-id]")) { window.__first = performance.now(); o.disconnect(); }
        }).observe(document, { childList: true, subtree: true });
      });
      const r = {};
      await page.goto(cfg.url);
      await page.waitForSelector(".row[data-id]");
      r.first_rows_ms = await page.evaluate(() => window.__first);
      await page.waitForFunction(() => /flows/.test(document.getElementById("count").textContent));
      r.count_text = await page.textContent("#count");

      // until a row with id (or any row matching pred) is drawn, from t0 in the page
      const until = (fn, arg) => page.evaluate(async ([src, a]) => {
        const f = new Function("a", src);
        const t0 = performance.now();
        return await new Promise((res, rej) => {
          const tick = () => {
            if (f(a)) res(performance.now() - t0);
            else if (performance.now() - t0 > 30000) rej(new Error("timed out"));
            else requestAnimationFrame(tick);
          };
          tick();
        });
      }, [fn, arg]);
      const rowShown = "return !!document.querySelector('.row[data-id=\"' + a + '\"]');";
      const keyThen = async (key, id) => {
        const p = until(rowShown, id);
        await page.keyboard.press(key);
        return p;
      };
      await page.focus("#table");
      r.end_ms = await keyThen("End", String(cfg.total));
      r.home_ms = await keyThen("Home", "1");

      // the position slider let go at the middle
      r.slider_ms = await page.evaluate(async (total) => {
        const pos = document.getElementById("position");
        const t0 = performance.now();
        pos.value = 500;
        pos.dispatchEvent(new Event("input"));
        pos.dispatchEvent(new Event("change"));
        return await new Promise((res, rej) => {
          const tick = () => {
            const rows = [...document.querySelectorAll(".row[data-id]")].map((x) => Number(x.dataset.id));
            if (rows.some((i) => Math.abs(i - total / 2) < 200)) res(performance.now() - t0);
            else if (performance.now() - t0 > 30000) rej(new Error("slider: timed out"));
            else requestAnimationFrame(tick);
          };
          tick();
        });
      }, cfg.total);
      r.slider_rows = await page.$$eval(".row[data-id]", (rs) => [rs[0].dataset.id, rs[rs.length - 1].dataset.id]);

      // go to a flow by number
      const target = Math.floor(cfg.total * 0.73);
      await page.fill("#goto", String(target));
      {
        const p = until("const r = document.querySelector('.row[data-id=\"' + a + '\"]'); return !!r && r.classList.contains('selected');", String(target));
        await page.press("#goto", "Enter");
        r.goto_ms = await p;
      }
      await page.waitForSelector("#detail h2");
      r.goto_detail = await page.textContent("#detail h2");
      await page.keyboard.press("Escape");

      // a filter, until its first row
      await page.fill("#filter", cfg.filter);
      {
        const p = until("const r = document.querySelector('.row[data-id]'); return !!r && Number(r.dataset.id) % 10 === 7 && !document.querySelector('.row[data-id=\"1\"]');", null);
        await page.press("#filter", "Enter");
        r.filter_ms = await p;
      }

      // scrolling down the filter's rows to the last (scroll_last) or
      // scroll_pages pages: each page fetched as the window's edge nears
      if (run === 0 && cfg.scroll_pages > 0) {
        if (cfg.scroll_all) {  // the whole list, not the filter's rows
          await page.fill("#filter", "");
          await page.press("#filter", "Enter");
          await page.waitForSelector('.row[data-id="1"]');
        }
        const heap = () => page.evaluate(() => performance.memory.usedJSHeapSize);
        const nodes = () => page.evaluate(() => document.getElementsByTagName("*").length);
        r.heap_start = await heap();
        r.nodes_start = await nodes();
        const t0 = Date.now();
        let last = 0;
        r.heap_samples = [];
        let k = 0;
        for (; k < cfg.scroll_pages && last < cfg.scroll_last; k++) {
          const before = await page.evaluate(() => {
            const vp = document.getElementById("viewport");
            vp.scrollTop = vp.scrollHeight;
            const rs = document.querySelectorAll(".row[data-id]");
            return Number(rs[rs.length - 1].dataset.id);
          });
          await page.waitForFunction((b) => {
            const rs = document.querySelectorAll(".row[data-id]");
            const vp = document.getElementById("viewport");
            vp.scrollTop = vp.scrollHeight;
            return rs.length && Number(rs[rs.length - 1].dataset.id) > b;
          }, before, { polling: 10 });
          last = await page.evaluate(() => {
            const rs = document.querySelectorAll(".row[data-id]");
            return Number(rs[rs.length - 1].dataset.id);
          });
          if (k % 100 === 99) r.heap_samples.push([k + 1, await heap()]);
        }
        r.scroll_s = (Date.now() - t0) / 1000;
        r.scroll_pages = k;
        r.scroll_last_id = last;
        await page.evaluate(() => window.gc && window.gc());
        r.heap_end = await heap();
        r.nodes_end = await nodes();
        r.spacer_px = await page.evaluate(() => parseInt(document.getElementById("spacer").style.height, 10));
      }
      await page.fill("#filter", "");
      await page.press("#filter", "Enter");
      await page.waitForSelector('.row[data-id="1"]');
      out.runs.push(r);
      process.stderr.write("run " + (run + 1) + ": " + JSON.stringify(r) + "\n");
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + "\n"); process.exit(1); });
