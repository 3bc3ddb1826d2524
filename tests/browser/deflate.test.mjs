// SPDX-License-Identifier: BSL-1.0
//
// permessage-deflate (RFC 7692, docs/protocol.md "Compression") with a real browser: Debian's
// chromium (driven by playwright-core) against wsmanager_test_server started with
// WEBSOCKET_COMPRESSION=on, then with the default (off).
//
//   node deflate.test.mjs <wsmanager_test_server> [--chromium /usr/bin/chromium] [--timeout-s 90]
//
// With compression on: ws.extensions names permessage-deflate and server_no_context_takeover;
// two large (50 KB) broadcasts arrive byte-exact, each counted once in
// wsmanager_messages_compressed_total; a small broadcast arrives and is not counted; a large
// ping (which chromium sends compressed) is answered with its pong. With compression off:
// ws.extensions is "" and a large broadcast still arrives, uncounted.
//
// Prints one line per check and a last line `N passed, N failed`; exits 1 when any failed.
// Stops only the servers it started (by their process objects) and the browser it launched.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { setUp } from './browser_test.mjs';

const { settings, chromium } = await setUp('deflate.test',
  'node deflate.test.mjs <wsmanager_test_server> [--chromium PATH] [--timeout-s S]');

let passed = 0;
let failed = 0;
const servers = [];

// Nothing may hang: the whole run is bounded.
const watchdog = setTimeout(() => {
  console.error(`deflate.test: still running after ${settings.timeoutS} s; giving up`);
  for (const s of servers) s.kill();
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, settings.timeoutS * 1000);

// ---- the server: wsmanager_test_server -----------------------------------------------------

class Server {
  constructor(executable, environment) {
    this.lines = [];
    this.waiters = [];
    // The environment without any WEBSOCKET_* setting of the caller's, then ours.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('WEBSOCKET_') &&
                                                  k !== 'WSMANAGER_TEST_SERVER_PORT'));
    Object.assign(env, environment);
    this.process = spawn(executable, [], { stdio: ['pipe', 'pipe', 'inherit'], env });
    servers.push(this);
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => resolve({ code, signal }));
    });
    readline.createInterface({ input: this.process.stdout }).on('line', (line) => {
      console.log(`  [server] ${line}`);
      this.lines.push(line);
      this.wake();
    });
    this.process.on('exit', () => this.wake());
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** The next unread line starting with `prefix`, waiting at most `timeoutMs`. */
  async line(prefix, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.lines.findIndex((line) => line.startsWith(prefix));
      if (index >= 0) return this.lines.splice(index, 1)[0];
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`server exited before printing ${prefix}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${prefix} line from the server within ${timeoutMs} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  async port() {
    const line = await this.line('PORT ');
    const port = Number(line.slice('PORT '.length));
    assert.ok(port > 0 && port < 65536, `bad port in "${line}"`);
    return port;
  }

  kill() {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGTERM');
    }
  }

  /** SIGTERM, then the exit status (null when it did not exit within 15 s). */
  async stop() {
    this.kill();
    return Promise.race([
      this.exited,
      new Promise((resolve) => setTimeout(() => resolve(null), 15000)),
    ]);
  }
}

/** The value of a counter on the server's /metrics (loopback, so allowed). */
async function metric(port, name) {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`,
                               { signal: AbortSignal.timeout(10000) });
  assert.equal(response.status, 200, `/metrics answered ${response.status}`);
  const text = await response.text();
  const found = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  assert.ok(found, `${name} not in /metrics`);
  return Number(found[1]);
}

// ---- a tiny runner -------------------------------------------------------------------------

async function check(name, body) {
  try {
    await body();
    ++passed;
    console.log(`ok   - ${name}`);
  } catch (e) {
    ++failed;
    console.log(`FAIL - ${name}\n       ${String(e.stack || e).split('\n').join('\n       ')}`);
  }
}

