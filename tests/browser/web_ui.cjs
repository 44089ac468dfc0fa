// Drives the `reel web` UI in Debian's headless chromium for
// test_browser_web.py and prints what it saw as JSON on stdout.
//   NODE_PATH=<deps>/node_modules node web_ui.cjs CONFIG_JSON
// CONFIG_JSON: {url, session, proxy, live_url, out_dir, ids: {post, ws, error, image}}.
// playwright-core drives /usr/bin/chromium; it never downloads a browser.
"use strict";
const { chromium } = require("playwright-core");
const { execFile } = require("child_process");
const path = require("path");

const T = 10000;

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const res = { steps: [], empty: [] };
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  const errors = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(T);
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push("console: " + m.text());
    });
    res.failed = [];
    // every URL the page asks for: none but the printed one may hold the token
    res.urls = [];
    page.on("request", (r) => res.urls.push(r.url()));
    page.on("download", (d) => res.urls.push(d.url()));
    page.on("response", (r) => { if (r.status() >= 400) res.failed.push(r.status() + " " + r.url()); });
    const step = (s) => { res.steps.push(s); process.stderr.write("step: " + s + "\n"); };
    // a view renders empty: record it (the test fails on it)
    const notEmpty = async (name, sel) => {
      const n = await page.evaluate((s) => {
        const e = document.querySelector(s);
        return e && !e.hidden ? e.innerText.trim().length : 0;
      }, sel);
      if (n < 20) res.empty.push(name);
    };

    step("open");
    await page.goto(cfg.url);
    res.cookie_url = page.url();
    // the token is the tab's (sessionStorage, this origin's alone), never a
    // cookie, which the browser would send to every server on the host
    res.cookies = (await ctx.cookies()).map((c) => c.name + "=" + c.value);
    res.stored_token = await page.evaluate(() => sessionStorage.getItem("reel_token"));
    await page.waitForSelector(".row[data-id]", { timeout: T });
    res.rows = await page.$$eval(".row[data-id]", (rs) => rs.map((r) => r.innerText));
    res.count_text = await page.textContent("#count");
    await notEmpty("flows", "#view-flows");
    await page.screenshot({ path: path.join(cfg.out_dir, "web-list.png") });

    step("filter");
    await page.keyboard.press("/");
    res.filter_focused = await page.evaluate(() => document.activeElement.id === "filter");
    await page.fill("#filter", "~m POST");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => {
      const rs = document.querySelectorAll(".row[data-id]");
      return rs.length === 1 && rs[0].innerText.includes("POST");
    }, null, { timeout: T });
    res.filtered = await page.$$eval(".row[data-id]", (rs) => rs.map((r) => r.dataset.id));
    await page.fill("#filter", "~m POST & (");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#filter-error:not([hidden])", { timeout: T });
    res.filter_error = await page.textContent("#filter-error");
    res.filter_caret = await page.$$eval("#filter-error .caret", (c) => c.map((x) => x.textContent));
    // no rows because of the error: no count either (it said "0 flows")
    res.filter_error_count = await page.textContent("#count");
    // the API's column counts UTF-8 bytes: the caret and the selection are
    // on the character there, not one right of it per 2-byte "é"
    await page.fill("#filter", "~u café ~c x");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /~c expects/.test(document.getElementById("filter-error").textContent), null, { timeout: T });
    res.utf8_caret = await page.textContent("#filter-error .caret");
    res.utf8_selection = await page.$eval("#filter", (f) => [f.selectionStart, f.selectionEnd]);
    await page.fill("#filter", "");
    await page.keyboard.press("Enter");
    await page.waitForFunction((n) => document.querySelectorAll(".row[data-id]").length >= n,
                                res.rows.length, { timeout: T });

    step("keyboard");
    await page.focus("#table");
    await page.keyboard.press("j");
    await page.keyboard.press("j");
    await page.keyboard.press("k");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => location.hash.endsWith("/flow/1"), null, { timeout: T });
    await page.waitForSelector("#detail h2", { timeout: T });
    res.keyboard_detail = await page.textContent("#detail h2");

    step("http flow");
    await page.click(`.row[data-id="${cfg.ids.post}"]`);
    await page.waitForFunction((id) => {
      const h = document.querySelector("#detail h2");
      return h && h.textContent === "Flow " + id && document.querySelectorAll("#detail pre.code").length >= 2;
    }, cfg.ids.post, { timeout: T });
    res.http_detail = await page.innerText("#detail");
    await notEmpty("detail", "#detail");
    await page.screenshot({ path: path.join(cfg.out_dir, "web-detail.png") });

    step("diff");
    await page.fill("#diff-with", "1");
    await page.press("#diff-with", "Enter");
    await page.waitForSelector("pre.diff span.add", { timeout: T });
    res.diff = await page.textContent("pre.diff");

    step("annotate");
    await page.fill("#note-input", "browser note");
    await page.click("text=Annotate");
    await page.waitForSelector(".note-text:has-text('browser note')", { timeout: T });
    step("tag");
    await page.fill("#tag-input", "btag");
    await page.press("#tag-input", "Enter");
    await page.waitForSelector(".tag:has-text('btag')", { timeout: T });
    step("mark");
    await page.click("text=☆ Mark");
    await page.waitForSelector("text=★ Unmark", { timeout: T });

    step("websocket flow");
    await page.evaluate((id) => { location.hash = location.hash.replace(/\/flow\/\d+$/, "") + "/flow/" + id; }, cfg.ids.ws);
    await page.waitForFunction(() => document.querySelectorAll("ol.conversation li").length >= 2, null, { timeout: T });
    res.ws_messages = await page.$$eval("ol.conversation li", (ls) => ls.map((l) => l.className + ": " + l.querySelector("pre").textContent));
    await notEmpty("websocket", "#detail");
    await page.screenshot({ path: path.join(cfg.out_dir, "web-websocket.png") });

    step("error flow");
    await page.evaluate((id) => { location.hash = location.hash.replace(/\/flow\/\d+$/, "") + "/flow/" + id; }, cfg.ids.error);
    await page.waitForSelector("#detail .error[role=alert]", { timeout: T });
    res.error_text = await page.textContent("#detail .error[role=alert]");

    step("https flow");
    await page.evaluate((id) => { location.hash = location.hash.replace(/\/flow\/\d+$/, "") + "/flow/" + id; }, cfg.ids.https);
    await page.waitForSelector('section[aria-label="Client TLS"] dl', { timeout: T });
    res.client_tls = (await page.textContent('section[aria-label="Client TLS"] dl')).trim();

    step("image body");
    // an <img> and a download cannot send the header: their URLs carry a
    // ticket, asked for just before, never the token
    await page.evaluate((id) => { location.hash = location.hash.replace(/\/flow\/\d+$/, "") + "/flow/" + id; }, cfg.ids.image);
    await page.waitForFunction(() => {
      const i = document.querySelector('section[aria-label="response"] img.img');
      return i && i.complete && i.naturalWidth > 0;
    }, null, { timeout: T });
    res.image_size = await page.$eval('section[aria-label="response"] img.img', (i) => [i.naturalWidth, i.naturalHeight]);
    step("download");
    const fs = require("fs");
    const fetchDownload = async (sel) => {
      const [d] = await Promise.all([page.waitForEvent("download", { timeout: T }), page.click(sel)]);
      const f = await d.path();
      return f ? fs.readFileSync(f) : null;
    };
    const body = await fetchDownload('section[aria-label="response"] a:text-is("Download")');
    res.download_len = body ? body.length : -1;
    const har = await fetchDownload('#detail a:text-is("HAR")');
    res.har_entries = har ? JSON.parse(har.toString()).log.entries.length : -1;
    step("reload");
    // a reload has no ?token= in the address: the tab's copy serves
    await page.reload();
    await page.waitForFunction((id) => {
      const h = document.querySelector("#detail h2");
      return h && h.textContent === "Flow " + id;
    }, cfg.ids.image, { timeout: T });
    await page.waitForSelector('section[aria-label="response"] img.img', { timeout: T });
    res.reloaded_rows = await page.$$eval(".row[data-id]", (rs) => rs.length);

    step("config");
    await page.click("#nav-config");
    await page.waitForSelector("#cfg-body_limit", { timeout: T });
    await notEmpty("config", "#view-config");
    await page.fill("#cfg-body_limit", "lots");
    await page.press("#cfg-body_limit", "Enter");
    await page.waitForFunction(() => document.getElementById("cfg-err-body_limit").textContent.length > 0, null, { timeout: T });
    res.config_error = await page.textContent("#cfg-err-body_limit");
    await page.fill("#cfg-body_limit", "3m");
    await page.press("#cfg-body_limit", "Enter");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("body_limit ="), null, { timeout: T });
    res.config_status = await page.textContent("#status");
    // the port the proxy got for --listen 127.0.0.1:0, at layer cli: an
    // overlay value is stored, and the page says the proxy keeps its own
    res.listen_layer = await page.$eval("#cfg-listen_port", (i) => i.closest("tr").querySelector("td.layer").textContent);
    res.listen_value = await page.inputValue("#cfg-listen_port");
    await page.fill("#cfg-listen_port", "9999");
    await page.press("#cfg-listen_port", "Enter");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("listen_port ="), null, { timeout: T });
    res.listen_status = await page.textContent("#status");
    res.listen_after = await page.inputValue("#cfg-listen_port");
    // Unset falls back to the user file's value (config.yaml has
    // upstream_timeout: 61), which the row then shows with its layer
    await page.fill("#cfg-upstream_timeout", "70");
    await page.press("#cfg-upstream_timeout", "Enter");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("upstream_timeout = 70"), null, { timeout: T });
    const utRow = (sel) => page.$eval("#cfg-upstream_timeout", (i, s) => i.closest("tr").querySelector(s).textContent, sel);
    res.set_layer = await utRow("td.layer");
    await page.$eval("#cfg-upstream_timeout", (i) => i.closest("tr").querySelector("button:not([type=submit])").click());
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("upstream_timeout unset"), null, { timeout: T });
    res.unset_value = await page.inputValue("#cfg-upstream_timeout");
    res.unset_layer = await utRow("td.layer");
    // an option the proxy reads only when it starts says so
    await page.fill("#cfg-zstd_level", "3");
    await page.press("#cfg-zstd_level", "Enter");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("zstd_level = 3"), null, { timeout: T });
    res.zstd_status = await page.textContent("#status");

    step("sessions");
    await page.click("#nav-sessions");
    await page.waitForSelector("#sessions-table tbody tr", { timeout: T });
    res.sessions = await page.$$eval("#sessions-table tbody tr", (rs) => rs.map((r) => r.innerText));
    await notEmpty("sessions", "#view-sessions");

    step("live");
    await page.click("#sessions-table a:has-text('b1')");
    await page.waitForSelector(".row[data-id]", { timeout: T });
    await page.check("#follow");
    const before = await page.$$eval(".row[data-id]", (rs) => rs.length);
    const t0 = Date.now();
    await new Promise((ok, ko) => execFile("curl", ["-sS", "--max-time", "10", "-x", cfg.proxy, cfg.live_url],
      (e) => (e ? ko(e) : ok())));
    await page.waitForFunction((u) => [...document.querySelectorAll(".row[data-id]")]
      .some((r) => r.innerText.includes(u)), "live=1", { timeout: T });
    res.live_ms = Date.now() - t0;
    res.live_rows = await page.$$eval(".row[data-id]", (rs) => rs.length);
    res.live_before = before;

    step("live replay");
    // Replay in the session this process records: the new flow goes into
    // it, linked to the one it replays, and shows up in the live list
    const liveId = await page.$$eval(".row[data-id]", (rs) =>
      rs.filter((r) => r.innerText.includes("live=1")).map((r) => r.dataset.id)[0]);
    res.live_id = Number(liveId);
    await page.click(`.row[data-id="${liveId}"]`);
    await page.waitForFunction((id) => {
      const h = document.querySelector("#detail h2");
      return h && h.textContent === "Flow " + id;
    }, liveId, { timeout: T });
    await page.click('#detail button:text-is("Replay")');
    await page.waitForSelector("#detail .replay-result a", { timeout: T });
    res.replay_result = await page.textContent("#detail .replay-result");
    const m = res.replay_result.match(/flow (\d+)/);
    res.replay_id = m ? Number(m[1]) : null;
    await page.waitForSelector(`.row[data-id="${res.replay_id}"]`, { timeout: T });
    res.replay_row = await page.innerText(`.row[data-id="${res.replay_id}"]`);

    step("old cookie");
    // a browser that still holds the cookie an older reel set: it opens
    // nothing, and the page load expires it
    const ctx2 = await browser.newContext();
    const base = new URL(cfg.url);
    await ctx2.addCookies([{ name: "reel_token", value: new URLSearchParams(base.search).get("token"),
      url: base.origin + "/", httpOnly: true, sameSite: "Strict" }]);
    const p2 = await ctx2.newPage();
    const apiStatus = [];
    p2.on("response", (r) => { if (r.url().includes("/api/")) apiStatus.push(r.status()); });
    await p2.goto(base.origin + "/");
    await p2.waitForFunction(() => /access token/.test(document.getElementById("status").textContent), null, { timeout: T });
    res.cookie_status = await p2.textContent("#status");
    res.cookie_rows = await p2.$$eval(".row[data-id]", (rs) => rs.length);
    res.cookie_api = apiStatus;
    res.cookies_after = (await ctx2.cookies()).map((c) => c.name);
    await ctx2.close();
  } finally {
    res.errors = errors;
    process.stdout.write(JSON.stringify(res) + "\n");
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
