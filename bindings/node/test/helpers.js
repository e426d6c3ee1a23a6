'use strict';
// Shared test setup: the tiny fixture model and adapters of the repository, runtime options
// sized for a slow 2-core machine, and small stream utilities.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const TINY = path.join(REPO, 'tests', 'fixtures', 'tiny');
const MODEL = path.join(TINY, 'model');
const ADAPTERS = path.join(TINY, 'adapters');

const tempDirs = [];
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary directory, removed when the process exits. */
function tempDir(tag) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `loradock-node-${tag}-`));
  tempDirs.push(dir);
  return dir;
}

/** Runtime options of the tests, with `extra` merged in. */
function runtimeOptions(extra = {}) {
  return {
    model: MODEL,
    storeRoots: [ADAPTERS],
    allowUnverified: true,
    threads: 1,
    budgetBytes: 64 * 1024 * 1024,
    maxContext: 256,
    cacheDir: tempDir('cache'),
    ...extra,
  };
}

/** The path of a fixture adapter. */
function adapter(name) {
  return path.join(ADAPTERS, name);
}

/** Read a generation to its end: {tokens, text, end} (end = the done event). */
async function drain(gen) {
  const tokens = [];
  let end = null;
  for await (const ev of gen) {
    if (ev.type === 'token') {
      if (end) throw new Error('token after the done event');
      tokens.push(ev.text);
    } else if (ev.type === 'done') {
      if (end) throw new Error('two done events');
      end = ev;
    } else {
      throw new Error(`unexpected event ${JSON.stringify(ev)}`);
    }
  }
  return { tokens, text: tokens.join(''), end };
}

/** Poll `fn` until it returns a truthy value (or `ms` pass); returns the last value. */
async function until(fn, ms = 10000) {
  const deadline = Date.now() + ms;
  let v;
  while (!(v = await fn()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return v;
}

module.exports = { REPO, TINY, MODEL, ADAPTERS, tempDir, runtimeOptions, adapter, drain, until };
