// End-to-end test of the Silt web console (/ui) in a real headless Chromium.
//
// Starts `silt dev` on 127.0.0.1 with a fresh data dir, sets data up through
// the /v1 HTTP API, then drives the console with playwright-core and checks
// what it shows: topics, the record browser (text and hex, live follow),
// consumer-group lag, a share group's totals, creating and deleting a topic
// through the dialogs, the agent's probe and the compactor's last round; and that the page logged no
// errors. See README.md next to this file for how to run it.
//
// Environment:
//   SILT_BIN              silt binary (default <repo>/target/debug/silt)
//   SILT_PLAYWRIGHT       node_modules directory holding playwright-core
//   SILT_CHROMIUM         Chromium binary (default /usr/bin/chromium)
//   SILT_REQUIRE_BROWSER  1: fail instead of skipping when the browser is missing
//   SILT_ARTIFACTS        screenshot root (default <repo>/artifacts); PNGs go to console/
"use strict";

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");

// ===========================================================================
// Harness
// ===========================================================================

const REPO = path.resolve(__dirname, "..", "..");
const SILT_BIN = process.env.SILT_BIN || path.join(REPO, "target", "debug", "silt");
const CHROMIUM = process.env.SILT_CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = path.join(process.env.SILT_ARTIFACTS || path.join(REPO, "artifacts"), "console");
const STEP_MS = 60_000; // per test; every wait inside is shorter
const WAIT_MS = 10_000; // default for eventually(): five console polls

/** playwright-core, or why it (or Chromium) is not usable here. */
function loadBrowser() {
  const missing = [];
  let playwright = null;
  const dir = process.env.SILT_PLAYWRIGHT;
  if (!dir) {
    missing.push("SILT_PLAYWRIGHT is not set (it names the node_modules directory holding playwright-core)");
  } else {
    try {
      playwright = require(path.join(dir, "playwright-core"));
    } catch (e) {
      missing.push(`playwright-core cannot be loaded from ${dir}: ${e.message.split("\n")[0]}`);
    }
  }
  if (!fs.existsSync(CHROMIUM)) missing.push(`Chromium not found at ${CHROMIUM} (set SILT_CHROMIUM)`);
  return { playwright, missing };
}

/** Retries `fn` until it returns without throwing; then returns its value. */
async function eventually(what, fn, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) {
        throw new Error(`after ${timeoutMs} ms, still not true: ${what}\n${e.message}`, { cause: e });
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

// One Silt and one browser page shared by all tests, in order.
const S = {
  proc: null, dataDir: null, base: null, stderrTail: "", exited: null, log: null,
  browser: null, page: null, problems: [], loads: 0,
};

/** Starts `silt dev`; resolves with its base URL from the first stdout line. */
async function startSilt() {
  if (!fs.existsSync(SILT_BIN)) {
    throw new Error(`silt binary not found at ${SILT_BIN}: build it (cargo build) or set SILT_BIN`);
  }
  S.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "silt-console-"));
  const args = ["dev", "--data-dir", S.dataDir, "--listen", "127.0.0.1:0", "--kafka-listen", "off",
    "--probe", "true", "--metrics-history-interval-ms", "1000"];
  S.proc = spawn(SILT_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  S.exited = new Promise((r) => S.proc.once("exit", (code, signal) => r({ code, signal })));
  // Drain stderr always (a full pipe would stall silt): keep a tail for
  // failure messages and the whole log as an artifact.
  S.log = fs.createWriteStream(path.join(ARTIFACTS, "silt.log"));
  S.proc.stderr.on("data", (b) => {
    S.log.write(b);
    S.stderrTail = (S.stderrTail + b.toString()).slice(-8000);
  });
  const lines = readline.createInterface({ input: S.proc.stdout });
  const first = new Promise((resolve, reject) => {
    lines.once("line", resolve);
    S.proc.once("error", reject);
    S.exited.then(({ code, signal }) => reject(new Error(`silt exited (code ${code}, signal ${signal}) before it listened`)));
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("silt printed no listening line within 30 s")), 30_000);
  });
  try {
    const line = await Promise.race([first, timeout]);
    const m = /^silt listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/.exec(line);
    if (!m) throw new Error(`unexpected first stdout line from silt: ${JSON.stringify(line)}`);
    S.base = m[1];
  } catch (e) {
    await new Promise((r) => setTimeout(r, 200)); // let the last stderr arrive
    throw new Error(`${e.message}\n--- silt stderr (tail) ---\n${S.stderrTail}`);
  } finally {
    clearTimeout(timer);
  }
  lines.on("line", () => {}); // keep draining stdout
}

