'use strict';
// Chat and text completions through the official openai client, streaming and not, on the
// tiny model (whose tokenizer has a chat template): shapes, usage, greedy agreement between
// the streamed and whole answers, composite model strings.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const loradock = require('loradock');
const { ADAPTERS, MODEL, client, serverArgs, startServer, tempDir } = require('./helpers');

const A = `${ADAPTERS}/t_a`;
const B = `${ADAPTERS}/t_b`;

describe('completions', () => {
  let srv;
  let openai;
  before(async () => {
    srv = await startServer(serverArgs(['--adapter', `styleA=${A}`, '--adapter', `styleB=${B}`]));
    openai = client(srv.url);
  });
  after(() => srv.stop());

  const chat = (extra) => ({
    model: 'base',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
    max_tokens: 12,
    temperature: 0,
    ignore_eos: true,
    ...extra,
  });

  it('chat completion (not streamed) has OpenAI\'s shape and usage', async () => {
    const r = await openai.chat.completions.create(chat());
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, 'base');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 12);
    assert.ok(r.usage.prompt_tokens > 5);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 12);
  });

  it('chat completion streamed: role first, content deltas, finish, usage; same text', async () => {
    const whole = await openai.chat.completions.create(chat());
    const stream = await openai.chat.completions.create(chat({ stream: true, stream_options: { include_usage: true } }));
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, whole.choices[0].message.content);
    const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finish.length, 1);
    assert.equal(finish[0].choices[0].finish_reason, 'length');
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.usage);
  });

  it('streams end with data: [DONE]', async () => {
    const res = await fetch(`${srv.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'base', prompt: 'hello', max_tokens: 3, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const body = await res.text();
    const events = body.split('\n\n').filter(Boolean);
    assert.ok(events.every((e) => e.startsWith('data: ')), body);
    assert.equal(events.at(-1), 'data: [DONE]');
    for (const e of events.slice(0, -1)) JSON.parse(e.slice(6));
  });

  it('text completion, not streamed and streamed, agree', async () => {
    const req = { model: 'base', prompt: 'once upon a time', max_tokens: 10, temperature: 0, ignore_eos: true };
    const whole = await openai.completions.create(req);
    assert.match(whole.id, /^cmpl-/);
    assert.equal(whole.object, 'text_completion');
    assert.equal(whole.choices[0].finish_reason, 'length');
    assert.equal(whole.usage.completion_tokens, 10);
    let text = '';
    let finish = null;
    for await (const c of await openai.completions.create({ ...req, stream: true })) {
      assert.equal(c.object, 'text_completion');
      text += c.choices[0].text;
      finish = c.choices[0].finish_reason ?? finish;
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finish, 'length');
  });

  it('token-id prompts and stop strings', async () => {
    const ids = await openai.completions.create({ model: 'base', prompt: [1, 2, 3], max_tokens: 4, temperature: 0 });
    assert.equal(ids.usage.prompt_tokens, 3);
    const full = await openai.completions.create({
      model: 'base', prompt: 'hello world', max_tokens: 30, temperature: 0, ignore_eos: true,
    });
    const text = full.choices[0].text;
    let at = 4;
    while (at < text.length - 2 && /[\uFFFD\uD800-\uDFFF]/.test(text.slice(at, at + 2))) at++;
    const stop = text.slice(at, at + 2);
    const cut = await openai.completions.create({
      model: 'base', prompt: 'hello world', max_tokens: 30, temperature: 0, ignore_eos: true, stop: [stop],
    });
    assert.equal(cut.choices[0].finish_reason, 'stop');
    assert.equal(cut.choices[0].text, text.slice(0, text.indexOf(stop)));
  });

  it('adapters and composite model strings are the exact weighted sums', async () => {
    const prompt = 'hello world';
    const run = async (model) => (await openai.completions.create({
      model, prompt, max_tokens: 16, temperature: 0, ignore_eos: true,
    })).choices[0].text;
    const base = await run('base');
    const a = await run('styleA');
    const mix = await run('base+styleA:0.7+styleB:0.3');
    assert.notEqual(a, base);
    assert.notEqual(mix, a);
    assert.equal(await run('styleA:0.7+styleB:0.3'), mix);
    assert.equal(await run('base+styleA:0'), base);
    // The same composite straight through the binding, in this process.
    const rt = await loradock.open({
      model: MODEL, storeRoots: [ADAPTERS], allowUnverified: true, threads: 1, budgetBytes: 64 << 20,
      maxContext: 256, cacheDir: tempDir('direct'),
    });
    try {
      const direct = await rt.generateText({
        prompt, maxTokens: 16, ignoreEos: true,
        adapters: [{ source: A, weight: 0.7 }, { source: B, weight: 0.3 }],
      });
      assert.equal(direct.text, mix);
    } finally {
      await rt.close();
    }
  });
});
