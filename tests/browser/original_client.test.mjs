// SPDX-License-Identifier: BSL-1.0
//
// The original component's browser client (its design document, Appendix C) must work
// unchanged against wsmanager: it runs in Debian's chromium (driven by playwright-core),
// answers the confirmation dialog, and the host's notify_user gets the answer.
//
//   node original_client.test.mjs <wsmanager_browser_test_server> \
//        [--chromium /usr/bin/chromium] [--artifacts DIR] [--timeout-s 90]
//
// Prints one line per check and a last line `N passed, N failed`; exits 1 when any failed.
// Screenshots of the page go to --artifacts (default: the current directory).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';

import { here, setUp } from './browser_test.mjs';

const { settings, chromium } = await setUp('original_client.test',
  'node original_client.test.mjs <wsmanager_browser_test_server> [--chromium PATH] ' +
  '[--artifacts DIR] [--timeout-s S]', { withArtifacts: true });

let passed = 0;
let failed = 0;
let server = null;

// Nothing may hang: the whole run is bounded.
const watchdog = setTimeout(() => {
  console.error(`original_client.test: still running after ${settings.timeoutS} s; giving up`);
  server?.kill();
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, settings.timeoutS * 1000);

// ---- the host: wsmanager_browser_test_server ----------------------------------------------

class Server {
  constructor(executable) {
    this.lines = [];
    this.waiters = [];
    this.process = spawn(executable, ['--results', '2', '--timeout-s', String(settings.timeoutS)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
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
  async line(prefix, timeoutMs = 15000) {
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

  send(command) {
    this.process.stdin.write(`${command}\n`);
  }

  kill() {
    if (this.process.exitCode === null) this.process.kill('SIGTERM');
  }
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

// ---- the checks ----------------------------------------------------------------------------

server = new Server(settings.server);
const userDataDir = mkdtempSync(path.join(tmpdir(), 'wsmanager-chromium-'));
let context;
let port;

await check('the server starts and prints its port', async () => {
  const line = await server.line('PORT ', 20000);
  port = Number(line.slice('PORT '.length));
  assert.ok(port > 0 && port < 65536, `bad port in "${line}"`);
});

await check('chromium starts', async () => {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: settings.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
});

const pageUrl = pathToFileURL(path.join(here, 'original_client.html')).href;

/**
 * Opens the original client as alice, asks one confirmation from the host, answers the
 * confirm() dialog with `accept`, and checks what the host, the page and the server saw.
 */
async function confirmationRun({ step, accept, feedback, screenshot }) {
  assert.ok(context, 'no browser');
  assert.ok(port, 'no server');
  const page = await context.newPage();
  const dialogs = [];
  page.on('dialog', async (dialog) => {
    dialogs.push({ type: dialog.type(), message: dialog.message() });
    if (accept) await dialog.accept();
    else await dialog.dismiss();
  });
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  try {
    // The original connects to ws://localhost:8765 with no identity; wsmanager sends a
    // confirmation only to its user's connections, so the URL names the user.
    const wsUrl = `ws://127.0.0.1:${port}/?user_id=alice`;
    await page.goto(`${pageUrl}?url=${encodeURIComponent(wsUrl)}`, { timeout: 15000 });
    await page.waitForFunction(() => window.receivedFrames.some((f) => f.type === 'connected'),
                               null, { timeout: 10000 });

    server.send('ask');
    assert.equal(await server.line('ASKED ', 10000), `ASKED ${step}`);
    const result = await server.line('RESULT ', 15000);
    assert.equal(result, `RESULT proceed=${accept ? 1 : 0} feedback=${feedback} reason=user`);

    await page.waitForFunction(
      () => window.receivedFrames.some((f) => f.type === 'confirmation_resolved'), null,
      { timeout: 10000 });
    const seen = await page.evaluate(() => ({
      received: window.receivedFrames, sent: window.sentFrames, events: window.socketEvents,
    }));

    const connected = seen.received.find((f) => f.type === 'connected');
    assert.equal(connected.user_id, 'alice');
    const request = seen.received.find((f) => f.type === 'task_step_result');
    assert.ok(request, 'no task_step_result reached the page');
    assert.equal(request.user_id, 'alice');
    assert.equal(request.task_id, 'browser_task');
    assert.equal(request.step, step);
    assert.match(request.message, new RegExp(`^Step ${step}: data validation completed`));
    assert.equal(request.step_result.status, 'completed');
    assert.deepEqual(request.step_result.result, { validated_rows: 1000, errors: 5 });

    assert.deepEqual(dialogs, [{ type: 'confirm', message: request.message }]);

    const answers = seen.sent.filter((f) => f.action === 'confirm');
    assert.deepEqual(answers, [{
      action: 'confirm', callback_id: request.callback_id, proceed: accept, feedback,
    }]);

    const resolved = seen.received.find((f) => f.type === 'confirmation_resolved');
    assert.equal(resolved.callback_id, request.callback_id);
    assert.equal(resolved.proceed, accept);
    assert.equal(resolved.feedback, feedback);
    assert.equal(resolved.reason, 'user');

    assert.ok(!seen.received.some((f) => f.type === 'error'),
              `the server rejected a frame: ${JSON.stringify(seen.received)}`);
    assert.deepEqual(pageErrors, []);
    // Open all along; the server may already be closing it (1001) once it has its results.
    assert.equal(seen.events[0], 'open');
    assert.ok(seen.events.slice(1).every((e) => e === 'close 1001'), `socket events: ${seen.events}`);
  } finally {
    await page.screenshot({ path: path.join(settings.artifacts, screenshot), fullPage: true })
      .then(() => console.log(`  screenshot: ${path.join(settings.artifacts, screenshot)}`))
      .catch((e) => console.log(`  no screenshot: ${e.message}`));
    await page.close();
  }
}

await check('accepting the confirm() dialog: the host gets proceed=true, "Agree to continue"',
  () => confirmationRun({ step: 1, accept: true, feedback: 'Agree to continue',
                          screenshot: 'original_client_accept.png' }));

await check('dismissing the confirm() dialog: the host gets proceed=false, "Cancel execution"',
  () => confirmationRun({ step: 2, accept: false, feedback: 'Cancel execution',
                          screenshot: 'original_client_dismiss.png' }));

await check('the server exits 0 after its two results', async () => {
  const ended = await Promise.race([
    server.exited,
    new Promise((resolve) => setTimeout(() => resolve(null), 10000)),
  ]);
  assert.ok(ended, 'the server is still running');
  assert.deepEqual(ended, { code: 0, signal: null });
});

// ---- cleanup -------------------------------------------------------------------------------

await context?.close().catch(() => {});
server.kill();
rmSync(userDataDir, { recursive: true, force: true });
clearTimeout(watchdog);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
