// SPDX-License-Identifier: BSL-1.0
//
// Drives the task_server dashboard (examples/task_server) in Debian's chromium through
// playwright-core, as two users, and checks what each of them sees.
//
//   node dashboard.test.mjs <path/to/task_server> [artifact-dir]
//
// It starts `task_server --port 0 --host 127.0.0.1` (reading the port from its
// `LISTENING <port>` line), opens the dashboard as alice (two tabs) and as bob, and checks:
// alice's task progresses, its failed step and its confirmation open a <dialog> that she
// answers (and that closes in her other tab), a long task shows heartbeats and can be
// cancelled (GET /api/tasks says `cancelled`), bob sees none of it, and SIGTERM makes the
// server exit 0 after closing the pages' connections with 1001. Screenshots go to the
// artifact directory (default: the current directory): dashboard-alice.png,
// dashboard-bob.png and dashboard-confirm.png (a confirmation dialog open mid-task).
//
// Prints `N passed, M failed` last; exits 1 when anything failed or could not run.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const CHROMIUM = process.env.WSMANAGER_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu',
  '--disable-background-networking', '--disable-quic', '--no-first-run',
  '--disable-component-update', '--disable-sync'];
const WATCHDOG_MS = 150_000;
const VIEWPORT = { width: 1200, height: 820 };

const results = [];
let server = null;
let browser = null;

function log(line) {
  console.log(`dashboard.test: ${line}`);
}

function summaryAndExit(extraFailure) {
  if (extraFailure) results.push({ name: extraFailure, ok: false });
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

async function check(name, body) {
  try {
    await body();
    results.push({ name, ok: true });
    log(`ok     ${name}`);
    return true;
  } catch (error) {
    results.push({ name, ok: false });
    log(`FAILED ${name}: ${error && error.message ? error.message.split('\n').slice(0, 8).join(' | ') : error}`);
    return false;
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// ---- preconditions: fail loudly, never skip -------------------------------------------

const [serverBinary, artifactArg] = process.argv.slice(2);
if (!serverBinary) {
  console.error('usage: node dashboard.test.mjs <path/to/task_server> [artifact-dir]');
  summaryAndExit('arguments');
}
if (!existsSync(serverBinary)) {
  console.error(`dashboard.test: no task_server at ${serverBinary}; build the target task_server`);
  summaryAndExit('task_server binary present');
}
if (!existsSync(CHROMIUM)) {
  console.error(`dashboard.test: no chromium at ${CHROMIUM}; run scripts/install-demo-deps.sh ` +
                '(Debian package "chromium"), or configure with -DWSMANAGER_BROWSER_TESTS=OFF');
  summaryAndExit('chromium present');
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (error) {
  console.error('dashboard.test: playwright-core is not installed in tests/browser_demo/node_modules: ' +
                'run scripts/install-demo-deps.sh (npm ci in tests/browser_demo), or configure with ' +
                `-DWSMANAGER_BROWSER_TESTS=OFF (${error.message})`);
  summaryAndExit('playwright-core installed');
}
const artifacts = path.resolve(artifactArg || '.');
mkdirSync(artifacts, { recursive: true });

const watchdog = setTimeout(() => {
  log(`watchdog: still running after ${WATCHDOG_MS / 1000} s; giving up`);
  if (server) server.kill('SIGKILL');
  summaryAndExit('finished within the watchdog');
}, WATCHDOG_MS);

// ---- the server -------------------------------------------------------------------------

const serverOutput = [];

function startServer() {
  const env = { ...process.env, WEBSOCKET_LOG_LEVEL: 'warning' };
  // Development identities (?user_id=) and any origin, whatever the caller's shell says.
  for (const name of ['WEBSOCKET_AUTH_SECRET', 'WEBSOCKET_AUTH_PUBLIC_KEY',
                      'WEBSOCKET_AUTH_ISSUER', 'WEBSOCKET_AUTH_AUDIENCE',
                      'WEBSOCKET_ALLOWED_ORIGINS', 'WEBSOCKET_HOST',
                      'WEBSOCKET_PORT', 'WEBSOCKET_TLS_CERT', 'WEBSOCKET_TLS_KEY']) {
    delete env[name];
  }
  const child = spawn(serverBinary, ['--port', '0', '--host', '127.0.0.1'], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const port = new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('no LISTENING line within 20 s')), 20_000);
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        serverOutput.push(line);
        const match = /^LISTENING (\d+)$/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      }
    });
    child.stderr.on('data', (chunk) => serverOutput.push(...String(chunk).trimEnd().split('\n')));
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`task_server exited early (code ${code}, signal ${signal})`));
    });
  });
  return { child, port, exited };
}

