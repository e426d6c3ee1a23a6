'use strict';
// Errors: every failure is a LoradockError with the C status name as `code` and the C
// library's message, whether it comes from open, a sync call, the submit or the stream.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const loradock = require('..');
const { runtimeOptions, adapter, drain } = require('./helpers');

describe('errors', () => {
  let rt;
  before(async () => {
    rt = await loradock.open(runtimeOptions());
  });
  after(() => rt.close());

  it('a bad model path fails open with IO and names the path', async () => {
    const err = await loradock.open(runtimeOptions({ model: '/nonexistent/model' })).then(
      () => assert.fail('open succeeded'),
      (e) => e,
    );
    assert.ok(err instanceof loradock.LoradockError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'LORADOCK_STATUS_IO');
    assert.equal(err.status, loradock.Status.IO);
    assert.match(err.message, /\/nonexistent\/model/);
  });

  it('an unknown adapter fails the request with UNKNOWN_ADAPTER naming it', async () => {
    const gen = rt.generate({ prompt: 'hi', maxTokens: 4, adapters: ['ghost'] });
    await assert.rejects(gen.next(), (e) => {
      assert.ok(e instanceof loradock.LoradockError);
      assert.equal(e.code, 'LORADOCK_STATUS_UNKNOWN_ADAPTER');
      assert.match(e.message, /ghost/);
      return true;
    });
    assert.deepEqual(await gen.next(), { value: undefined, done: true });
  });

  it('unregistering an unknown adapter rejects with UNKNOWN_ADAPTER', async () => {
    await assert.rejects(rt.unregisterAdapter('never'), {
      code: 'LORADOCK_STATUS_UNKNOWN_ADAPTER',
      message: /never/,
    });
  });

  it('a refused adapter (DoRA) fails at docking with ADAPTER; the runtime goes on', async () => {
    await rt.registerAdapter('dora', adapter('refuse_dora'));
    await assert.rejects(drain(rt.generate({ prompt: 'hi', maxTokens: 4, adapters: ['dora'] })), {
      code: 'LORADOCK_STATUS_ADAPTER',
      message: /DoRA/,
    });
    const ok = await drain(rt.generate({ prompt: 'hi', maxTokens: 4, ignoreEos: true }));
    assert.equal(ok.end.finishReason, 'length');
    assert.ok((await rt.stats()).dockFailures >= 1);
  });

  it('invalid registrations are refused synchronously by the C library', async () => {
    await assert.rejects(rt.registerAdapter('a+b', adapter('t_a')), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /\+/,
    });
    await assert.rejects(rt.registerAdapter('a', adapter('t_a'), { digest: 'sha256:zz' }), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
    });
    await assert.rejects(rt.registerAdapter('a', adapter('t_a'), { policy: 'forever' }), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /policy/,
    });
  });

  it('invalid requests: argument types throw at once, C checks at the first next()', async () => {
    assert.throws(() => rt.generate({ prompt: 'hi', maxTokens: -1 }), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /maxTokens/,
    });
    assert.throws(() => rt.generate({ messages: 'hi' }), { code: 'LORADOCK_STATUS_INVALID_ARGUMENT' });
    assert.throws(() => rt.generate({ prompt: 'a\u0000b' }), { message: /NUL/ });
    await assert.rejects(drain(rt.generate({ prompt: 'hi', messages: [{ role: 'user', content: 'x' }] })), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /exactly one/,
    });
    await assert.rejects(drain(rt.generate({ prompt: 'hi', maxTokens: 1000 })), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /max_context/,
    });
    await assert.rejects(drain(rt.generate({ prompt: 'hi', temperature: -1 })), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
    });
  });

  it('an inline adapter outside the store roots fails with FETCH', async () => {
    await assert.rejects(drain(rt.generate({ prompt: 'hi', maxTokens: 2, adapters: [{ source: '/etc' }] })), {
      code: 'LORADOCK_STATUS_FETCH',
    });
  });
});
