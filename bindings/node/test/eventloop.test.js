'use strict';
// The event loop stays responsive while long generations run: model loading, waits for
// events and shutdown happen off the JS thread, so a 20 ms ticker keeps firing on time.
const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const loradock = require('..');
const { runtimeOptions } = require('./helpers');

const TICK_MS = 20;

/** Run `fn` while a ticker measures how late each tick fires. */
async function withTicker(fn) {
  const lags = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(now - last - TICK_MS);
    last = now;
  }, TICK_MS);
  const t0 = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return { lags, elapsed: performance.now() - t0 };
}

describe('event loop', () => {
  it('keeps ticking during model load, long generations and close', async () => {
    let rt;
    const { lags, elapsed } = await withTicker(async () => {
      rt = await loradock.open(runtimeOptions());
      // 8 requests of 200 tokens each, read as fast as they come: seconds of decoding.
      const gens = Array.from({ length: 8 }, (_, i) =>
        rt.generateText({ prompt: `story ${i}`, maxTokens: 200, ignoreEos: true }));
      const results = await Promise.all(gens);
      for (const r of results) assert.equal(r.usage.completionTokens, 200);
      await rt.close();
    });
    assert.ok(elapsed > 10 * TICK_MS, `the work took ${elapsed.toFixed(0)} ms`);
    const expected = elapsed / TICK_MS;
    const maxLag = Math.max(...lags);
    // A loop that blocked on the decoder would fire a handful of ticks with lags of the
    // order of the whole run; a loaded 2-core machine still keeps most ticks and lag low.
    assert.ok(lags.length >= expected * 0.5, `${lags.length} ticks of ${expected.toFixed(0)} expected`);
    assert.ok(maxLag < Math.max(500, elapsed / 4), `max lag ${maxLag.toFixed(0)} ms over ${elapsed.toFixed(0)} ms`);
  });

  it('a consumer that awaits timers between events still gets every event', async () => {
    const rt = await loradock.open(runtimeOptions({ streamBuffer: 2 }));
    try {
      let n = 0;
      let end;
      for await (const ev of rt.generate({ prompt: 'slow reader', maxTokens: 30, ignoreEos: true })) {
        if (ev.type === 'token') n++;
        else end = ev;
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(end.finishReason, 'length');
      assert.equal(end.usage.completionTokens, 30);
      assert.ok(n >= 1 && n <= 30);
    } finally {
      await rt.close();
    }
  });
});