/** Equal strings, saying where they differ rather than printing 50 KB. */
function assertSameText(actual, expected, what) {
  assert.equal(typeof actual, 'string', `${what}: not a text message (${typeof actual})`);
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) ++i;
  assert.fail(`${what}: ${actual.length} characters received, ${expected.length} expected; ` +
              `first difference at ${i}: ${JSON.stringify(actual.slice(i, i + 40))} vs ` +
              `${JSON.stringify(expected.slice(i, i + 40))}`);
}

/** About 50 KB of JSON, compressible, different for each `seed`. */
function bigData(seed) {
  const items = [];
  for (let i = 0; items.length === 0 || JSON.stringify(items).length < 50000; ++i) {
    items.push({ task_id: `task-${seed}-${i}`, step: 'download', done: i % 3 === 0, n: i * seed });
  }
  return items;
}

// ---- the page ------------------------------------------------------------------------------

/**
 * A page with one WebSocket to the server; every frame it gets is kept in order. The page is
 * the server's own /healthz: chromium's local network access checks block a WebSocket to
 * 127.0.0.1 from about:blank or data: pages, not from a page of that origin.
 */
async function openSocket(context, port) {
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  const response = await page.goto(`http://127.0.0.1:${port}/healthz`, { timeout: 15000 });
  assert.equal(response?.status(), 200, '/healthz did not answer 200');
  await page.evaluate((url) => {
    window.received = [];
    window.events = [];
    window.ws = new WebSocket(url);
    window.ws.onopen = () => window.events.push('open');
    window.ws.onerror = () => window.events.push('error');
    window.ws.onclose = (e) => window.events.push(`close ${e.code}`);
    window.ws.onmessage = (e) => window.received.push(e.data);
  }, `ws://127.0.0.1:${port}/?user_id=alice`);
  await page.waitForFunction(() => window.events.length > 0, null, { timeout: 15000 });
  const events = await page.evaluate(() => window.events);
  assert.deepEqual(events, ['open'], 'the WebSocket did not open');
  const connected = await nextFrame(page, 'connected');
  assert.equal(connected.user_id, 'alice');
  return { page, pageErrors };
}

/**
 * Waits (at most 20 s) for a received frame of `type`, takes it and the ones before it off
 * the list, and returns it parsed, with its text as `raw`.
 */
async function nextFrame(page, type) {
  const handle = await page.waitForFunction((wanted) => {
    const index = window.received.findIndex((text) => {
      try { return JSON.parse(text).type === wanted; } catch { return false; }
    });
    if (index < 0) return null;
    return window.received.splice(0, index + 1)[index];
  }, type, { timeout: 20000, polling: 50 });
  const raw = await handle.jsonValue();
  await handle.dispose();
  const frame = JSON.parse(raw);
  Object.defineProperty(frame, 'raw', { value: raw });
  return frame;
}

async function send(page, frame) {
  await page.evaluate((text) => window.ws.send(text), JSON.stringify(frame));
}

/** The page asks for a broadcast of `data`; returns the broadcast frame it gets back. */
async function broadcastRoundTrip(page, data) {
  await send(page, { action: 'broadcast', data });
  const frame = await nextFrame(page, 'broadcast');
  // RapidJSON writes the members in order, compactly, as JSON.stringify does.
  assertSameText(frame.raw, JSON.stringify({ type: 'broadcast', data }), 'the broadcast');
  return frame;
}

// ---- the checks ----------------------------------------------------------------------------

const userDataDir = mkdtempSync(path.join(tmpdir(), 'wsmanager-chromium-deflate-'));
let context;

await check('chromium starts', async () => {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: settings.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
});

// -- compression on --

