#!/usr/bin/env node
// Browser tests of the shopstream dashboard: Debian's Chromium, headless, driven by
// playwright-core (which never downloads a browser), against a real shopstream binary and a
// real Kafka broker.
//
//   cd tests/browser && npm ci && node run.mjs          (or: npm test)
//
// Environment:
//   KAFKA_BOOTSTRAP   broker to use; without it `compose/kafka-local start` runs one (and this
//                     script stops it again if it started it)
//   SHOPSTREAM_BIN    the binary; without it `cargo build --locked --bin shopstream` runs and
//                     $CARGO_TARGET_DIR/debug/shopstream (default target/) is used
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   BROWSER_TEST_OUTPUT  where screenshots and logs go (default tests/browser/output)
//   BROWSER_TESTS     comma-separated test names (or parts of names) to run only those
//
// Every wait is bounded, and waits for a condition (an element, a page state, a server answer),
// never for a fixed time. Every page runs under the server's Content-Security-Policy: a
// violation (a `securitypolicyviolation` event, or the console's report of one) fails the test
// it happens in, whatever that test allows. The last line is `N passed, M failed`; the exit code
// is non-zero when a test failed or the setup did.

import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const OUT = path.resolve(process.env.BROWSER_TEST_OUTPUT || path.join(HERE, 'output'));
const SHOTS = path.join(OUT, 'screenshots');
const LOGS = path.join(OUT, 'logs');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TEST_TIMEOUT = 150_000;
const RUN = Math.random().toString(36).slice(2, 8);

// --- small helpers ---------------------------------------------------------------------------

const log = (...a) => console.log(...a);

/**
 * Polls `check` (sync or async) every `every` ms until it returns something truthy, which is
 * returned; throws after `timeout` ms, with what `check` last said through its argument
 * (`note(text)`) or last threw. An error that `check` throws with `fatal: true` ends the wait.
 */
async function until(check, { timeout = 10_000, every = 100, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last = '';
  const note = (text) => {
    last = String(text);
  };
  for (;;) {
    try {
      const value = await check(note);
      if (value) return value;
    } catch (error) {
      if (error.fatal) throw error;
      last = error.message;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${what}: not within ${timeout} ms${last ? ` (last: ${last})` : ''}`);
    await new Promise((r) => setTimeout(r, Math.min(every, left)));
  }
}

function bounded(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

class Skip extends Error {}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A JSON call to a shopstream from Node: "another client" of the API. */
async function call(base, method, route, body, headers = {}) {
  const response = await fetch(base + route, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!response.ok) throw new Error(`${method} ${route} answered ${response.status}: ${text.slice(0, 300)}`);
  return json;
}

function order(name, extra = {}) {
  return {
    customer_name: name,
    customer_email: `${name.toLowerCase().replace(/[^a-z0-9]+/g, '.')}@example.com`,
    product: 'Lampe de bureau LED',
    quantity: 2,
    amount: '69.80',
    currency: 'EUR',
    address: '137 Boulevard Gambetta, 34000 Montpellier',
    ...extra,
  };
}

// --- the broker ------------------------------------------------------------------------------

let startedBroker = false;

function broker() {
  if (process.env.KAFKA_BOOTSTRAP) return process.env.KAFKA_BOOTSTRAP;
  const script = path.join(ROOT, 'compose', 'kafka-local');
  const running = spawnSync(script, ['status'], { cwd: ROOT, stdio: 'ignore', timeout: 60_000 }).status === 0;
  log(`# starting the local broker: compose/kafka-local start${running ? ' (already running)' : ''}`);
  const r = spawnSync(script, ['start'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`compose/kafka-local start failed (${r.status ?? r.signal})`);
  startedBroker = !running;
  const lines = r.stdout.trim().split('\n');
  return lines[lines.length - 1].trim();
}

function stopBroker() {
  if (!startedBroker) return;
  spawnSync(path.join(ROOT, 'compose', 'kafka-local'), ['stop'], { cwd: ROOT, stdio: 'ignore', timeout: 120_000 });
}

// --- the shopstream binary -------------------------------------------------------------------

function binary() {
  if (process.env.SHOPSTREAM_BIN) return path.resolve(process.env.SHOPSTREAM_BIN);
  log('# building: cargo build --locked --bin shopstream');
  const r = spawnSync('cargo', ['build', '--locked', '--bin', 'shopstream'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], timeout: 1_200_000 });
  if (r.status !== 0) throw new Error(`cargo build failed (${r.status ?? r.signal})`);
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
  return path.join(target, 'debug', 'shopstream');
}

const servers = new Set();

class Server {
  /** `args`: flags beyond the usual ones (a tokens file, say). */
  constructor({ bin, kafka, port, dataDir, prefix, name, args = [] }) {
    Object.assign(this, { bin, kafka, port, dataDir, prefix, name, args });
    this.base = `http://127.0.0.1:${port}`;
    this.child = null;
    this.starts = 0;
  }

  start() {
    this.starts += 1;
    const logFile = path.join(LOGS, `${this.name}-${this.starts}.log`);
    const fd = fs.openSync(logFile, 'w');
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
    for (const k of Object.keys(env)) if (k.startsWith('SHOPSTREAM_') && k !== 'SHOPSTREAM_BIN') delete env[k];
    this.child = spawn(
      this.bin,
      [
        '--kafka',
        this.kafka,
        '--listen',
        `127.0.0.1:${this.port}`,
        '--data-dir',
        this.dataDir,
        '--topic-prefix',
        this.prefix,
        '--log-format',
        'json',
        ...this.args,
      ],
      { cwd: ROOT, env, stdio: ['ignore', fd, fd] },
    );
    fs.closeSync(fd);
    this.logFile = logFile;
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    servers.add(this);
    return this;
  }

  /** Until /readyz answers 200 with the read model caught up. */
  async ready(ms = 90_000) {
    let exited = null;
    this.exited.then((e) => {
      exited = e;
    });
    try {
      await until(
        async (note) => {
          if (exited) {
            throw Object.assign(
              new Error(`${this.name} exited (${exited.code ?? exited.signal}) before it was ready; log: ${this.logFile}\n${tail(this.logFile)}`),
              { fatal: true },
            );
          }
          const r = await fetch(`${this.base}/readyz`, { signal: AbortSignal.timeout(3000) });
          const body = await r.json().catch(() => ({}));
          note(`${r.status} ${JSON.stringify(body).slice(0, 200)}`);
          return r.ok && body.caught_up;
        },
        { timeout: ms, every: 200, what: `${this.name} ready` },
      );
    } catch (error) {
      if (error.fatal) throw error;
      throw new Error(`${error.message}; log: ${this.logFile}`);
    }
  }

  async stop(signal = 'SIGTERM', ms = 20_000) {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    try {
      await bounded(this.exited, ms, `${this.name} stopping`);
    } catch {
      this.child.kill('SIGKILL');
      await bounded(this.exited, 5000, `${this.name} killed`).catch(() => {});
    }
  }
}

function tail(file, lines = 20) {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// --- the browser -----------------------------------------------------------------------------

let context = null;
const openPages = new Set();
const consoleLog = [];
const unavailable = [];

/** Console errors that are part of what a test does on purpose. */
const EXPECTED = {
  validation: /status of 422/,
  // While the server is down the page keeps trying to reconnect; the browser logs each try.
  serverDown: /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|status of 503/,
};

/** Content-Security-Policy violations seen in any page: { url, text }. A test that adds one fails. */
const cspViolations = [];
const CSP_CONSOLE = /Content[- ]Security[- ]Policy/i;

/** Notes a CSP violation of `page` (one the page expects, as the check of this check does, aside). */
function cspViolation(page, text) {
  if (page?.expectCsp) {
    page.expectedCsp.push(text);
    return;
  }
  cspViolations.push({ url: page?.url() ?? '?', text });
  page?.problems?.push(`Content-Security-Policy violation: ${text}`);
}

/**
 * Opens `route` of `base` (the shared server unless told) and, unless `live` is false (a page
 * that must not start, such as the sign-in page), waits for its live connection.
 */
async function openPage(route, { allow = [], width = 1280, height = 900, scheme = 'light', before, base, live = true } = {}) {
  const page = await context.newPage();
  if (before) await before(page);
  page.setDefaultTimeout(10_000);
  page.setDefaultNavigationTimeout(20_000);
  await page.setViewportSize({ width, height });
  await page.emulateMedia({ colorScheme: scheme });
  page.problems = [];
  page.allow = allow;
  page.expectedCsp = [];
  page.on('console', (m) => {
    consoleLog.push(`[${new Date().toISOString()}] ${page.url()} ${m.type()}: ${m.text()}`);
    // The browser's own report of a blocked script, style, connection or frame: never allowed.
    if (CSP_CONSOLE.test(m.text()) && /refused|violat|blocked/i.test(m.text())) {
      cspViolation(page, `console: ${m.text()}`);
      return;
    }
    if (m.type() !== 'error' || page.allow.some((r) => r.test(m.text()))) return;
    // A 503 is the server saying the broker did not answer in time (a loaded machine): the
    // page shows it and carries on; it is noted, not failed.
    if (/status of 503/.test(m.text())) {
      unavailable.push(`${page.url()}: ${m.text()}`);
      return;
    }
    page.problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 500)
      r.text()
        .then((t) => consoleLog.push(`[${new Date().toISOString()}] ${r.status()} ${r.url()}: ${t.slice(0, 300)}`))
        .catch(() => {});
  });
  page.on('pageerror', (e) => page.problems.push(`uncaught exception: ${e.message}`));
  page.on('crash', () => page.problems.push('the page crashed'));
  // What the page does on the network, for waits on it: HTTP requests in flight and when the
  // last one started or ended; live event frames received.
  page.activity = { inFlight: new Set(), last: Date.now(), events: 0, sockets: 0, socket: null };
  page.on('request', (r) => {
    page.activity.inFlight.add(r);
    page.activity.last = Date.now();
  });
  for (const end of ['requestfinished', 'requestfailed'])
    page.on(end, (r) => {
      page.activity.inFlight.delete(r);
      page.activity.last = Date.now();
    });
  // WebSockets: how many the page opened, and the last one (a page holds one live connection).
  page.on('websocket', (ws) => {
    page.activity.sockets += 1;
    page.activity.socket = ws;
    ws.on('framereceived', ({ payload }) => {
      if (typeof payload === 'string' && payload.startsWith('{"type":"event"')) page.activity.events += 1;
    });
  });
  openPages.add(page);
  await page.goto((base ?? server.base) + route, { waitUntil: 'load' });
  if (live) await page.waitForSelector('#conn-pill[data-state="live"]', { timeout: 15_000 });
  return page;
}

async function closePage(page) {
  openPages.delete(page);
  await page.close().catch(() => {});
}

function noProblems(page, what) {
  assert(page.problems.length === 0, `${what}: ${page.problems.join(' | ')}`);
}

async function shot(page, name, fullPage = true) {
  await page
    .screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage, animations: 'disabled' })
    .catch((e) => log(`# screenshot ${name} failed: ${e.message}`));
}

/**
 * Until the page has had no HTTP request in flight for `quiet` ms, then until its event loop has
 * run what those answers queued (an animation frame and a task). This is the bounded quiet
 * period in which a late error would show (a second fetch and its render, a render after an
 * event): waiting for the page's own requests to end, not for a fixed time. A page that never
 * stops fetching for `quiet` ms within `timeout` fails the wait.
 */
async function settled(page, { quiet = 300, timeout = 10_000 } = {}) {
  const a = page.activity;
  await until(
    (note) => {
      note(
        `${a.inFlight.size} requests in flight: ${[...a.inFlight]
          .map((r) => r.url())
          .join(', ')
          .slice(0, 300)}`,
      );
      return a.inFlight.size === 0 && Date.now() - a.last >= quiet;
    },
    { timeout, every: 50, what: `${page.url()} settled` },
  );
  await rendered(page);
}

/** Until the page has rendered a frame and run the task after it: what it had queued is done. */
const rendered = (page) => page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))));