// ---- pages ------------------------------------------------------------------------------

const consoleErrors = [];
const consoleAll = [];  // printed when something failed

async function openDashboard(base, user, label) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (message) => {
    consoleAll.push(`${label} ${message.type()}: ${message.text()}`);
    if (message.type() === 'error') consoleErrors.push(`${label}: ${message.text()}`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`${label}: ${error.message}`));
  await page.goto(`${base}/?user_id=${encodeURIComponent(user)}`);
  await page.locator('#conn[data-state="connected"]').waitFor();
  await recordChanges(page);
  return { context, page };
}

// Records, in the page, every value each task's progress bar takes and every notice shown,
// so the checks do not depend on sampling them at the right moment on a busy machine.
async function recordChanges(page) {
  await page.evaluate(() => {
    const seen = { progress: {}, notices: [] };
    window.__seen = seen;
    new MutationObserver((records) => {
      for (const record of records) {
        const bar = record.target;
        if (!(bar instanceof HTMLProgressElement)) continue;
        const id = bar.closest('li.task').dataset.taskId;
        (seen.progress[id] ||= []).push(bar.value);
      }
    }).observe(document.getElementById('task-list'),
               { attributes: true, attributeFilter: ['value'], subtree: true });
    const notice = document.getElementById('notice-text');
    new MutationObserver(() => seen.notices.push(notice.textContent))
      .observe(notice, { childList: true, characterData: true, subtree: true });
  });
}

async function newestTaskId(page, previous) {
  const card = page.locator('#task-list > li.task').first();
  await card.waitFor();
  const handle = await page.waitForFunction((old) => {
    const node = document.querySelector('#task-list > li.task');
    return node && node.dataset.taskId !== old ? node.dataset.taskId : null;
  }, previous ?? null);
  return handle.jsonValue();
}

const card = (page, id) => page.locator(`li.task[data-task-id="${id}"]`);

async function waitForState(page, id, state, timeout = 15_000) {
  await page.locator(`li.task[data-task-id="${id}"][data-state="${state}"]`).waitFor({ timeout });
}

async function openDialog(page, kind) {
  const dialog = page.locator(`#confirm-dialog[open][data-kind="${kind}"]`);
  await dialog.waitFor({ timeout: 15_000 });
  return dialog;
}

const dialogOpen = (page) => page.locator('#confirm-dialog').evaluate((d) => d.open);

async function dialogClosed(page, timeout = 5000) {
  await page.waitForFunction(() => !document.getElementById('confirm-dialog').open, null, { timeout });
}

// ---- the test ---------------------------------------------------------------------------

let base = '';
let alice;
let aliceTab2;
let bob;
const aliceTaskIds = [];

