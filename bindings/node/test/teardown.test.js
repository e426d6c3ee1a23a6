'use strict';
// Teardown: abandoned generations are collected and cancel their requests; a process that
// exits (or a worker that is terminated) with runtimes and streams still live ends cleanly.
// Threads reading streams may outlive the JS environment: they must not touch its
// thread-safe functions once Node has finalized them.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { describe, it } = require('node:test');
const v8 = require('node:v8');
const vm = require('node:vm');
const { Worker } = require('node:worker_threads');
const loradock = require('..');
const { runtimeOptions, until } = require('./helpers');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const PKG = path.resolve(__dirname, '..');
const SCRIPT = `
  const loradock = require(${JSON.stringify(PKG)});
  const opts = JSON.parse(process.env.OPTS);
  (async () => {
    const rt = await loradock.open(opts);
    const a = rt.generate({ prompt: 'hello', maxTokens: 200, ignoreEos: true });
    rt.generate({ prompt: 'never read', maxTokens: 200, ignoreEos: true });
    await a.next();
    if (process.env.MODE === 'waiting') a.next(); // exit while a batch is awaited
    setTimeout(() => process.exit(0), 20);
  })();
`;

function runChild(mode) {
  return new Promise((resolve) => {
    const env = { ...process.env, MODE: mode, OPTS: JSON.stringify(runtimeOptions({ streamBuffer: 2 })) };
    const child = spawn(process.execPath, ['-e', SCRIPT], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

describe('teardown', () => {
  it('abandoned generations are collected and their requests cancelled', async () => {
    const rt = await loradock.open(runtimeOptions({ streamBuffer: 2 }));
    try {
      (() => {
        for (let i = 0; i < 4; i++) rt.generate({ prompt: `x${i}`, maxTokens: 200, ignoreEos: true });
      })();
      const s = await until(async () => {
        gc();
        await new Promise((r) => setTimeout(r, 20));
        const st = await rt.stats();
        return st.requestsCancelled === 4 && st.running === 0 ? st : null;
      }, 20000);
      assert.ok(s, 'the 4 abandoned requests were cancelled');
    } finally {
      await rt.close();
    }
  });

  it('a process exiting with live runtimes and streams exits cleanly', async () => {
    for (const mode of ['idle', 'waiting']) {
      const runs = await Promise.all(Array.from({ length: 4 }, () => runChild(mode)));
      for (const r of runs) assert.deepEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null }, r.stderr);
    }
  });

  it('terminating a worker mid-generation leaves the main thread working', async () => {
    for (let i = 0; i < 3; i++) {
      // The worker reads streams without pause (batches cross threads while it is torn
      // down) and keeps a paused one.
      const w = new Worker(`
        const { parentPort } = require('node:worker_threads');
        const loradock = require(${JSON.stringify(PKG)});
        (async () => {
          const rt = await loradock.open(${JSON.stringify(runtimeOptions({ streamBuffer: 2 }))});
          const paused = rt.generate({ prompt: 'paused', maxTokens: 200, ignoreEos: true });
          await paused.next();
          let told = false;
          for (;;) {
            for await (const ev of rt.generate({ prompt: 'in a worker', maxTokens: 50, ignoreEos: true })) {
              if (!told) parentPort.postMessage('running');
              told = true;
            }
          }
        })();
      `, { eval: true });
      await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      await new Promise((r) => setTimeout(r, 20 * i));
      assert.equal(await w.terminate(), 1, 'terminated, not ended by itself');
    }
    const rt = await loradock.open(runtimeOptions());
    const r = await rt.generateText({ prompt: 'still here', maxTokens: 4, ignoreEos: true });
    assert.equal(r.usage.completionTokens, 4);
    await rt.close();
  });
});
