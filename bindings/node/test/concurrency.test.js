'use strict';
// Many generations at once: 16 concurrent requests with different adapters give exactly
// the text each gives alone (greedy), and nothing is left running or docked afterwards.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const loradock = require('..');
const { runtimeOptions, adapter, until } = require('./helpers');

const NAMES = ['r8_qv', 'r16_mlp', 't_a', 't_b'];
const PROMPTS = ['hello world', 'the cat', 'once upon a time'];

describe('concurrency', () => {
  let rt;
  before(async () => {
    rt = await loradock.open(runtimeOptions());
    for (const n of NAMES) await rt.registerAdapter(n, adapter(n));
  });
  after(() => rt.close());

  const requests = Array.from({ length: 16 }, (_, i) => ({
    prompt: PROMPTS[i % PROMPTS.length],
    maxTokens: 16 + (i % 4),
    ignoreEos: true,
    adapters: i % 5 === 4 ? [] : [NAMES[i % 5]],
  }));

  it('16 concurrent generations with different adapters match their sequential runs', async () => {
    const alone = [];
    for (const r of requests) alone.push(await rt.generateText(r));
    const together = await Promise.all(requests.map((r) => rt.generateText(r)));
    together.forEach((t, i) => {
      assert.equal(t.finishReason, 'length', `request ${i}`);
      assert.equal(t.usage.completionTokens, requests[i].maxTokens, `request ${i}`);
      assert.equal(t.text, alone[i].text, `request ${i} (${requests[i].adapters})`);
    });
    assert.ok(new Set(alone.map((a) => a.text)).size >= 10, 'adapters and prompts give different texts');
    const s = await until(async () => {
      const st = await rt.stats();
      return st.running === 0 && st.adaptersDocked === 0 && st.usedBytes === st.baseWeightBytes ? st : null;
    });
    assert.ok(s, 'disposable adapters undocked, memory back to the base weights');
    assert.equal(s.requestsCompleted, 32);
  });

  it('concurrent registrations, requests and stats interleave safely', async () => {
    const work = [];
    for (let i = 0; i < 8; i++) {
      work.push(rt.registerAdapter(`dyn${i}`, adapter(NAMES[i % 4])));
      work.push(rt.generateText({ prompt: 'hi', maxTokens: 4, ignoreEos: true, adapters: [NAMES[i % 4]] }));
      work.push(rt.stats());
    }
    const results = await Promise.all(work);
    for (let i = 0; i < 8; i++) assert.equal(results[3 * i + 1].usage.completionTokens, 4);
    assert.equal((await rt.stats()).adaptersRegistered, 4 + 8);
  });
});
