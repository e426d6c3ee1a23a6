'use strict';
// Generation: event order and usage, greedy determinism, adapters by name, inline and
// composed, chat messages, stop strings, registration generations and stats.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const loradock = require('..');
const { runtimeOptions, adapter, drain, until } = require('./helpers');

describe('generate', () => {
  let rt;
  before(async () => {
    rt = await loradock.open(runtimeOptions());
    await rt.registerAdapter('a', adapter('t_a'), { policy: 'keepWarm' });
    await rt.registerAdapter('b', adapter('t_b'), { policy: 'pinned' });
  });
  after(() => rt.close());

  const req = (extra) => ({ prompt: 'hello world', maxTokens: 12, ignoreEos: true, ...extra });

  it('yields tokens then exactly one done event with usage', async () => {
    const { tokens, text, end } = await drain(rt.generate(req()));
    assert.ok(tokens.length >= 1 && tokens.length <= 12);
    assert.ok(text.length > 0);
    assert.equal(end.finishReason, 'length');
    assert.equal(end.usage.completionTokens, 12);
    assert.ok(end.usage.promptTokens > 0);
    for (const k of ['queueMs', 'prefillMs', 'decodeMs']) assert.ok(end.usage[k] >= 0, k);
  });

  it('greedy decoding is deterministic and generateText matches the events', async () => {
    const one = await drain(rt.generate(req()));
    const two = await rt.generateText(req());
    assert.equal(two.text, one.text);
    assert.equal(two.finishReason, 'length');
    assert.deepEqual(two.usage.completionTokens, one.end.usage.completionTokens);
  });

  it('adapters change the output; inline by source equals by name', async () => {
    const base = await rt.generateText(req({ maxTokens: 24 }));
    const a = await rt.generateText(req({ maxTokens: 24, adapters: ['a'] }));
    const b = await rt.generateText(req({ maxTokens: 24, adapters: [{ name: 'b', weight: 1 }] }));
    const inline = await rt.generateText(req({ maxTokens: 24, adapters: [{ source: adapter('t_a') }] }));
    assert.notEqual(a.text, base.text);
    assert.notEqual(a.text, b.text);
    assert.equal(inline.text, a.text);
  });

  it('a weighted composite is the exact sum: "cat" equals the default', async () => {
    const mix = await rt.generateText(req({ adapters: [{ name: 'a', weight: 0.7 }, { name: 'b', weight: 0.3 }] }));
    const cat = await rt.generateText(req({
      adapters: [{ name: 'a', weight: 0.7 }, { name: 'b', weight: 0.3 }],
      combination: 'cat',
    }));
    const zero = await rt.generateText(req({ adapters: [{ name: 'a', weight: 0 }] }));
    const base = await rt.generateText(req());
    assert.equal(cat.text, mix.text);
    assert.equal(zero.text, base.text); // weight 0 is the base model
  });

  it('keep-warm and pinned adapters stay docked', async () => {
    const s = await until(async () => {
      const st = await rt.stats();
      return st.running === 0 && st.adaptersDocked === 2 ? st : null;
    });
    assert.ok(s, 'two adapters docked');
    assert.ok(s.adapterBytes > 0);
  });

  it('renders chat messages with the model template', async () => {
    const r = await rt.generateText({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 4, ignoreEos: true });
    const plain = await rt.generateText({ prompt: 'hi', maxTokens: 4, ignoreEos: true });
    assert.equal(r.usage.completionTokens, 4);
    assert.ok(r.usage.promptTokens > plain.usage.promptTokens, 'the template adds tokens');
  });

  it('token ids are used as they are', async () => {
    const r = await rt.generateText({ tokenIds: new Uint32Array([1, 2, 3]), maxTokens: 3, ignoreEos: true });
    assert.equal(r.usage.promptTokens, 3);
  });

  it('a stop string ends the request early and is not in the text', async () => {
    const full = await rt.generateText(req({ maxTokens: 40 }));
    // Two plain characters (no U+FFFD of a held-back byte, no surrogate half) past the start.
    let at = 4;
    while (at < full.text.length - 2 && /[\uFFFD\uD800-\uDFFF]/.test(full.text.slice(at, at + 2))) at++;
    const stop = full.text.slice(at, at + 2);
    assert.equal(stop.length, 2);
    const cut = await rt.generateText(req({ maxTokens: 40, stop: [stop] }));
    assert.equal(cut.finishReason, 'stop');
    assert.equal(cut.text, full.text.slice(0, full.text.indexOf(stop)));
  });

  it('re-registering is a new generation; unregistering makes the name unknown', async () => {
    const g1 = await rt.registerAdapter('x', adapter('t_a'));
    const g2 = await rt.registerAdapter('x', adapter('t_b'));
    assert.ok(g2 > g1);
    const x = await rt.generateText(req({ adapters: ['x'] }));
    const b = await rt.generateText(req({ adapters: ['b'] }));
    assert.equal(x.text, b.text);
    await rt.unregisterAdapter('x');
    await assert.rejects(rt.generateText(req({ adapters: ['x'] })), { code: 'LORADOCK_STATUS_UNKNOWN_ADAPTER' });
  });

  it('stats count requests and tokens', async () => {
    const before = await rt.stats();
    await rt.generateText(req({ maxTokens: 5 }));
    const after = await rt.stats();
    assert.equal(after.requestsSubmitted, before.requestsSubmitted + 1);
    assert.equal(after.requestsCompleted, before.requestsCompleted + 1);
    assert.equal(after.tokensGenerated, before.tokensGenerated + 5);
  });
});