/** The next offset per `topic:partition` that the page's live connection needs (its cursor). */
const liveCursor = (page) => page.evaluate(() => sessionStorage.getItem('shopstream.live.cursor') || '');

/**
 * Until the page's live connection has been sent every event the server has consumed so far
 * (its cursor, saved in sessionStorage, reaches the server's consumed offset of every
 * partition): after that no frame about what was written before can still arrive, so a row
 * that shows once then keeps showing once.
 */
async function caughtUpWithServer(page, timeout = 15_000) {
  const ends = (await call(server.base, 'GET', '/api/kafka')).partitions.map((p) => [`${p.topic}:${p.partition}`, p.next_offset]);
  await until(
    async (note) => {
      const cursor = new Map(
        (await liveCursor(page))
          .split(',')
          .map((e) => /^([a-z]+:\d+):(\d+)$/.exec(e))
          .filter(Boolean)
          .map((m) => [m[1], Number(m[2])]),
      );
      const behind = ends.filter(([k, end]) => !((cursor.get(k) ?? -1) >= end));
      note(`behind on ${behind.map(([k, end]) => `${k} (${cursor.get(k) ?? 'none'} < ${end})`).join(', ')}`);
      return behind.length === 0;
    },
    { timeout, every: 100, what: `${page.url()} caught up with the server` },
  );
}

/** Until the page has received `n` more live event frames than it had when this was called. */
async function moreEvents(page, n, timeout = 15_000) {
  const from = page.activity.events;
  await until(
    (note) => {
      note(`${page.activity.events - from} of ${n} events`);
      return page.activity.events - from >= n;
    },
    { timeout, every: 50, what: `${page.url()} receiving live events` },
  );
}

const rowsWith = (page, text) => page.locator('main table tbody tr', { hasText: text });
/** Until a live table has the list it asked for last (a filter reads it again: the table is busy meanwhile). */
const listLoaded = (page) => page.waitForFunction(() => !document.querySelector('main table[aria-busy]'));
const counter = async (page, id) => Number(((await page.textContent(`#counter-${id}`)) || '').replace(/\D/g, '') || NaN);

/** Cheap checks of what screen-reader and keyboard users rely on. */
async function accessibilityProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    if (document.querySelectorAll('h1').length !== 1) problems.push(`${document.querySelectorAll('h1').length} h1 elements`);
    if (!document.querySelector('main#main')) problems.push('no main landmark');
    if (!document.querySelector('nav[aria-label]')) problems.push('no labelled nav');
    if (!document.querySelector('a.skip-link[href="#main"]')) problems.push('no skip link');
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
      const named = el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
      if (!named) problems.push(`unlabelled ${el.tagName.toLowerCase()}#${el.id || '?'}`);
    }
    for (const b of document.querySelectorAll('button, a[href]')) {
      if (!(b.textContent.trim() || b.getAttribute('aria-label') || b.getAttribute('title'))) problems.push(`nameless ${b.tagName.toLowerCase()}`);
    }
    for (const t of document.querySelectorAll('main table')) {
      if (!t.querySelector('caption') && !t.getAttribute('aria-label')) problems.push('table without caption');
      if (!t.querySelector('th')) problems.push('table without headers');
    }
    const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
    const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
    if (dup.length) problems.push(`duplicate ids: ${[...new Set(dup)].join(', ')}`);
    if (!document.querySelector('[aria-live]')) problems.push('no live region');
    return problems;
  });
}

// --- the tests -------------------------------------------------------------------------------

let server; // the shopstream under test
let bin;
let kafka;
let prefix;
const seeded = {}; // ids created before the tests

const PAGES = [
  {
    name: 'dashboard',
    route: () => '/',
    ready: async (p) => {
      await p.waitForFunction(() => /\d/.test(document.querySelector('#counter-orders')?.textContent || ''));
      await p.waitForSelector('.chart rect.bar', { state: 'attached' });
      await p.waitForSelector('#sim-toggle');
    },
  },
  {
    name: 'orders',
    route: () => '/orders',
    ready: async (p) => {
      await p.locator('main table tbody tr').first().waitFor();
    },
  },
  {
    name: 'payments',
    route: () => '/payments',
    ready: async (p) => {
      await p.locator('main table tbody tr').first().waitFor();
    },
  },
  {
    name: 'deliveries',
    route: () => '/deliveries',
    ready: async (p) => {
      await p.locator('main table tbody tr').first().waitFor();
    },
  },
  {
    name: 'kafka',
    route: () => '/kafka',
    ready: async (p) => {
      await p.waitForFunction(() => document.querySelectorAll('.table-partitions tbody tr').length >= 9);
    },
  },
  {
    name: 'new-order',
    route: () => '/new',
    ready: async (p) => {
      await p.waitForSelector('#order-submit');
    },
  },
  {
    name: 'order',
    route: () => `/orders/${seeded.shipped.id}`,
    ready: async (p) => {
      await p.waitForFunction(() => document.querySelectorAll('#timeline-h ~ .table-wrap tbody tr').length >= 3);
    },
  },
  {
    name: 'api',
    route: () => '/docs',
    ready: async (p) => {
      await p.waitForSelector('#api-records-h');
    },
  },
  {
    name: 'not-found',
    route: () => '/no/such/page',
    ready: async (p) => {
      await p.waitForSelector('h1');
    },
  },
];

const tests = [];
const test = (name, fn, { timeout = TEST_TIMEOUT } = {}) => tests.push({ name, fn, timeout });