try {
  server = startServer();
  const port = await server.port;
  base = `http://127.0.0.1:${port}`;
  log(`task_server listening on ${port}`);

  await check('HTTP API: static files, empty list, 400 on bad input', async () => {
    for (const [file, type] of [['/', 'text/html'], ['/app.js', 'javascript'], ['/style.css', 'text/css']]) {
      const response = await fetch(base + file);
      expect(response.status === 200, `${file}: HTTP ${response.status}`);
      expect((response.headers.get('content-type') || '').includes(type), `${file}: content-type`);
    }
    const list = await fetch(`${base}/api/tasks`);
    expect(list.status === 200, `GET /api/tasks: HTTP ${list.status}`);
    expect(JSON.stringify(await list.json()) === '[]', 'GET /api/tasks is not [] at first');
    const post = (body) => fetch(`${base}/api/tasks`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body,
    });
    const invalid = await post('{"user_id": "alice", ');
    expect(invalid.status === 400, `invalid JSON: HTTP ${invalid.status}`);
    expect((await invalid.json()).error === 'invalid_json', 'invalid JSON: error code');
    const bad = await post(JSON.stringify({ user_id: 'alice', task: { name: 'x', steps: [] } }));
    expect(bad.status === 400, `bad definition: HTTP ${bad.status}`);
    expect((await bad.json()).error === 'invalid_task', 'bad definition: error code');
  });

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  log(`chromium ${browser.version()}`);

  await check('the dashboard connects as alice (two tabs) and as bob', async () => {
    alice = await openDashboard(base, 'alice', 'alice');
    aliceTab2 = { page: await alice.context.newPage() };
    aliceTab2.page.setDefaultTimeout(15_000);
    aliceTab2.page.on('pageerror', (error) => consoleErrors.push(`alice tab 2: ${error.message}`));
    await aliceTab2.page.goto(`${base}/?user_id=alice`);
    await aliceTab2.page.locator('#conn[data-state="connected"]').waitFor();
    await recordChanges(aliceTab2.page);
    bob = await openDashboard(base, 'bob', 'bob');
    expect(await alice.page.locator('#user-name').textContent() === 'alice', 'user name shown');
    expect(await bob.page.locator('#user-name').textContent() === 'bob', 'user name shown');
  });

  let sampleId = null;
  await check('alice starts the sample task and its progress bar advances', async () => {
    await alice.page.locator('#start-sample').click();
    sampleId = await newestTaskId(alice.page);
    aliceTaskIds.push(sampleId);
    // The first step's progress, up to the failure of the second one (which waits for alice).
    await waitForState(alice.page, sampleId, 'waiting_confirmation');
    const values = await alice.page.evaluate((id) => window.__seen.progress[id] || [], sampleId);
    log(`progress values seen: ${values.join(' ')}`);
    expect(values.length >= 3, `only ${values.length} progress value(s) seen`);
    expect(values.every((v, i) => i === 0 || v >= values[i - 1]), 'progress went backwards');
    expect(values[values.length - 1] > values[0], 'progress did not increase');
  });

  await check('bob gets the broadcast notice, and none of alice\'s tasks', async () => {
    await bob.page.waitForFunction(
      () => window.__seen.notices.some((n) => n.includes('alice started a task')));
    expect(await bob.page.locator('li.task').count() === 0, 'bob sees a task card');
  });

  await check('a failed step opens alice\'s dialog; she retries', async () => {
    const dialog = await openDialog(alice.page, 'failure');
    expect((await dialog.locator('#confirm-error-code').textContent()) === 'E_VALIDATION',
           'error code E_VALIDATION shown');
    await waitForState(alice.page, sampleId, 'waiting_confirmation');
    expect(!(await dialogOpen(bob.page)), 'bob has a dialog open');
    await alice.page.locator('#confirm-proceed').click();
    await dialogClosed(alice.page);
    // Her other tab closes it too (confirmation_resolved).
    await dialogClosed(aliceTab2.page);
  });

  await check('the confirmation step asks in both of alice\'s tabs; answering in one closes the other', async () => {
    const dialog = await openDialog(alice.page, 'confirmation');
    await openDialog(aliceTab2.page, 'confirmation');
    expect((await dialog.locator('#confirm-title').textContent()).includes('Publish the results?'),
           'question shown');
    expect(!(await dialogOpen(bob.page)), 'bob has a dialog open');
    await alice.page.locator('#confirm-feedback').fill('Looks good, ship it');
    await alice.page.screenshot({ path: path.join(artifacts, 'dashboard-confirm.png'), animations: 'disabled' });
    await alice.page.locator('#confirm-proceed').click();
    await dialogClosed(alice.page);
    await dialogClosed(aliceTab2.page);
  });

  await check('the sample task completes at 100% with alice\'s feedback in its log', async () => {
    await waitForState(alice.page, sampleId, 'completed');
    const value = await card(alice.page, sampleId).locator('.bar').evaluate((node) => node.value);
    expect(value === 100, `progress ${value}% at the end`);
    await card(alice.page, sampleId).locator('.log', { hasText: 'Looks good, ship it' }).waitFor();
  });

  let longId = null;
  await check('a long custom task shows heartbeats; alice cancels it; the API says cancelled', async () => {
    await alice.page.locator('#custom summary').click();
    await alice.page.locator('#custom-json').fill(JSON.stringify({
      name: 'Long export', steps: [{ name: 'export', work_ms: 60000 }], heartbeat_ms: 500,
    }, null, 2));
    await alice.page.locator('#start-custom').click();
    longId = await newestTaskId(alice.page, sampleId);
    aliceTaskIds.push(longId);
    await waitForState(alice.page, longId, 'running');
    await card(alice.page, longId).locator('.heartbeat.beat').waitFor({ timeout: 5000 });
    await card(alice.page, longId).locator('button.cancel').click();
    await waitForState(alice.page, longId, 'cancelled', 5000);
    await alice.page.locator('#custom summary').click();  // fold the form again
    const tasks = await (await fetch(`${base}/api/tasks?user_id=alice`)).json();
    const task = tasks.find((t) => t.id === longId);
    expect(task, 'the task is in GET /api/tasks?user_id=alice');
    expect(task.state === 'cancelled', `state ${task.state}`);
    expect(task.progress < 100, 'a cancelled task did not finish its work');
  });

  await check('bob\'s page shows none of alice\'s tasks, dialogs or logs', async () => {
    expect(await bob.page.locator('li.task').count() === 0, 'bob has task cards');
    expect(!(await dialogOpen(bob.page)), 'bob has a dialog open');
    const text = await bob.page.locator('body').innerText();
    for (const needle of [...aliceTaskIds, 'Import data', 'Long export', 'Publish the results?',
                          'E_VALIDATION']) {
      expect(!text.includes(needle), `bob's page mentions "${needle}"`);
    }
    const own = await (await fetch(`${base}/api/tasks?user_id=bob`)).json();
    expect(own.length === 0, 'GET /api/tasks?user_id=bob is not empty');
  });

  await check('no errors in the pages\' consoles', async () => {
    expect(consoleErrors.length === 0, consoleErrors.join(' | '));
  });

  await check('screenshots saved', async () => {
    await alice.page.screenshot({ path: path.join(artifacts, 'dashboard-alice.png'), fullPage: true, animations: 'disabled' });
    await bob.page.screenshot({ path: path.join(artifacts, 'dashboard-bob.png'), animations: 'disabled' });
    log(`screenshots in ${artifacts}`);
  });

  await check('SIGTERM: notice, exit status 0, and the pages see close code 1001', async () => {
    // A task waiting for an answer when the server stops: it is cancelled, its dialog closes.
    await alice.page.locator('#start-sample').click();
    const lastId = await newestTaskId(alice.page, longId);
    await openDialog(alice.page, 'failure');
    server.child.kill('SIGTERM');
    const exit = await Promise.race([
      server.exited,
      new Promise((resolve) => setTimeout(() => resolve(null), 15_000)),
    ]);
    expect(exit !== null, 'task_server did not exit within 15 s of SIGTERM');
    expect(exit.code === 0 && exit.signal === null,
           `task_server exited with code ${exit.code}, signal ${exit.signal}`);
    for (const [label, page] of [['alice', alice.page], ['bob', bob.page]]) {
      await page.waitForFunction(() => document.body.dataset.closeCode !== undefined, null,
                                 { timeout: 5000 });
      const code = await page.evaluate(() => document.body.dataset.closeCode);
      expect(code === '1001', `${label}'s page saw close code ${code}`);
      const notice = await page.locator('#notice-text').textContent();
      expect(notice.includes('shutting down'), `${label}'s notice: "${notice}"`);
    }
    await waitForState(alice.page, lastId, 'cancelled', 1000).catch(() => {
      throw new Error('the task waiting for an answer was not shown cancelled');
    });
    expect(!(await dialogOpen(alice.page)), 'alice\'s dialog is still open after the shutdown');
  });
} catch (error) {
  results.push({ name: 'setup', ok: false });
  log(`FAILED setup: ${error.message}`);
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
  if (server && server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill('SIGKILL');
  }
  if (results.some((r) => !r.ok)) {
    log('console messages of the pages:');
    for (const line of consoleAll) console.log(`  | ${line}`);
    log('task_server output:');
    for (const line of serverOutput) console.log(`  | ${line}`);
  }
}
summaryAndExit();
