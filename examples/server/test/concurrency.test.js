'use strict';
// Concurrent clients with different adapters, streamed and not: each gets exactly the text
// it gets alone (greedy decoding is independent of the batch it runs in).
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const { ADAPTERS, client, serverArgs, startServer } = require('./helpers');

const MODELS = ['base', 'qv', 'mlp', 'a', 'b', 'base+a:0.7+b:0.3', 'qv+mlp:0.5'];
const PROMPTS = ['hello world', 'the cat sat', 'once upon a time'];

describe('concurrency', () => {
  let srv;
  before(async () => {
    srv = await startServer(serverArgs([
      '--adapter', `qv=${ADAPTERS}/r8_qv`, '--adapter', `mlp=${ADAPTERS}/r16_mlp`,
      '--adapter', `a=${ADAPTERS}/t_a`, '--adapter', `b=${ADAPTERS}/t_b`,
    ]));
  });
  after(() => srv.stop());

  /** One client's request: chat or text, streamed or not; resolves to its text. */
  async function ask(i) {
    const openai = client(srv.url); // a client (connection pool) per caller
    const model = MODELS[i % MODELS.length];
    const common = { model, max_tokens: 10 + (i % 5), temperature: 0, ignore_eos: true };
    const stream = i % 2 === 1;
    if (i % 3 === 0) {
      const req = { ...common, messages: [{ role: 'user', content: PROMPTS[i % 3] }] };
      if (!stream) return (await openai.chat.completions.create(req)).choices[0].message.content;
      let text = '';
      for await (const c of await openai.chat.completions.create({ ...req, stream })) text += c.choices[0]?.delta?.content ?? '';
      return text;
    }
    const req = { ...common, prompt: PROMPTS[i % 3] };
    if (!stream) return (await openai.completions.create(req)).choices[0].text;
    let text = '';
    for await (const c of await openai.completions.create({ ...req, stream })) text += c.choices[0].text;
    return text;
  }

  it('16 concurrent clients match their sequential answers', async () => {
    const n = 16;
    const alone = [];
    for (let i = 0; i < n; i++) alone.push(await ask(i));
    const together = await Promise.all(Array.from({ length: n }, (_, i) => ask(i)));
    for (let i = 0; i < n; i++) assert.equal(together[i], alone[i], `client ${i} (${MODELS[i % MODELS.length]})`);
    assert.ok(new Set(alone).size >= 10, 'models and prompts give different answers');
  });
});