test('every page loads with no console error, and is labelled for assistive technology', async () => {
  for (const spec of PAGES) {
    const page = await openPage(spec.route());
    try {
      await spec.ready(page);
      // Late errors (a second fetch, a render after an event) show while the page settles.
      await settled(page);
      await shot(page, `page-${spec.name}`);
      noProblems(page, `page ${spec.name}`);
      const a11y = await accessibilityProblems(page);
      assert(a11y.length === 0, `page ${spec.name}: ${a11y.join('; ')}`);
    } finally {
      await closePage(page);
    }
  }
});

test('pages work at phone width in the dark theme, and the keyboard reaches the content', async () => {
  for (const spec of PAGES.filter((p) => p.name !== 'not-found')) {
    const page = await openPage(spec.route(), { width: 390, height: 844, scheme: 'dark' });
    try {
      await spec.ready(page);
      // What renders after the first answers (a second fetch, charts drawn at their width) is
      // laid out before the width is measured.
      await settled(page);
      // Nothing wider than the screen but the tables' own scrolling boxes.
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(overflow <= 1, `page ${spec.name} is ${overflow}px wider than a phone screen`);
      await shot(page, `phone-dark-${spec.name}`, false);
      noProblems(page, `page ${spec.name} (phone, dark)`);
    } finally {
      await closePage(page);
    }
  }
  const page = await openPage('/orders');
  try {
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement?.className);
    assert(first === 'skip-link', `the first Tab reaches "${first}", not the skip link`);
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    const inMain = await page.evaluate(() => Boolean(document.activeElement?.closest('main')));
    assert(inMain, 'after the skip link, Tab does not land in the main content');
    // Client-side navigation moves focus to the new page's heading.
    await page.click('nav a[href="/kafka"]');
    await page.waitForFunction(() => document.activeElement?.tagName === 'H1' && document.activeElement.textContent === 'Kafka');
    const current = await page.getAttribute('nav a[href="/kafka"]', 'aria-current');
    assert(current === 'page', 'the Kafka link is not marked as the current page');
    noProblems(page, 'keyboard navigation');
  } finally {
    await closePage(page);
  }
});

test('the API page shows every operation of the OpenAPI document, its answers and the records', async () => {
  const doc = await call(server.base, 'GET', '/api/openapi.json');
  const operations = Object.values(doc.paths).flatMap((item) => Object.keys(item)).length;
  const page = await openPage('/docs');
  try {
    await page.waitForSelector('#api-records-h');
    assert((await page.locator('details.api-operation').count()) === operations, `the page lists ${operations} operations`);
    const list = page.locator('details#getApiOrders');
    await list.locator('summary').click();
    const text = await list.innerText();
    for (const expected of ['limit', '200', '401', 'unauthenticated', 'viewer']) assert(text.includes(expected), `GET /api/orders shows ${expected}: ${text}`);
    await page.click('a[href="#schema-ErrorBody"] >> nth=0');
    await page.waitForFunction(() => location.hash === '#schema-ErrorBody');
    const records = await page.locator('section[aria-label="Topic orders"]').innerText();
    assert(records.includes('order.created') && records.includes('order.cancelled'), records);
    assert((await page.locator('a[href="/api/asyncapi.json"]').count()) === 1, 'the AsyncAPI document is linked');
    noProblems(page, 'API page');
  } finally {
    await closePage(page);
  }
});

test('an order placed in the form appears in Orders within 2 s without reload, once, and the counters move', async () => {
  const orders = await openPage('/orders');
  const dashboard = await openPage('/');
  const form = await openPage('/new', { allow: [EXPECTED.validation] });
  try {
    await rowsWith(orders, seeded.shipped.name).first().waitFor();
    await orders.evaluate(() => {
      window.__noReload = 'still here';
    });
    // The figure shows the server's count (any throttled refresh of the stats is over), so that
    // what it says after the order is placed can only come from that order.
    const before = (await call(server.base, 'GET', '/api/stats')).orders.total;
    await dashboard.waitForFunction((n) => Number(document.querySelector('#counter-orders')?.textContent.replace(/\D/g, '') || NaN) === n, before);

    // The server's validation messages show next to their fields.
    await form.fill('#order-customer_name', '');
    await form.fill('#order-customer_email', 'not-an-email');
    await form.fill('#order-product', 'Tablette');
    await form.fill('#order-amount', '12,5x');
    await form.fill('#order-address', '');
    await form.click('#order-submit');
    await form.waitForFunction(() => document.querySelector('#order-customer_email-error')?.textContent.trim());
    for (const field of ['customer_name', 'customer_email', 'amount', 'address']) {
      const message = (await form.textContent(`#order-${field}-error`)).trim();
      assert(message, `no message next to ${field}`);
      assert((await form.getAttribute(`#order-${field}`, 'aria-invalid')) === 'true', `${field} not marked invalid`);
    }
    assert(!(await form.textContent('#order-product-error')).trim(), 'a message next to a valid field');
    assert((await form.evaluate(() => document.activeElement?.id)) === 'order-customer_name', 'focus did not move to the first invalid field');
    await shot(form, 'form-validation');

    const name = `Form Tester ${RUN}`;
    await form.fill('#order-customer_name', name);
    await form.fill('#order-customer_email', `form.${RUN}@example.com`);
    await form.fill('#order-amount', '49.90');
    await form.fill('#order-address', '1 Place Bellecour, 69002 Lyon');
    await form.selectOption('#order-currency', 'EUR');

    const started = Date.now();
    // A double click: one Idempotency-Key per submission, so one order.
    const appeared = rowsWith(orders, name).first().waitFor({ timeout: 2000 });
    await form.dblclick('#order-submit');
    await appeared;
    const elapsed = Date.now() - started;
    log(`#   the order appeared in Orders ${elapsed} ms after the click`);
    await form.waitForSelector('.form-result .notice-success');
    await dashboard.waitForFunction((n) => Number(document.querySelector('#counter-orders').textContent.replace(/\D/g, '')) > n, before, { timeout: 2000 });
    const after = await counter(dashboard, 'orders');
    assert(after === before + 1, `the orders counter went from ${before} to ${after}, not by one`);

    // Every event written so far has reached the page: a second row would be there by now.
    await caughtUpWithServer(orders);
    await settled(orders);
    assert((await rowsWith(orders, name).count()) === 1, 'the order shows more than once');
    const api = await call(server.base, 'GET', `/api/orders?q=${encodeURIComponent(name)}`);
    assert(api.items.length === 1, `a double click created ${api.items.length} orders`);
    assert((await orders.evaluate(() => window.__noReload)) === 'still here', 'the Orders page reloaded');
    const status = await rowsWith(orders, name).first().locator('.badge').textContent();
    assert(status === 'Pending', `the new order shows ${status}`);
    await shot(form, 'form-created');

    // The seed's one-click order.
    const rowsBefore = await orders.locator('main table tbody tr').count();
    await form.click('#order-generate');
    await form.waitForFunction(() => /Order placed/.test(document.querySelector('.form-result')?.textContent || ''));
    const generatedId = await form.$eval('.form-result a', (a) => a.getAttribute('href').split('/').pop());
    await orders.locator(`main table tbody tr[data-id="${generatedId}"]`).waitFor({ timeout: 2000 });
    assert((await orders.locator('main table tbody tr').count()) === rowsBefore + 1, 'the generated order did not add exactly one row');
    await shot(orders, 'orders-after-form');
    await shot(dashboard, 'dashboard-after-form');
    for (const p of [orders, dashboard, form]) noProblems(p, p.url());
  } finally {
    for (const p of [orders, dashboard, form]) await closePage(p);
  }
});

