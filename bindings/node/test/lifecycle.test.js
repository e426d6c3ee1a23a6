'use strict';
// Opening and closing runtimes, option validation, stats and the state after close.
const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const loradock = require('..');
const { runtimeOptions, drain } = require('./helpers');

describe('lifecycle', () => {
  it('reports the C library version', () => {
    assert.match(loradock.version(), /^\d+\.\d+\.\d+$/);
    assert.equal(loradock.statusName(300), 'LORADOCK_STATUS_BUSY');
    assert.equal(loradock.statusName(12345), 'LORADOCK_STATUS_UNKNOWN');
  });

  it('opens a runtime whose stats show the model under the budget', async () => {
    const rt = await loradock.open(runtimeOptions());
    try {
      const s = await rt.stats();
      assert.equal(s.budgetBytes, 64 * 1024 * 1024);
      assert.ok(s.baseWeightBytes > 0);
      assert.ok(s.usedBytes >= s.baseWeightBytes && s.usedBytes <= s.budgetBytes);
      assert.equal(s.requestsSubmitted, 0);
      assert.equal(s.adaptersRegistered, 0);
    } finally {
      await rt.close();
    }
  });

  it('close is idempotent and later calls fail with SHUT_DOWN', async () => {
    const rt = await loradock.open(runtimeOptions());
    const first = rt.close();
    assert.equal(rt.close(), first);
    await first;
    await assert.rejects(rt.stats(), { code: 'LORADOCK_STATUS_SHUT_DOWN' });
    await assert.rejects(rt.registerAdapter('a', '/x'), { code: 'LORADOCK_STATUS_SHUT_DOWN' });
    await assert.rejects(drain(rt.generate({ prompt: 'hi', maxTokens: 2 })), {
      name: 'LoradockError',
      code: 'LORADOCK_STATUS_SHUT_DOWN',
    });
  });

  it('closing ends running requests with SHUT_DOWN errors', async () => {
    const rt = await loradock.open(runtimeOptions({ streamBuffer: 2 }));
    const gen = rt.generate({ prompt: 'hello world', maxTokens: 200, ignoreEos: true });
    const first = await gen.next();
    assert.equal(first.value.type, 'token');
    await rt.close();
    // The request cannot have finished: it is paused after 2 buffered events.
    await assert.rejects(drain(gen), { code: 'LORADOCK_STATUS_SHUT_DOWN' });
  });

  it('rejects bad options before loading anything', async () => {
    await assert.rejects(loradock.open({}), { code: 'LORADOCK_STATUS_INVALID_ARGUMENT', message: /model/ });
    await assert.rejects(loradock.open(runtimeOptions({ threads: -1 })), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /threads/,
    });
    await assert.rejects(loradock.open(runtimeOptions({ storeRoots: 'x' })), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
      message: /storeRoots/,
    });
    await assert.rejects(loradock.open(runtimeOptions({ device: 'cuda:7' })), {
      code: 'LORADOCK_STATUS_INVALID_ARGUMENT',
    });
    await assert.rejects(loradock.open(runtimeOptions({ budgetBytes: 1024 })), {
      code: 'LORADOCK_STATUS_OVER_BUDGET',
    });
  });
});