/** SIGTERM, SIGKILL after 10 s; then removes the data dir. Never throws. */
async function stopSilt() {
  if (S.proc && S.proc.exitCode === null && S.proc.signalCode === null) {
    S.proc.kill("SIGTERM");
    let timer;
    const late = new Promise((r) => { timer = setTimeout(() => r("late"), 10_000); });
    if ((await Promise.race([S.exited, late])) === "late") {
      S.proc.kill("SIGKILL");
      await S.exited;
    }
    clearTimeout(timer);
  }
  if (S.log) S.log.end();
  if (S.dataDir) fs.rmSync(S.dataDir, { recursive: true, force: true });
  S.dataDir = null;
}

// Last resort if the runner dies before the after hook (e.g. uncaught error).
process.on("exit", () => {
  if (S.proc && S.proc.exitCode === null && S.proc.signalCode === null) S.proc.kill("SIGKILL");
  if (S.dataDir) fs.rmSync(S.dataDir, { recursive: true, force: true });
});

/** Calls the agent's /v1 API; asserts the status when `want` is given. */
async function api(method, p, body, want) {
  const res = await fetch(S.base + p, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (want && ![].concat(want).includes(res.status)) {
    throw new Error(`${method} ${p} answered ${res.status}, expected ${want}: ${text}`);
  }
  return { status: res.status, data };
}

const produce = (topic, partition, records) =>
  api("POST", `/v1/topics/${topic}/partitions/${partition}/records`, { records }, 200);

/** Goes to a console route (a hash change after the first load: no reload). */
async function open(route) {
  await S.page.goto(`${S.base}/ui#${route}`);
}

const byTestId = (id) => S.page.getByTestId(id);
const texts = (locator) => locator.allTextContents().then((a) => a.map((s) => s.trim()));

/** Marks the window; `assertNoReload` then proves no navigation happened. */
async function markWindow() {
  await S.page.evaluate(() => { window.__marker = 1; });
  return S.loads;
}
async function assertNoReload(loadsBefore) {
  assert.equal(await S.page.evaluate(() => window.__marker), 1, "the page was reloaded (window.__marker is gone)");
  assert.equal(S.loads, loadsBefore, "the page fired a load event (it was reloaded)");
}

async function assertNoBanner() {
  const shown = await S.page.locator("#error-banner").isVisible();
  assert.ok(!shown, `the error banner is shown: ${await byTestId("error").textContent()}`);
}

/** Full-page PNG into the artifacts dir; prints its path. */
async function screenshot(name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await S.page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/** Cells of a table row as trimmed texts. */
const rowCells = (row) => texts(row.locator("td"));

// ===========================================================================
// Checks
// ===========================================================================

const { playwright, missing } = loadBrowser();
const requireBrowser = process.env.SILT_REQUIRE_BROWSER === "1";

if (missing.length && requireBrowser) {
  test("silt web console (browser required)", () => {
    assert.fail(`SILT_REQUIRE_BROWSER=1 but the browser is missing: ${missing.join("; ")}`);
  });
} else if (missing.length) {
  const why = `browser missing: ${missing.join("; ")}`;
  console.log(`SKIPPED silt web console: ${why}`);
  test("silt web console", (t) => t.skip(why));
} else {
  describe("silt web console", () => {
    before(async () => {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await startSilt();
      console.log(`silt at ${S.base}`);

      // Data: two topics, records in one partition of each.
      await api("POST", "/v1/topics", { name: "orders", partitions: 2 }, 201);
      await api("POST", "/v1/topics", { name: "payments", partitions: 1 }, 201);
      await produce("orders", 0, [1, 2, 3, 4, 5].map((i) => ({
        key: `k${i}`, value: `order-${i}`, headers: [{ key: "h", value: `x${i}` }],
      })));
      await produce("payments", 0, [1, 2, 3].map((i) => ({ key: `p${i}`, value: `payment-${i}` })));

      S.browser = await playwright.chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
      const context = await S.browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
      // Only the agent on 127.0.0.1 may be reached.
      await context.route("**/*", (route) => {
        const u = new URL(route.request().url());
        return u.hostname === "127.0.0.1" ? route.continue() : route.abort();
      });
      S.page = await context.newPage();
      S.page.setDefaultTimeout(WAIT_MS);
      S.page.on("pageerror", (e) => S.problems.push(`pageerror: ${e.stack || e.message}`));
      S.page.on("console", (m) => {
        if (m.type() === "error") S.problems.push(`console.error: ${m.text()} (${m.location().url}:${m.location().lineNumber})`);
      });
      S.page.on("load", () => S.loads++);
    });

    after(async () => {
      if (S.browser) await S.browser.close().catch((e) => console.log(`closing the browser: ${e.message}`));
      await stopSilt();
    });

    test("1. topic list shows topics with partition counts and record totals", { timeout: STEP_MS }, async () => {
      await open("/topics");
      await byTestId("topics-table").waitFor();
      const row = (t) => S.page.locator(`[data-testid=topic-row][data-topic="${t}"]`);
      // Columns: Name, Partitions, Records, High watermark, Log start, Bytes, Produce/s, Fetch/s.
      await eventually("orders: 2 partitions, 5 records; payments: 1 partition, 3 records", async () => {
        assert.deepEqual((await rowCells(row("orders"))).slice(0, 3), ["orders", "2", "5"]);
        assert.deepEqual((await rowCells(row("payments"))).slice(0, 3), ["payments", "1", "3"]);
      });
      await assertNoBanner();
      await screenshot("01-topics");
    });

    test("2. record browser shows a partition's records, as text and as hex", { timeout: STEP_MS }, async () => {
      await open("/topics/orders");
      await eventually("orders has partition rows 0 and 1", async () => {
        assert.deepEqual(await S.page.locator("[data-testid=partition-row]").evaluateAll((rs) => rs.map((r) => r.dataset.partition)), ["0", "1"]);
      });
      await S.page.locator("[data-testid=partition-row][data-partition='0'] a").click();
      await S.page.waitForURL(/#\/topics\/orders\/partitions\/0$/);

      const rows = S.page.locator("[data-testid=record-row]");
      await eventually("5 records, offsets 0-4, with keys, values and headers", async () => {
        assert.deepEqual(await rows.evaluateAll((rs) => rs.map((r) => r.dataset.offset)), ["0", "1", "2", "3", "4"]);
        assert.deepEqual(await texts(rows.getByTestId("record-key")), ["k1", "k2", "k3", "k4", "k5"]);
        assert.deepEqual(await texts(rows.getByTestId("record-value")), ["order-1", "order-2", "order-3", "order-4", "order-5"]);
        assert.deepEqual(await texts(rows.getByTestId("record-headers")), ["h=x1", "h=x2", "h=x3", "h=x4", "h=x5"]);
      });

      await byTestId("format-toggle").selectOption("hex");
      const first = S.page.locator("[data-testid=record-row][data-offset='0']");
      await eventually("offset 0 shown as hex", async () => {
        assert.equal((await first.getByTestId("record-key").textContent()).trim(), "6b 31"); // "k1"
        assert.equal((await first.getByTestId("record-value").textContent()).trim(), "6f 72 64 65 72 2d 31"); // "order-1"
        assert.equal((await first.getByTestId("record-headers").textContent()).trim(), "h=78 31"); // h="x1"
      });
      await assertNoBanner();
      await screenshot("02-records-hex");

      await byTestId("format-toggle").selectOption("text");
      await eventually("offset 0 back to text", async () => {
        assert.equal((await first.getByTestId("record-value").textContent()).trim(), "order-1");
      });
    });

    // Before the live-update test, which adds a record to orders/0.
    test("3. consumer group lag, updated live", { timeout: STEP_MS }, async () => {
      const join = await api("POST", "/v1/consumer-groups/g1/members", { topics: ["orders"] }, [200, 201]);
      const { member_id, generation } = join.data;
      const commit = (offset) => api("POST", "/v1/consumer-groups/g1/offsets",
        { member_id, generation, offsets: [{ topic: "orders", partition: 0, offset }] }, [200, 201, 204]);
      await commit(2);

      await open("/groups");
      await eventually("groups list shows g1", async () => {
        const cells = await rowCells(S.page.locator("[data-testid=group-row][data-group=g1]"));
        assert.equal(cells[0], "g1");
      });
      await S.page.locator("[data-testid=group-row][data-group=g1] a").click();
      await S.page.waitForURL(/#\/groups\/g1$/);

      const p0 = S.page.locator("[data-testid=group-partition-row][data-topic=orders][data-partition='0']");
      await eventually("orders/0: committed 2, lag 3; total lag 3", async () => {
        assert.equal((await p0.getByTestId("committed").textContent()).trim(), "2");
        assert.equal((await p0.getByTestId("lag").textContent()).trim(), "3");
        assert.equal((await byTestId("total-lag").textContent()).trim(), "3");
      });
      await assertNoBanner();
      await screenshot("03-group-lag-3");

      const loads = await markWindow();
      await commit(5);
      await eventually("orders/0: committed 5, lag 0; total lag 0", async () => {
        assert.equal((await p0.getByTestId("committed").textContent()).trim(), "5");
        assert.equal((await p0.getByTestId("lag").textContent()).trim(), "0");
        assert.equal((await byTestId("total-lag").textContent()).trim(), "0");
      });
      await assertNoReload(loads);
      await assertNoBanner();
      await screenshot("04-group-lag-0");
    });

    test("4. live updates without reload: followed records and topic totals", { timeout: STEP_MS }, async () => {
      await open("/topics/orders/partitions/0");
      await eventually("records 0-4 shown and following", async () => {
        assert.equal(await S.page.locator("[data-testid=record-row]").count(), 5);
        assert.ok(await byTestId("follow").isChecked(), "follow is not checked");
        assert.match(await byTestId("partition-status").textContent(), /following/);
      });

      const loads = await markWindow();
      const value = `live-${Date.now()}`;
      await produce("orders", 0, [{ key: "live", value }]);
      const row = S.page.locator("[data-testid=record-row][data-offset='5']");
      await eventually(`offset 5 appears with value ${value}`, async () => {
        assert.equal((await row.getByTestId("record-value").textContent()).trim(), value);
        assert.equal((await row.getByTestId("record-key").textContent()).trim(), "live");
      });
      await assertNoReload(loads);
      await assertNoBanner();
      await screenshot("05-records-live");

      await open("/topics");
      const payments = S.page.locator("[data-testid=topic-row][data-topic=payments]");
      await eventually("payments shows 3 records", async () => assert.equal((await rowCells(payments))[2], "3"));
      const loads2 = await markWindow();
      await produce("payments", 0, [{ value: "payment-4" }, { value: "payment-5" }]);
      await eventually("payments shows 5 records and orders 6", async () => {
        assert.equal((await rowCells(payments))[2], "5");
        assert.equal((await rowCells(S.page.locator("[data-testid=topic-row][data-topic=orders]")))[2], "6");
      });
      await assertNoReload(loads2);
      await assertNoBanner();
      await screenshot("06-topics-live");
    });

    test("5. create and delete a topic through the dialogs; cancel cancels", { timeout: STEP_MS }, async () => {
      const name = "created-in-ui";
      const modal = S.page.locator("#modal");
      await open("/topics");
      await byTestId("topics-table").waitFor();

      // Cancel in the form, and cancel at the confirmation step: nothing is created.
      await byTestId("create-topic").click();
      await byTestId("topic-name").fill("cancelled-in-ui");
      await byTestId("cancel").click();
      await modal.waitFor({ state: "hidden" });
      await byTestId("create-topic").click();
      await byTestId("topic-name").fill("cancelled-in-ui");
      await byTestId("create-submit").click();
      await byTestId("confirm").waitFor();
      await byTestId("cancel").click();
      await modal.waitFor({ state: "hidden" });

      // Create.
      await byTestId("create-topic").click();
      await byTestId("topic-name").fill(name);
      await byTestId("topic-partitions").fill("3");
      await byTestId("create-submit").click();
      const confirmDlg = modal.locator("[role=dialog]");
      await eventually("the confirmation names the topic and 3 partitions", async () => {
        const t = await confirmDlg.textContent();
        assert.match(t, /Create this topic\?/);
        assert.match(t, new RegExp(name));
        assert.match(t, /Partitions\s*3/);
      });
      await byTestId("confirm").click();
      await modal.waitFor({ state: "hidden" });
      const created = await api("GET", `/v1/topics/${name}`, undefined, 200);
      assert.equal(created.data.partitions, 3);
      const row = S.page.locator(`[data-testid=topic-row][data-topic="${name}"]`);
      await eventually(`${name} listed with 3 partitions`, async () => {
        assert.deepEqual((await rowCells(row)).slice(0, 3), [name, "3", "0"]);
      });
      await assertNoBanner();
      await screenshot("07-topic-created");

      // The cancelled topic never appeared, even after a later poll.
      const updated = await byTestId("updated").textContent();
      await eventually("the topics view polled again", async () => assert.notEqual(await byTestId("updated").textContent(), updated));
      assert.equal(await S.page.locator("[data-testid=topic-row][data-topic=cancelled-in-ui]").count(), 0);
      await api("GET", "/v1/topics/cancelled-in-ui", undefined, 404);

      // Delete: the button stays disabled until the exact name is typed.
      await row.locator("a").click();
      await S.page.waitForURL(new RegExp(`#/topics/${name}$`));
      await byTestId("delete-topic").click();
      const confirm = byTestId("confirm");
      await confirm.waitFor();
      assert.ok(await confirm.isDisabled(), "delete is enabled before the name is typed");
      for (const wrong of ["created-in-u", `${name}x`, name.toUpperCase(), ` ${name}`]) {
        await byTestId("confirm-name").fill(wrong);
        assert.ok(await confirm.isDisabled(), `delete is enabled with ${JSON.stringify(wrong)} typed`);
      }
      await byTestId("confirm-name").fill(name);
      assert.ok(await confirm.isEnabled(), "delete stays disabled with the exact name typed");
      await screenshot("08-delete-dialog");
      await confirm.click();
      await S.page.waitForURL(/#\/topics$/);
      await api("GET", `/v1/topics/${name}`, undefined, 404);
      await eventually("the list no longer shows the deleted topic, and still shows the others", async () => {
        assert.equal(await row.count(), 0);
        assert.equal(await S.page.locator("[data-testid=topic-row][data-topic=orders]").count(), 1);
      });
      await assertNoBanner();
    });

    test("6. a share group's totals follow leases and acks", { timeout: STEP_MS }, async () => {
      // payments holds 5 records by now (3, then 2 more in test 4).
      await api("PUT", "/v1/share-groups/mailers", { topics: ["payments"], start: "earliest" }, 201);
      const leased = await api("POST", "/v1/share-groups/mailers/fetch", { max_records: 2 }, 200);
      const ids = leased.data.records.map((r) => r.delivery_id);
      assert.equal(ids.length, 2, JSON.stringify(leased.data));

      await open("/shares");
      await eventually("the share-group list shows mailers", async () => {
        const cells = await rowCells(S.page.locator("[data-testid=share-row][data-share=mailers]"));
        assert.equal(cells[0], "mailers");
      });
      await S.page.locator("[data-testid=share-row][data-share=mailers] a").first().click();
      await S.page.waitForURL(/#\/shares\/mailers$/);
      const total = (id) => byTestId(id).textContent().then((t) => t.trim());
      await eventually("2 leased, 3 available, none accepted", async () => {
        assert.deepEqual([await total("total-leased"), await total("total-available"), await total("total-accepted")], ["2", "3", "0"]);
      });
      const loads = await markWindow();
      await api("POST", "/v1/share-groups/mailers/acks", { accept: [ids[0]], release: [], reject: [], extend: [] }, 200);
      await eventually("after one accept: 1 leased, 1 accepted", async () => {
        assert.deepEqual([await total("total-leased"), await total("total-accepted")], ["1", "1"]);
      });
      await assertNoReload(loads);
      await assertNoBanner();
      await screenshot("11-share-group");
    });

    test("7. agent probe and compactor pages", { timeout: STEP_MS }, async () => {
      await open("/agent");
      await byTestId("agent").waitFor();
      await eventually("probe status is available", async () => {
        assert.equal((await byTestId("probe-status").textContent()).trim(), "available");
      }, 15_000);
      await eventually("latency chart draws a line (2+ history samples)", async () => {
        const svg = S.page.locator("[data-testid=chart-probe-latency] svg");
        assert.equal(await svg.count(), 1);
        assert.ok((await svg.locator("path").count()) >= 1, "no path in the latency chart");
        assert.ok((await S.page.locator("[data-testid=chart-probe-availability] svg path").count()) >= 1, "no path in the availability chart");
      }, 15_000);
      await assertNoBanner();
      await screenshot("09-agent");

      await open("/compactor");
      await byTestId("compactor").waitFor();
      await eventually("the compactor's last round is shown", async () => {
        assert.match((await byTestId("last-round").textContent()).trim(), /ago/);
        assert.ok((await S.page.locator("[data-testid=compactor-report] tbody tr").count()) > 0, "empty round report");
      }, 15_000);
      await assertNoBanner();
      await screenshot("10-compactor");
    });

    test("8. the page logged no errors", () => {
      assert.deepEqual(S.problems, [], `the page reported errors:\n${S.problems.join("\n")}`);
    });
  });
}