test('an order placed by another client through the API appears live, and its lifecycle moves on every page', async () => {
  const orders = await openPage('/orders');
  const kafkaPage = await openPage('/kafka');
  const payments = await openPage('/payments');
  try {
    await rowsWith(orders, seeded.shipped.name).first().waitFor();
    const name = `Api Client ${RUN}`;
    const started = Date.now();
    const created = await call(server.base, 'POST', '/api/orders', order(name));
    const id = created.order.order_id;
    await rowsWith(orders, name).first().waitFor({ timeout: 2000 });
    log(`#   an order placed through the API appeared ${Date.now() - started} ms later`);
    await kafkaPage.locator('.table-tail tbody tr', { hasText: name }).first().waitFor({ timeout: 2000 });

    // Its page, opened now, follows what other clients do to it.
    const detail = await openPage(`/orders/${id}`);
    try {
      await detail.waitForSelector('main[data-status="Pending"]');
      await detail.waitForSelector('#action-pay');
      await detail.waitForSelector('#action-cancel');
      await call(server.base, 'POST', `/api/orders/${id}/payments?wait=true`, { method: 'PayPal' });
      // The payment may fail (the gateway declines some): retry until it is paid.
      for (let i = 0; i < 10; i += 1) {
        const o = (await call(server.base, 'GET', `/api/orders/${id}`)).order;
        if (o.status === 'Paid') break;
        await call(server.base, 'POST', `/api/orders/${id}/payments?wait=true`, { method: 'Credit Card' });
      }
      await detail.waitForSelector('main[data-status="Paid"]', { timeout: 2000 });
      await rowsWith(orders, name).first().locator('.badge', { hasText: 'Paid' }).waitFor({ timeout: 2000 });
      await payments
        .locator('main table tbody tr', { hasText: id.slice(0, 8) })
        .first()
        .waitFor({ timeout: 2000 });

      // The page's own actions.
      await detail.selectOption('#ship-carrier', 'DHL');
      await detail.click('#action-ship');
      await detail.waitForSelector('main[data-status="Shipped"]');
      await detail.waitForSelector('#action-message .notice-success');
      await detail.click('#action-advance');
      await detail.waitForSelector('main[data-status="In Transit"]');
      await rowsWith(orders, name).first().locator('.badge', { hasText: 'In Transit' }).waitFor({ timeout: 2000 });
      const topics = await detail.$$eval('#timeline-h ~ .table-wrap tbody tr', (rows) => rows.map((r) => r.cells[2].textContent));
      for (const t of ['orders', 'payments', 'deliveries']) assert(topics.includes(t), `the timeline has no ${t} event: ${topics.join(', ')}`);
      const offsets = await detail.$$eval('#timeline-h ~ .table-wrap tbody tr', (rows) => rows.map((r) => r.cells[4].textContent));
      assert(
        offsets.every((o) => /^\d+$/.test(o)),
        `timeline offsets: ${offsets.join(', ')}`,
      );
      await shot(detail, 'order-in-transit');
      noProblems(detail, 'order page');
    } finally {
      await closePage(detail);
    }

    // Filters: status and search, reflected in the address.
    await orders.selectOption('#orders-status', 'In Transit');
    await orders.waitForFunction(() => location.search.includes('status=In+Transit'));
    // The unfiltered rows stay until the filtered list has come (the table is busy meanwhile).
    await listLoaded(orders);
    await rowsWith(orders, name).first().waitFor();
    const statuses = await orders.$$eval('main table tbody tr .badge', (b) => b.map((x) => x.textContent));
    assert(
      statuses.every((s) => s === 'In Transit'),
      `filtered rows: ${statuses.join(', ')}`,
    );
    await orders.fill('#orders-search', RUN);
    await orders.waitForFunction((run) => location.search.includes(run), RUN);
    await listLoaded(orders);
    await orders.waitForFunction(() => document.querySelectorAll('main table tbody tr').length === 1);
    await shot(orders, 'orders-filtered');
    await shot(kafkaPage, 'kafka-tail');
    for (const p of [orders, kafkaPage, payments]) noProblems(p, p.url());
  } finally {
    for (const p of [orders, kafkaPage, payments]) await closePage(p);
  }
});

