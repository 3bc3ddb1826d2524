// SPDX-License-Identifier: BSL-1.0
//
// What the browser tests share: their arguments (`<server> [--chromium PATH] [--timeout-s S]`,
// plus `--artifacts DIR` for tests that keep screenshots) and their prerequisites (the server
// executable, Debian's chromium, playwright-core in this folder's node_modules). A missing
// one fails the test with the reason and the usual last line `0 passed, 1 failed`.

import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));

function parseArguments(argv, usage, withArtifacts) {
  const settings = { server: null, chromium: '/usr/bin/chromium', timeoutS: 90 };
  if (withArtifacts) settings.artifacts = process.cwd();
  for (let i = 0; i < argv.length; ++i) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--chromium') settings.chromium = value();
    else if (withArtifacts && arg === '--artifacts') settings.artifacts = value();
    else if (arg === '--timeout-s') settings.timeoutS = Number(value());
    else if (!settings.server) settings.server = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!settings.server) throw new Error(`usage: ${usage}`);
  return settings;
}

/** Ends the test as failed, with the reason. */
export function fatal(name, message) {
  console.error(`${name}: ${message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

/**
 * The test's settings and playwright-core's `chromium`, once every prerequisite is there.
 * `name` prefixes messages; `usage` is the command line shown on a bad one.
 */
export async function setUp(name, usage, { withArtifacts = false } = {}) {
  let settings;
  try {
    settings = parseArguments(process.argv.slice(2), usage, withArtifacts);
  } catch (e) {
    fatal(name, e.message);
  }
  if (!existsSync(settings.server)) fatal(name, `server executable not found: ${settings.server}`);
  if (!existsSync(settings.chromium)) {
    fatal(name, `chromium not found at ${settings.chromium}: run scripts/install-browser-deps.sh ` +
                '(or configure with -DWSMANAGER_BROWSER_TESTS=OFF)');
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    fatal(name, `playwright-core is not installed in ${here}/node_modules: run ` +
                `scripts/install-browser-deps.sh (npm ci in tests/browser): ${e.message}`);
  }
  if (withArtifacts) mkdirSync(settings.artifacts, { recursive: true });
  return { settings, chromium };
}
