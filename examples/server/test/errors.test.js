'use strict';
// Errors in OpenAI's shape: unknown adapters and models → 404 (the client raises
// NotFoundError), malformed bodies and invalid parameters → 400, refused adapters → 500,
// unknown routes → 404, wrong methods → 405.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const OpenAI = require('openai');
const { ADAPTERS, client, postJson, serverArgs, startServer } = require('./helpers');

/** Assert an OpenAI error body. */
function assertErrorBody(body, type) {
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(body.error.type, type);
  assert.ok('param' in body.error && 'code' in body.error);
}

describe('errors', () => {
  let srv;
  let openai;
  before(async () => {
    srv = await startServer(serverArgs(['--adapter', `dora=${ADAPTERS}/refuse_dora`, '--adapter', `a=${ADAPTERS}/t_a`]));
    openai = client(srv.url);
  });
  after(() => srv.stop());

  const msgs = [{ role: 'user', content: 'hi' }];

  it('an unknown adapter is a 404 the client raises as NotFoundError', async () => {
    for (const model of ['ghost', 'base+a:0.5+ghost:0.5']) {
      await assert.rejects(openai.chat.completions.create({ model, messages: msgs, max_tokens: 4 }), (e) => {
        assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
        assert.equal(e.status, 404);
        assert.equal(e.code, 'model_not_found');
        assert.match(e.message, /ghost/);
        return true;
      });
    }
    // Streaming requests fail before any event is sent.
    await assert.rejects(
      openai.completions.create({ model: 'ghost', prompt: 'hi', max_tokens: 4, stream: true }),
      (e) => e instanceof OpenAI.NotFoundError,
    );
    await assert.rejects(openai.models.retrieve('ghost'), (e) => e.status === 404);
  });

  it('a malformed body is a 400 with an OpenAI error body', async () => {
    for (const path of ['/v1/chat/completions', '/v1/completions']) {
      const r = await postJson(`${srv.url}${path}`, '{"model": "base", "messages": [', true);
      assert.equal(r.status, 400);
      assertErrorBody(r.body, 'invalid_request_error');
      assert.match(r.body.error.message, /JSON/);
    }
    const empty = await postJson(`${srv.url}/v1/completions`, '', true);
    assert.equal(empty.status, 400);
    const notObject = await postJson(`${srv.url}/v1/completions`, [1, 2]);
    assert.equal(notObject.status, 400);
  });

  it('invalid parameters are 400s naming the parameter', async () => {
    const cases = [
      [{ model: 'base' }, 'messages'],
      [{ model: 'base', messages: msgs, temperature: 5 }, 'temperature'],
      [{ model: 'base', messages: msgs, max_tokens: 0 }, 'max_tokens'],
      [{ model: 'base', messages: msgs, n: 2 }, 'n'],
      [{ model: 'base+a:heavy', messages: msgs }, 'model'],
      [{ messages: msgs }, 'model'],
      [{ model: 'base', messages: msgs, stop: 3 }, 'stop'],
      [{ model: 'base', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, 'messages[0].content'],
    ];
    for (const [body, param] of cases) {
      const r = await postJson(`${srv.url}/v1/chat/completions`, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assertErrorBody(r.body, 'invalid_request_error');
      assert.equal(r.body.error.param, param, JSON.stringify(body));
    }
    // Checks made by loradock itself: prompt + max_tokens beyond the context.
    await assert.rejects(openai.completions.create({ model: 'base', prompt: 'hi', max_tokens: 1000 }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, 'LORADOCK_STATUS_INVALID_ARGUMENT');
      assert.match(e.message, /max_context/);
      return true;
    });
  });

  it('a refused adapter (DoRA) is a 500 whose message says why', async () => {
    await assert.rejects(openai.chat.completions.create({ model: 'dora', messages: msgs, max_tokens: 4 }), (e) => {
      assert.ok(e instanceof OpenAI.InternalServerError);
      assert.equal(e.code, 'LORADOCK_STATUS_ADAPTER');
      assert.match(e.message, /DoRA/);
      return true;
    });
    // The server goes on serving.
    const ok = await openai.chat.completions.create({ model: 'a', messages: msgs, max_tokens: 2 });
    assert.equal(ok.usage.completion_tokens, 2);
  });

  it('unknown routes are 404s and wrong methods 405s', async () => {
    const nf = await fetch(`${srv.url}/v2/nothing`);
    assert.equal(nf.status, 404);
    assertErrorBody(await nf.json(), 'invalid_request_error');
    const wrong = await fetch(`${srv.url}/v1/completions`);
    assert.equal(wrong.status, 405);
  });
});