test('the Kafka page shows offsets and lag, and reads records by offset and by time', async () => {
  const page = await openPage('/kafka');
  try {
    await page.waitForFunction(() => document.querySelectorAll('.table-partitions tbody tr').length >= 9);
    const headers = await page.$$eval('.table-partitions thead th', (t) => t.map((x) => x.textContent));
    for (const h of ['Earliest', 'Latest', 'Consumed', 'Lag', 'Lag (time)', 'Skipped']) assert(headers.includes(h), `no ${h} column`);
    const { partition, offset } = seeded.shipped.kafka;
    await page.selectOption('#seek-topic', 'orders');
    await page.fill('#seek-partition', String(partition));
    await page.fill('#seek-offset', String(offset));
    await page.fill('#seek-limit', '5');
    await page.click('.seek-form button[type=submit]');
    const first = page.locator('.table-records tbody tr').first();
    await first.waitFor();
    assert((await first.locator('th').textContent()) === String(offset), 'the first record is not at the offset asked for');
    assert((await first.textContent()).includes(seeded.shipped.id.slice(0, 8)), 'the record read is not the seeded order');
    // By time: an hour ago reads from the first record on.
    await page.check('#seek-by-time');
    const hourAgo = new Date(Date.now() - 3600_000);
    const local = new Date(hourAgo.getTime() - hourAgo.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
    await page.fill('#seek-time', local);
    await page.click('.seek-form button[type=submit]');
    await page.waitForFunction(() => /records? of orders partition/.test(document.querySelector('.seek-results [role=status]')?.textContent || ''));
    await page.locator('.table-records tbody tr').first().waitFor();
    await shot(page, 'kafka-seek');
    noProblems(page, 'kafka page');
  } finally {
    await closePage(page);
  }
});

test("the funnel, the retry of a declined payment and the payments filter follow the server's rules", async () => {
  // A customer whose card is always declined (the gateway's test domain): Payment Failed.
  const name = `Declined ${RUN}`;
  const created = await call(server.base, 'POST', '/api/orders?wait=true', order(name, { customer_email: `declined.${RUN}@decline.test` }));
  const id = created.order.order_id;
  const paid = await call(server.base, 'POST', `/api/orders/${id}/payments?wait=true`, { method: 'PayPal' });
  assert(paid.payment.status === 'FAILED', `the payment was ${paid.payment.status}`);
  const dashboard = await openPage('/');
  const detail = await openPage(`/orders/${id}`);
  const payments = await openPage('/payments?status=failed');
  try {
    const rows = (box) =>
      dashboard.$$eval(`.${box} .funnel-row`, (r) =>
        r.map((x) => [x.querySelector('.funnel-label').textContent, x.querySelector('.funnel-note')?.textContent ?? '']),
      );
    await dashboard.waitForFunction(() => document.querySelectorAll('.funnel-stages .funnel-row').length > 0);
    const stages = await rows('funnel-stages');
    assert(JSON.stringify(stages.map(([label]) => label)) === JSON.stringify(['Placed', 'Paid', 'Shipped', 'Delivered']), `stages: ${stages.join(' | ')}`);
    assert(
      / waiting for payment$/.test(stages[0][1]) && / waiting to ship$/.test(stages[1][1]) && / on the way$/.test(stages[2][1]),
      `notes: ${stages.join(' | ')}`,
    );
    const side = await rows('funnel-side');
    assert(
      JSON.stringify(side) ===
        JSON.stringify([
          ['Payment failed', 'may still be retried'],
          ['Cancelled', ''],
        ]),
      `side rows: ${side.join(' | ')}`,
    );

    await detail.waitForSelector('main[data-status="Payment Failed"]');
    const label = await detail.textContent('#action-pay');
    assert(/^Retry payment of /.test(label.trim()), `the pay button reads "${label}"`);

    // A status typed in another spelling: the list and its live rows use the server's.
    await payments.waitForFunction(() => document.querySelector('#payments-status')?.value === 'FAILED');
    await payments
      .locator('main table tbody tr', { hasText: id.slice(0, 8) })
      .first()
      .waitFor();
    for (const p of [dashboard, detail, payments]) noProblems(p, p.url());
  } finally {
    for (const p of [dashboard, detail, payments]) await closePage(p);
  }
});

test('without the rules document the dashboard says why it cannot start, keeps the connection indicator, and starts once the rules can be read', async () => {
  // The page's requests for /api/rules fail (as when the server cannot be reached) until
  // `refuse` is turned off; everything else reaches the server.
  let refuse = true;
  let asked = 0;
  const page = await openPage('/orders', {
    allow: [/ERR_CONNECTION_REFUSED|ERR_FAILED/],
    before: (p) =>
      p.route(/\/api\/rules$/, (route) => {
        asked += 1;
        return refuse ? route.abort('connectionrefused') : route.continue();
      }),
  });
  try {
    const alert = page.locator('main .notice-error');
    await alert.waitFor();
    const text = await alert.textContent();
    assert(text.includes('GET /api/rules') && /cannot be reached/.test(text), `the notice reads "${text}"`);
    assert((await page.textContent('main h1')) === 'The dashboard cannot start', 'no heading says the dashboard cannot start');
    assert((await page.locator('#orders-status').count()) === 0, 'a page was mounted without the rules');
    // The live connection does not depend on the rules: the indicator says Live (openPage
    // waited for it).
    assert((await page.getAttribute('#conn-pill', 'data-state')) === 'live', 'the connection indicator is not live');
    const accessibility = await accessibilityProblems(page);
    assert(accessibility.length === 0, `the notice page: ${accessibility.join('; ')}`);
    await shot(page, 'rules-unavailable', false);
    // It tries again by itself.
    const before = asked;
    await until(() => asked > before, { timeout: 10_000, what: 'a second try to read the rules' });
    // Navigating meanwhile changes the address only; the page it names is mounted at start.
    await page.click('nav a[href="/payments"]');
    await page.waitForFunction(() => location.pathname === '/payments');
    assert((await page.locator('#payments-status').count()) === 0, 'a page was mounted without the rules');
    // The server answers again: "Try again" (or the next automatic try) starts the dashboard.
    refuse = false;
    await Promise.race([page.click('#rules-retry', { timeout: 15_000 }).catch(() => {}), page.waitForSelector('#payments-status', { timeout: 15_000 })]);
    await page.waitForSelector('main[data-page="payments"] #payments-status');
    const rules = await call(server.base, 'GET', '/api/rules');
    const offered = await page.$$eval('#payments-status option', (options) => options.map((o) => o.value).filter(Boolean));
    assert(JSON.stringify(offered) === JSON.stringify(rules.payment_statuses), `the status filter offers ${offered.join(', ')}`);
    await page.locator('main table tbody tr').first().waitFor();
    assert((await page.evaluate(() => document.activeElement?.tagName)) === 'H1', 'focus did not move to the page that replaced the notice');
    noProblems(page, 'start-up without rules');
  } finally {
    await closePage(page);
  }
});

test('an action the state no longer allows shows the server refusal (409) and the page catches up', async () => {
  const name = `Stale Page ${RUN}`;
  const id = (await call(server.base, 'POST', '/api/orders?wait=true', order(name))).order.order_id;
  // Hold the page's live frames back, so that it still shows the order as Pending when another
  // client cancels it.
  let hold = false;
  const held = [];
  let toPage = null;
  const page = await openPage(`/orders/${id}`, {
    allow: [/status of 409/],
    before: (p) =>
      p.routeWebSocket(/\/ws/, (ws) => {
        const upstream = ws.connectToServer();
        toPage = ws;
        upstream.onMessage((m) => {
          if (hold) held.push(m);
          else ws.send(m);
        });
        ws.onMessage((m) => upstream.send(m));
      }),
  });
  try {
    await page.waitForSelector('main[data-status="Pending"]');
    await page.waitForSelector('#action-pay');
    hold = true;
    await call(server.base, 'POST', `/api/orders/${id}/cancel?wait=true`, { reason: 'changed my mind' });
    await page.click('#action-pay');
    const message = page.locator('#action-message .notice-error');
    await message.waitFor();
    const text = await message.textContent();
    assert(/cannot .*Cancelled/.test(text), `the refusal reads "${text}"`);
    await page.waitForSelector('main[data-status="Cancelled"]');
    assert((await page.locator('#action-pay').count()) === 0, 'the pay button is still offered');
    hold = false;
    for (const m of held.splice(0)) toPage.send(m);
    await shot(page, 'order-refused');
    noProblems(page, 'order page');
  } finally {
    await closePage(page);
  }
});

test('an event from a foreign producer that breaks the lifecycle is flagged live in Orders, on the order page and on the dashboard', async () => {
  // A payment for a cancelled order, written straight to Kafka by Kafka's own console producer
  // (a foreign producer in the seed's record shape, keyed by the order id).
  const tool = spawnSync(path.join(ROOT, 'compose', 'kafka-local'), ['java-class', 'org.apache.kafka.tools.ConsoleProducer', '--version'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (tool.status !== 0) throw new Skip("Kafka's console producer is not available (compose/kafka-local java-class)");
  const name = `Foreign Payment ${RUN}`;
  const id = (await call(server.base, 'POST', '/api/orders?wait=true', order(name))).order.order_id;
  await call(server.base, 'POST', `/api/orders/${id}/cancel?wait=true`, {});
  const orders = await openPage('/orders');
  const dashboard = await openPage('/');
  try {
    await rowsWith(orders, name).locator('.badge', { hasText: 'Cancelled' }).waitFor();
    await dashboard.waitForFunction(() => /\d/.test(document.querySelector('#counter-anomalies')?.textContent || ''));
    const anomaliesBefore = await counter(dashboard, 'anomalies');
    const record = JSON.stringify({
      order_id: id,
      payment_id: `foreign-${RUN}`,
      amount: 69.8,
      method: 'Credit Card',
      status: 'SUCCESS',
      timestamp: new Date().toISOString().replace('Z', '000Z'),
    });
    const produced = spawnSync(
      path.join(ROOT, 'compose', 'kafka-local'),
      [
        'java-class',
        'org.apache.kafka.tools.ConsoleProducer',
        '--bootstrap-server',
        kafka,
        '--topic',
        `${prefix}payments`,
        '--property',
        'parse.key=true',
        '--property',
        'key.separator=|',
      ],
      { cwd: ROOT, input: `${id}|${record}\n`, encoding: 'utf8', timeout: 90_000 },
    );
    assert(produced.status === 0, `the console producer failed: ${(produced.stderr || '').slice(-500)}`);
    await rowsWith(orders, name).locator('.anomaly-flag').waitFor({ timeout: 5000 });
    await dashboard.waitForFunction((n) => Number(document.querySelector('#counter-anomalies').textContent.replace(/\D/g, '')) > n, anomaliesBefore, {
      timeout: 5000,
    });
    const detail = await openPage(`/orders/${id}`);
    try {
      const flagged = detail.locator('#timeline-h ~ .table-wrap tbody tr.row-anomaly');
      await flagged.waitFor();
      const text = await flagged.textContent();
      assert(/cannot .*Cancelled/.test(text), `the anomaly reads "${text}"`);
      assert((await detail.textContent('.order-status')).includes('1 anomaly'), 'the order status line does not flag the anomaly');
      await shot(detail, 'order-anomaly');
      noProblems(detail, 'order page');
    } finally {
      await closePage(detail);
    }
    for (const p of [orders, dashboard]) noProblems(p, p.url());
  } finally {
    for (const p of [orders, dashboard]) await closePage(p);
  }
});

test('after a server restart the page resumes from its cursor: what it missed shows exactly once, and it says how many events it caught up', async () => {
  const page = await openPage('/orders', { allow: [EXPECTED.serverDown] });
  let second = null;
  try {
    await rowsWith(page, seeded.shipped.name).first().waitFor();
    await page.evaluate(() => {
      window.__noReload = 'still here';
    });

    await server.stop('SIGKILL');
    await page.waitForSelector('#conn-pill[data-state="reconnecting"], #conn-pill[data-state="offline"]', { timeout: 10_000 });
    await shot(page, 'restart-disconnected', false);

    // Another instance on the same topics takes orders while the first is down.
    second = new Server({
      bin,
      kafka,
      port: await freePort(),
      dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'shopstream-b-')),
      prefix,
      name: 'second',
    }).start();
    await second.ready();
    const names = [1, 2, 3].map((i) => `Offline Order ${i} ${RUN}`);
    for (const n of names) await call(second.base, 'POST', '/api/orders?wait=true', order(n));
    await second.stop('SIGTERM');

    // The first comes back on the same port and data directory.
    server.start();
    await server.ready();
    await page.waitForFunction(() => /caught up \d+ event/.test(document.querySelector('#conn-text')?.textContent || ''), null, { timeout: 45_000 });
    const text = await page.textContent('#conn-text');
    const caught = Number(/caught up (\d+) event/.exec(text)[1]);
    log(`#   the page says: "${text}"`);
    for (const n of names) await rowsWith(page, n).first().waitFor({ timeout: 5000 });
    // The replay and the live stream are over for everything written so far: a row shown
    // twice (once replayed, once live) would be there by now.
    await caughtUpWithServer(page);
    for (const n of names) {
      const c = await rowsWith(page, n).count();
      assert(c === 1, `"${n}" shows ${c} times`);
    }
    assert(caught === names.length, `the page says it caught up ${caught} events; ${names.length} were written while it was away`);
    assert((await page.evaluate(() => window.__noReload)) === 'still here', 'the page reloaded');
    assert((await page.getAttribute('#conn-pill', 'data-state')) === 'live', 'not live after the restart');
    await shot(page, 'restart-caught-up');
    noProblems(page, 'orders page across the restart');
  } finally {
    if (second) await second.stop('SIGKILL');
    if (!server.child || server.child.exitCode !== null || server.child.signalCode !== null) {
      server.start();
      await server.ready().catch(() => {});
    }
    await closePage(page);
  }
});

/** Writes `n` seed-shaped orders to `topic` with Kafka's own console producer. */
function produceOrders(topic, n) {
  const lines = [];
  for (let i = 0; i < n; i += 1) {
    const id = `replay-${RUN}-${i}`;
    const value = {
      order_id: id,
      customer_name: 'Ada Lovelace',
      customer_email: `ada${i}@example.com`,
      product: 'Engine',
      amount: 12.5,
      status: 'Pending',
      timestamp: '2025-03-01T10:00:00Z',
      address: '12 St James Square, London',
    };
    lines.push(`${id}|${JSON.stringify(value)}`);
  }
  const r = spawnSync(
    path.join(ROOT, 'compose', 'kafka-local'),
    [
      'java-class',
      'org.apache.kafka.tools.ConsoleProducer',
      '--bootstrap-server',
      kafka,
      '--topic',
      topic,
      '--property',
      'parse.key=true',
      '--property',
      'key.separator=|',
      '--producer-property',
      'linger.ms=5',
    ],
    { cwd: ROOT, input: lines.join('\n') + '\n', encoding: 'utf8', timeout: 120_000, stdio: ['pipe', 'ignore', 'pipe'] },
  );
  assert(r.status === 0 && !/ERROR/.test(r.stderr || ''), `console producer to ${topic} failed (${r.status ?? r.signal}): ${(r.stderr || '').slice(0, 500)}`);
}

test('while a server replays a long log at start, the dashboard shows how far it is, and the bar goes once it is caught up', async () => {
  const RECORDS = 10_000;
  const replayPrefix = `${prefix}replay.`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shopstream-r-'));
  const replayer = new Server({ bin, kafka, port: await freePort(), dataDir, prefix: replayPrefix, name: 'replayer' });
  let page = null;
  try {
    // Its topics exist once it ran; the log then grows while it is stopped.
    replayer.start();
    await replayer.ready();
    await replayer.stop('SIGTERM');
    produceOrders(`${replayPrefix}orders`, RECORDS);
    replayer.args = ['--rebuild-store'];
    replayer.start();
    await until(
      async (note) => {
        const r = await fetch(`${replayer.base}/readyz`, { signal: AbortSignal.timeout(3000) }).catch(() => null);
        const body = r ? await r.json().catch(() => ({})) : {};
        note(JSON.stringify(body).slice(0, 200));
        if (body.caught_up === true) throw Object.assign(new Error('the replay was over before the page could open'), { fatal: true });
        return body.replay?.total_known;
      },
      { timeout: 60_000, every: 50, what: 'the replay under way' },
    );
    page = await openPage('/', { base: replayer.base, live: false });
    await page.waitForSelector('#replay:not([hidden])', { timeout: 10_000 });
    await page.waitForFunction(() => Number(document.querySelector('#replay-bar')?.value) > 0, null, { timeout: 10_000 });
    const text = await page.textContent('#replay-line');
    log(`#   the page says: "${text}"`);
    assert(
      /^[\d,.\s\u202f]+ of 10[,.\s\u202f]?000 records · [\d,.\s\u202f]+ records\/s · (about .+ left|estimating the time left)$/.test(text),
      `the replay line reads "${text}"`,
    );
    assert((await page.getAttribute('#replay-bar', 'max')) === '100', 'the bar is not a percentage');
    await shot(page, 'dashboard-replaying', false);
    await page.waitForSelector('#replay', { state: 'hidden', timeout: 120_000 });
    const over = await call(replayer.base, 'GET', '/readyz');
    assert(over.caught_up === true && over.replay.records_done === RECORDS, `after the bar went: ${JSON.stringify(over.replay)}`);
    noProblems(page, 'dashboard during the replay');
  } finally {
    if (page) await closePage(page);
    await replayer.stop('SIGTERM');
    servers.delete(replayer);
  }
});

/** Every page with traffic flowing, light and wide, dark and narrower: the test output's pictures. */
async function gallery() {
  for (const spec of PAGES.filter((p) => !['not-found', 'new-order'].includes(p.name))) {
    for (const [scheme, width] of [
      ['light', 1440],
      ['dark', 1024],
    ]) {
      const p = await openPage(spec.route(), { scheme, width });
      try {
        await spec.ready(p);
        // Traffic reaches the page before it is photographed: a few live events, rendered.
        await moreEvents(p, 10);
        await rendered(p);
        await shot(p, `traffic-${spec.name}-${scheme}-${width}`, spec.name === 'dashboard' || spec.name === 'order');
        noProblems(p, `${spec.name} with traffic`);
      } finally {
        await closePage(p);
      }
    }
  }
}

test(
  'the simulator starts and stops from the dashboard, and the figures follow its traffic',
  async () => {
    const page = await openPage('/');
    const tail = await openPage('/kafka');
    try {
      await page.waitForSelector('#sim-toggle');
      await page.waitForFunction(() => /\d/.test(document.querySelector('#counter-orders')?.textContent || ''));
      const before = await counter(page, 'orders');
      await page.fill('#sim-rate', '8');
      await page.fill('#sim-failure', '20');
      await page.click('#sim-toggle');
      await page.waitForSelector('.simulator[data-running="true"]');
      await page.waitForFunction((n) => Number(document.querySelector('#counter-orders').textContent.replace(/\D/g, '')) >= n + 5, before, { timeout: 15_000 });
      const sim = await call(server.base, 'GET', '/api/simulator');
      assert(sim.running && sim.rate === 8, `simulator state: ${JSON.stringify(sim)}`);
      assert(Math.abs(sim.payment_failure_rate - 0.2) < 1e-9, `payment failure rate ${sim.payment_failure_rate}`);
      // Enough traffic for the pictures: the tail full of events, the figures well moved on.
      await tail.waitForFunction(() => document.querySelectorAll('.table-tail tbody tr').length >= 50, null, { timeout: 20_000 });
      await page.waitForFunction((n) => Number(document.querySelector('#counter-orders').textContent.replace(/\D/g, '')) >= n + 15, before, {
        timeout: 20_000,
      });
      await shot(page, 'traffic-dashboard');
      await shot(tail, 'traffic-kafka', false);
      await gallery();
      await page.click('#sim-toggle');
      await page.waitForSelector('.simulator[data-running="false"]');
      assert(!(await call(server.base, 'GET', '/api/simulator')).running, 'the simulator still runs');
      for (const p of [page, tail]) noProblems(p, p.url());
    } finally {
      await call(server.base, 'POST', '/api/simulator', { running: false }).catch(() => {});
      for (const p of [page, tail]) await closePage(p);
    }
  },
  { timeout: 300_000 },
);

test('live tables keep at most 200 rows and page back through older ones without duplicates', async () => {
  const total = (await call(server.base, 'GET', '/api/stats')).orders.total;
  // Enough orders for more than 200 rows: generated ones, through the API.
  for (let i = total; i < 260; i += 1) await call(server.base, 'POST', '/api/orders/create');
  const page = await openPage('/orders');
  try {
    const rows = page.locator('main table tbody tr');
    await page.waitForFunction(() => document.querySelectorAll('main table tbody tr').length === 50);
    const visible = async () =>
      page.$$eval('main table tbody tr', (trs) => trs.map((tr) => [tr.querySelector('time')?.getAttribute('datetime') || '', tr.dataset.id]));
    for (let i = 0; i < 4; i += 1) {
      const n = await rows.count();
      await page.click('button:has-text("Load older")');
      await page.waitForFunction(
        (k) => document.querySelectorAll('main table tbody tr').length !== k || document.querySelector('.table-summary')?.textContent.includes('paused'),
        n,
      );
      assert((await rows.count()) <= 200, `${await rows.count()} rows kept`);
    }
    const seen = await visible();
    const ids = seen.map(([, id]) => id);
    assert(new Set(ids).size === ids.length, 'a row shows twice');
    for (let i = 1; i < seen.length; i += 1) assert(seen[i - 1][0] >= seen[i][0], `rows out of order at ${i}`);
    assert(await page.isVisible('button:has-text("Show newest")'), 'no way back to the newest rows after paging back');
    // While paging back, live rows wait behind "Show newest".
    const name = `While Paused ${RUN}`;
    await call(server.base, 'POST', '/api/orders?wait=true', order(name));
    await page.waitForFunction(() => /\(1 new\)/.test(document.body.textContent));
    await page.click('button:has-text("Show newest")');
    await rowsWith(page, name).first().waitFor();
    assert((await rows.count()) === 50, 'Show newest does not start again from the first page');
    await shot(page, 'orders-paged', false);
    noProblems(page, 'orders paging');
  } finally {
    await closePage(page);
  }
});

test("pages run under the server's Content-Security-Policy, and this suite sees a violation", async () => {
  const r = await fetch(`${server.base}/orders`, { signal: AbortSignal.timeout(10_000) });
  const csp = r.headers.get('content-security-policy') || '';
  assert(/script-src 'self'/.test(csp) && /style-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `the page's policy: "${csp}"`);
  const page = await openPage('/orders');
  try {
    await page.locator('main table tbody tr').first().waitFor();
    // What a page must never do: an inline script and an inline style attribute. Both are
    // blocked, and both are seen (here set aside, as this page expects them).
    page.expectCsp = true;
    await page.evaluate(() => {
      const script = document.createElement('script');
      script.textContent = 'window.__inlineRan = true;';
      document.head.append(script);
      document.querySelector('main h1').setAttribute('style', 'color: red');
    });
    // Each is reported twice, by the event and on the console: all four are in before the page
    // stops expecting them.
    const seen = (how, what) => page.expectedCsp.some((v) => v.startsWith('console:') === (how === 'console') && what.test(v));
    await until(
      (note) => {
        note(page.expectedCsp.join(' | '));
        return ['console', 'event'].every((how) => seen(how, /script/i) && seen(how, /style/i));
      },
      { what: 'the violations reported', every: 50 },
    );
    page.expectCsp = false;
    assert((await page.evaluate(() => window.__inlineRan)) === undefined, 'an inline script ran');
    noProblems(page, 'orders page');
  } finally {
    await closePage(page);
  }
});

/** An answer of a shopstream to Node, whatever its status: { status, body }. */
async function request(base, method, route, { body, headers = {} } = {}) {
  const response = await fetch(base + route, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: response.status, body: json };
}

test(
  'with tokens the dashboard asks to sign in: a wrong token is refused, a viewer follows orders live without writes, a session that ends shows the sign-in page again, an admin runs the simulator',
  async () => {
    const tokens = Object.fromEntries(['admin', 'client', 'viewer'].map((role) => [role, `${role}-${crypto.randomUUID()}`]));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shopstream-tokens-'));
    const tokensFile = path.join(dir, 'tokens');
    fs.writeFileSync(
      tokensFile,
      Object.entries(tokens)
        .map(([role, token]) => `${role}:${token}\n`)
        .join(''),
      { mode: 0o600 },
    );
    const guarded = new Server({
      bin,
      kafka,
      port: await freePort(),
      dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'shopstream-t-')),
      // Topics of its own: its simulator's traffic stays out of the other tests' figures.
      prefix: `${prefix}tokens-`,
      name: 'tokens',
      args: ['--tokens-file', tokensFile],
    }).start();
    const bearer = (role) => ({ authorization: `Bearer ${tokens[role]}` });
    let page = null;
    try {
      await guarded.ready();
      page = await openPage('/orders', {
        base: guarded.base,
        live: false,
        // 401s are answers here (a wrong token, a session that ended); while the server
        // restarts the page keeps trying to reach it.
        allow: [/status of 401/, EXPECTED.serverDown],
      });

      // The sign-in page, in place of the pages and the live connection.
      await page.waitForSelector('#signin-form');
      assert((await page.textContent('main h1')) === 'Sign in', 'no "Sign in" heading');
      assert((await page.title()).startsWith('Sign in'), `the title is "${await page.title()}"`);
      assert((await page.getAttribute('#signin-token', 'type')) === 'password', 'the token field is not a password field');
      assert(await page.isHidden('.site-nav'), 'the pages are offered before signing in');
      assert(await page.isHidden('#conn-pill'), 'the connection indicator shows before signing in');
      assert(await page.isHidden('#sign-out'), '"Sign out" shows before signing in');
      assert((await page.locator('#orders-status').count()) === 0, 'the orders page was mounted without a session');
      assert(page.activity.sockets === 0, 'the live connection was opened without a session');
      assert((await page.evaluate(() => document.activeElement?.id)) === 'signin-token', 'the token field does not have the focus');
      const a11y = await accessibilityProblems(page);
      assert(a11y.length === 0, `the sign-in page: ${a11y.join('; ')}`);
      await page.evaluate(() => {
        window.__noReload = 'still here';
      });
      await shot(page, 'signin', false);
      await page.setViewportSize({ width: 390, height: 844 });
      const narrow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(narrow <= 1, `the sign-in page is ${narrow}px wider than a phone screen`);
      await page.setViewportSize({ width: 1280, height: 900 });

      // A wrong token, with the keyboard: refused, with a message, focus back on the field.
      await page.keyboard.type('this-is-not-a-token-of-this-shop');
      await page.keyboard.press('Enter');
      const wrong = page.locator('#signin-error .field-error');
      await wrong.waitFor();
      assert(/not valid/.test(await wrong.textContent()), `the error reads "${await wrong.textContent()}"`);
      assert((await page.getAttribute('#signin-token', 'aria-invalid')) === 'true', 'the field is not marked invalid');
      assert((await page.evaluate(() => document.activeElement?.id)) === 'signin-token', 'focus did not go back to the field');
      assert((await page.locator('#signin-form').count()) === 1, 'a wrong token left the sign-in page');
      await shot(page, 'signin-wrong-token', false);

      // A viewer signs in (Enter again): the page the address names starts, live.
      await page.fill('#signin-token', tokens.viewer);
      await page.keyboard.press('Enter');
      await page.waitForSelector('main[data-page="orders"] #orders-status');
      await page.waitForSelector('#conn-pill[data-state="live"]');
      assert((await page.textContent('#session-role')).includes('viewer'), `the header says "${await page.textContent('#session-role')}"`);
      assert(await page.isVisible('#sign-out'), 'no "Sign out" in the header');
      assert(await page.isHidden('nav a[data-nav="new"]'), 'a viewer is offered "New order"');
      assert((await page.evaluate(() => document.activeElement?.tagName)) === 'H1', 'focus did not move to the page heading');
      const cookie = (await context.cookies(guarded.base)).find((c) => c.name === 'shopstream_session');
      assert(cookie?.httpOnly && cookie.sameSite === 'Strict', `the session cookie: ${JSON.stringify(cookie && { ...cookie, value: '…' })}`);
      const withCookie = { cookie: `shopstream_session=${cookie.value}`, 'sec-fetch-site': 'same-origin' };

      // An order placed by a client through the API appears live.
      const name = `Viewer Watches ${RUN}`;
      const id = (await call(guarded.base, 'POST', '/api/orders', order(name), bearer('client'))).order.order_id;
      await rowsWith(page, name).first().waitFor({ timeout: 5000 });
      await shot(page, 'signin-viewer-orders', false);

      // Its page offers no action; the dashboard no simulator controls; the Kafka page no record browser.
      await page.click(`main table tbody tr[data-id="${id}"] a[href="/orders/${id}"]`);
      await page.waitForSelector('main[data-status="Pending"]');
      assert(/client role/.test(await page.textContent('#actions-role')), 'the order page does not say actions need the client role');
      assert((await page.locator('.action-form').count()) === 0, 'a viewer is offered order actions');
      await page.click('nav a[data-nav="dashboard"]');
      await page.waitForSelector('#sim-role');
      assert(/admin role/.test(await page.textContent('#sim-role')), 'the simulator does not say it needs the admin role');
      assert((await page.locator('#sim-toggle, #sim-rate').count()) === 0, 'a viewer is offered the simulator controls');
      await page.waitForFunction(() => /^(Stopped|Running)/.test(document.querySelector('.sim-state')?.textContent || ''));
      await page.click('nav a[data-nav="kafka"]');
      await page.waitForSelector('#seek-role');
      assert(/admin role/.test(await page.textContent('#seek-role')), 'the record browser does not say it needs the admin role');
      assert((await page.locator('#seek-topic').count()) === 0, 'a viewer is offered the record browser');
      await page.waitForFunction(() => document.querySelectorAll('.table-partitions tbody tr').length >= 9);
      await shot(page, 'signin-viewer-kafka', false);
      // "New order" typed in the address: a reload keeps the session, and the form is not offered.
      await page.goto(`${guarded.base}/new`, { waitUntil: 'load' });
      await page.waitForSelector('#new-order-role');
      assert((await page.locator('#order-submit, #order-generate').count()) === 0, 'a viewer is offered the order form');
      await page.waitForSelector('#conn-pill[data-state="live"]');
      await page.evaluate(() => {
        window.__noReload = 'still here';
      });
      noProblems(page, 'signed in as a viewer');

      // Sign-out: the sign-in page, no live connection, and the cookie is refused from then on.
      assert((await request(guarded.base, 'GET', '/api/orders?limit=1', { headers: withCookie })).status === 200, 'the cookie does not work before sign-out');
      await page.click('#sign-out');
      await page.waitForSelector('#signin-form');
      assert(/signed out/.test(await page.textContent('#signin-reason')), 'the sign-in page does not say the visitor signed out');
      assert(await page.isHidden('#session-box'), 'the header still shows who was signed in');
      await until(() => page.activity.socket?.isClosed(), { what: 'the live connection closed' });
      const refused = await request(guarded.base, 'GET', '/api/orders?limit=1', { headers: withCookie });
      assert(refused.status === 401 && refused.body?.error?.code === 'invalid_session', `the old cookie got ${refused.status} ${JSON.stringify(refused.body)}`);
      const inPage = await page.evaluate(async () => {
        const r = await fetch('/api/orders?limit=1');
        await r.text();
        return r.status;
      });
      assert(inPage === 401, `the page's own call after sign-out got ${inPage}`);
      await shot(page, 'signin-signed-out', false);

      // A session that ends elsewhere: the next call the page makes is refused, and it says so.
      await page.fill('#signin-token', tokens.viewer);
      await page.keyboard.press('Enter');
      await page.waitForSelector('#new-order-role');
      await page.waitForSelector('#conn-pill[data-state="live"]');
      const second = (await context.cookies(guarded.base)).find((c) => c.name === 'shopstream_session');
      const out = await request(guarded.base, 'DELETE', '/api/session', { headers: { cookie: `shopstream_session=${second.value}`, origin: guarded.base } });
      assert(out.status === 200, `signing out from elsewhere answered ${out.status}`);
      await page.click('nav a[data-nav="payments"]');
      await page.waitForSelector('#signin-reason');
      assert(/session has ended/.test(await page.textContent('#signin-reason')), `the sign-in page says "${await page.textContent('#signin-reason')}"`);
      await until(() => page.activity.socket?.isClosed(), { what: 'the live connection closed' });
      await shot(page, 'signin-session-ended', false);

      // The live connection refused: no cookie any more, and the server restarts. Payments
      // reads nothing after its first page, so only the live connection can notice.
      await page.fill('#signin-token', tokens.viewer);
      await page.keyboard.press('Enter');
      await page.waitForSelector('main[data-page="payments"] #payments-status');
      await page.waitForSelector('#conn-pill[data-state="live"]');
      await context.clearCookies();
      await guarded.stop('SIGTERM');
      await page.waitForSelector('#conn-pill[data-state="reconnecting"]');
      guarded.start();
      await guarded.ready();
      await page.waitForSelector('#signin-reason', { timeout: 30_000 });
      assert(
        /live connection was refused/.test(await page.textContent('#signin-reason')),
        `the sign-in page says "${await page.textContent('#signin-reason')}"`,
      );
      await until(() => page.activity.socket?.isClosed(), { what: 'the live connection closed' });
      // It stays there: no reload, no more tries to connect.
      const sockets = page.activity.sockets;
      await settled(page, { quiet: 1000 });
      assert(page.activity.sockets === sockets, 'the page goes on opening live connections on the sign-in page');
      assert((await page.evaluate(() => window.__noReload)) === 'still here', 'the page reloaded');

      // An admin signs in and runs the simulator.
      await page.fill('#signin-token', tokens.admin);
      await page.keyboard.press('Enter');
      await page.waitForSelector('main[data-page="payments"] #payments-status');
      assert((await page.textContent('#session-role')).includes('admin'), 'the header does not say admin');
      assert(await page.isVisible('nav a[data-nav="new"]'), 'an admin is not offered "New order"');
      await page.click('nav a[data-nav="dashboard"]');
      await page.waitForSelector('#sim-toggle');
      await page.waitForFunction(() => /^(Stopped|Running)/.test(document.querySelector('.sim-state')?.textContent || ''));
      await page.fill('#sim-rate', '5');
      await page.click('#sim-toggle');
      await page.waitForSelector('.simulator[data-running="true"]');
      assert((await call(guarded.base, 'GET', '/api/simulator', undefined, bearer('viewer'))).running, 'the simulator does not run');
      await moreEvents(page, 5);
      await page.click('#sim-toggle');
      await page.waitForSelector('.simulator[data-running="false"]');
      assert(!(await call(guarded.base, 'GET', '/api/simulator', undefined, bearer('viewer'))).running, 'the simulator still runs');
      await page.click('nav a[data-nav="kafka"]');
      await page.waitForSelector('#seek-topic');
      await shot(page, 'signin-admin-kafka', false);
      // The header with who is signed in still fits a phone.
      await page.setViewportSize({ width: 390, height: 844 });
      await rendered(page);
      const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(wide <= 1, `signed in, the page is ${wide}px wider than a phone screen`);
      await shot(page, 'signin-admin-phone', false);
      assert((await page.evaluate(() => window.__noReload)) === 'still here', 'the page reloaded');
      noProblems(page, 'sign-in, sign-out and roles');
    } finally {
      await call(guarded.base, 'POST', '/api/simulator', { running: false }, bearer('admin')).catch(() => {});
      if (page) await closePage(page);
      await context.clearCookies();
      await guarded.stop();
    }
  },
  { timeout: 240_000 },
);

