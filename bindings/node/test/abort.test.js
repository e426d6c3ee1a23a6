'use strict';
// Abort and early exit. The stream buffer is 2 events, so a request whose reader has not
// asked for more is paused and cannot finish before the abort, however slow the machine.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const loradock = require('..');
const { runtimeOptions, drain, until } = require('./helpers');

describe('abort', () => {
  let rt;
  before(async () => {
    rt = await loradock.open(runtimeOptions({ streamBuffer: 2 }));
  });
  after(() => rt.close());

  const long = { prompt: 'hello world', maxTokens: 200, ignoreEos: true };

  it('aborting mid-stream ends the iterator with a cancelled done event', async () => {
    const ac = new AbortController();
    const gen = rt.generate(long, { signal: ac.signal });
    const first = await gen.next();
    assert.equal(first.value.type, 'token');
    ac.abort();
    const rest = await drain(gen);
    assert.equal(rest.end.finishReason, 'cancelled');
    assert.ok(rest.end.usage.completionTokens < 200);
    assert.deepEqual(await gen.next(), { value: undefined, done: true });
  });

  it('a signal aborted before the start cancels at once', async () => {
    const ac = new AbortController();
    ac.abort();
    const { end } = await drain(rt.generate(long, { signal: ac.signal }));
    assert.equal(end.finishReason, 'cancelled');
    assert.ok(end.usage.completionTokens < 200);
  });

  it('cancel() works like an abort; aborting after the end changes nothing', async () => {
    const gen = rt.generate(long);
    await gen.next();
    gen.cancel();
    gen.cancel(); // idempotent
    assert.equal((await drain(gen)).end.finishReason, 'cancelled');

    const ac = new AbortController();
    const done = await drain(rt.generate({ ...long, maxTokens: 3 }, { signal: ac.signal }));
    ac.abort();
    assert.equal(done.end.finishReason, 'length');
  });

  it('breaking out of for-await cancels the request and frees it', async () => {
    const before = await rt.stats();
    let n = 0;
    for await (const ev of rt.generate(long)) {
      assert.equal(ev.type, 'token');
      if (++n === 2) break;
    }
    const s = await until(async () => {
      const st = await rt.stats();
      return st.requestsCancelled === before.requestsCancelled + 1 && st.running === 0 ? st : null;
    });
    assert.ok(s, 'the request was cancelled');
  });

  it('abort during many paused requests cancels each of them', async () => {
    const ac = new AbortController();
    const gens = Array.from({ length: 6 }, () => rt.generate(long, { signal: ac.signal }));
    await Promise.all(gens.map((g) => g.next()));
    ac.abort();
    const ends = await Promise.all(gens.map(drain));
    for (const { end } of ends) assert.equal(end.finishReason, 'cancelled');
  });
});