{
  const server = new Server(settings.server, { WEBSOCKET_COMPRESSION: 'on' });
  let port;
  let socket;

  await check('compression on: the server starts and prints its port', async () => {
    port = await server.port();
  });

  await check('compression on: ws.extensions is permessage-deflate; server_no_context_takeover',
    async () => {
      assert.ok(context, 'no browser');
      assert.ok(port, 'no server');
      socket = await openSocket(context, port);
      const extensions = await socket.page.evaluate(() => window.ws.extensions);
      console.log(`  ws.extensions: "${extensions}"`);
      assert.match(extensions, /^permessage-deflate(;|$)/);
      assert.match(extensions, /;\s*server_no_context_takeover(;|$)/);
    });

  for (const seed of [1, 2]) {
    await check(`compression on: large broadcast #${seed} (~50 KB) arrives byte-exact, ` +
                'compressed once (wsmanager_messages_compressed_total +1)', async () => {
      assert.ok(socket, 'no socket');
      const before = await metric(port, 'wsmanager_messages_compressed_total');
      const data = bigData(seed);
      const frame = await broadcastRoundTrip(socket.page, data);
      assert.ok(frame.raw.length >= 50000, `only ${frame.raw.length} characters`);
      const after = await metric(port, 'wsmanager_messages_compressed_total');
      assert.equal(after - before, 1, `compressed_total went ${before} -> ${after}`);
    });
  }

  await check('compression on: a small broadcast (< 256 B) arrives, not compressed', async () => {
    assert.ok(socket, 'no socket');
    const before = await metric(port, 'wsmanager_messages_compressed_total');
    const frame = await broadcastRoundTrip(socket.page, { note: 'small' });
    assert.ok(frame.raw.length < 256);
    const after = await metric(port, 'wsmanager_messages_compressed_total');
    assert.equal(after, before, `compressed_total went ${before} -> ${after}`);
  });

  await check('compression on: a large ping from the page (compressed by chromium) gets its pong',
    async () => {
      assert.ok(socket, 'no socket');
      await send(socket.page, { action: 'ping', request_id: 'big', padding: 'x'.repeat(40000) });
      const pong = await nextFrame(socket.page, 'pong');
      assert.equal(pong.request_id, 'big');
      const rest = await socket.page.evaluate(() => ({ received: window.received, events: window.events }));
      assert.ok(!rest.received.some((t) => t.includes('"type":"error"')),
                `the server sent an error: ${rest.received}`);
      assert.deepEqual(rest.events, ['open'], 'the socket did not stay open');
      assert.deepEqual(socket.pageErrors, []);
    });

  await socket?.page.close().catch(() => {});
  await check('compression on: the server exits 0 on SIGTERM', async () => {
    assert.deepEqual(await server.stop(), { code: 0, signal: null });
  });
}

// -- compression off (the default) --

{
  const server = new Server(settings.server, {});
  let port;
  let socket;

  await check('compression off: the server starts and prints its port', async () => {
    port = await server.port();
  });

  await check('compression off: ws.extensions is ""', async () => {
    assert.ok(context, 'no browser');
    assert.ok(port, 'no server');
    socket = await openSocket(context, port);
    assert.equal(await socket.page.evaluate(() => window.ws.extensions), '');
  });

  await check('compression off: a large broadcast arrives byte-exact, uncompressed', async () => {
    assert.ok(socket, 'no socket');
    const before = await metric(port, 'wsmanager_messages_compressed_total');
    await broadcastRoundTrip(socket.page, bigData(3));
    const after = await metric(port, 'wsmanager_messages_compressed_total');
    assert.equal(after, before, `compressed_total went ${before} -> ${after}`);
    assert.deepEqual(socket.pageErrors, []);
  });

  await socket?.page.close().catch(() => {});
  await check('compression off: the server exits 0 on SIGTERM', async () => {
    assert.deepEqual(await server.stop(), { code: 0, signal: null });
  });
}

// ---- cleanup -------------------------------------------------------------------------------

await context?.close().catch(() => {});
for (const s of servers) s.kill();
rmSync(userDataDir, { recursive: true, force: true });
clearTimeout(watchdog);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