// --- the run ---------------------------------------------------------------------------------

async function seed() {
  const placed = await call(server.base, 'POST', '/api/orders?wait=true', order(`Seed Shipped ${RUN}`));
  const id = placed.order.order_id;
  for (let i = 0; i < 10; i += 1) {
    const p = await call(server.base, 'POST', `/api/orders/${id}/payments?wait=true`, { method: 'Credit Card' });
    if (p.payment.status === 'SUCCESS') break;
  }
  await call(server.base, 'POST', `/api/orders/${id}/deliveries?wait=true`, { carrier: 'Colissimo' });
  seeded.shipped = { id, name: `Seed Shipped ${RUN}`, kafka: placed.kafka };
  await call(server.base, 'POST', '/api/orders/create?wait=true');
  await call(server.base, 'POST', '/api/orders?wait=true', order(`Seed Pending ${RUN}`));
}

async function cleanup() {
  if (context) await context.close().catch(() => {});
  for (const s of servers) await s.stop('SIGTERM', 10_000).catch(() => {});
  stopBroker();
}

async function main() {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.mkdirSync(LOGS, { recursive: true });
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  try {
    assert(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install -y chromium`);
    kafka = broker();
    bin = binary();
    assert(fs.existsSync(bin), `no shopstream binary at ${bin}`);
    prefix = `browser-${Date.now()}-${RUN}.`;
    log(`# shopstream ${bin}\n# Kafka ${kafka}, topic prefix ${prefix}\n# output ${OUT}`);
    server = new Server({
      bin,
      kafka,
      port: await freePort(),
      dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'shopstream-a-')),
      prefix,
      name: 'server',
    }).start();
    await server.ready();
    await seed();
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'shopstream-chromium-'));
    context = await bounded(
      chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: { width: 1280, height: 900 },
        timeout: 60_000,
      }),
      90_000,
      'starting Chromium',
    );
    log(`# ${(await context.browser()?.version?.()) ?? 'Chromium'} at ${CHROMIUM}`);
    // Every page reports the Content-Security-Policy violations it sees (the console reports
    // most of them too; the event also has those the console leaves out).
    await context.exposeBinding('__shopstreamCspViolation', ({ page }, text) => cspViolation(page, text));
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        const where = e.sourceFile ? ` at ${e.sourceFile}:${e.lineNumber}` : '';
        globalThis.__shopstreamCspViolation?.(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}${where}${e.sample ? ` (${e.sample})` : ''}`);
      });
    });

    const only = (process.env.BROWSER_TESTS || '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const t of tests) {
      if (only.length && !only.some((o) => t.name.includes(o))) continue;
      const started = Date.now();
      const violations = cspViolations.length;
      try {
        await bounded(t.fn(), t.timeout, t.name);
        const seen = cspViolations.slice(violations);
        assert(seen.length === 0, `Content-Security-Policy violations: ${seen.map((v) => `${v.url}: ${v.text}`).join(' | ')}`);
        passed += 1;
        log(`ok - ${t.name} (${Date.now() - started} ms)`);
      } catch (error) {
        if (error instanceof Skip) {
          skipped += 1;
          log(`ok - ${t.name} # SKIP ${error.message}`);
          continue;
        }
        failed += 1;
        log(
          `not ok - ${t.name} (${Date.now() - started} ms)\n    ${String(error.stack || error)
            .split('\n')
            .slice(0, 4)
            .join('\n    ')}`,
        );
        let i = 0;
        for (const p of openPages) await shot(p, `FAILED-${t.name.slice(0, 40).replace(/\W+/g, '-')}-${i++}`, false);
        for (const p of [...openPages]) await closePage(p);
      }
    }
  } catch (error) {
    failed += 1;
    log(
      `not ok - setup\n    ${String(error.stack || error)
        .split('\n')
        .slice(0, 6)
        .join('\n    ')}`,
    );
  } finally {
    fs.writeFileSync(path.join(LOGS, 'browser-console.log'), consoleLog.join('\n') + '\n');
    await bounded(cleanup(), 120_000, 'cleanup').catch((e) => log(`# ${e.message}`));
  }
  if (unavailable.length) log(`# note: the server answered 503 (Kafka unavailable) ${unavailable.length} times; see logs/browser-console.log`);
  log(`# screenshots in ${SHOTS}`);
  log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exitCode = failed ? 1 : 0;
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const s of servers) s.child?.kill('SIGKILL');
    stopBroker();
    process.exit(130);
  });
}

main();
