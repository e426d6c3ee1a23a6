'use strict';
// Units without a server: flags and environment, model strings, status mapping, the
// fallback chat prompt and the metrics text.
const assert = require('node:assert/strict');
const { describe, it } = require('node:test');
const { LoradockError } = require('loradock');
const { parseConfig } = require('../lib/config');
const { fromLoradock } = require('../lib/errors');
const { parseModel } = require('../lib/models');
const { fallbackPrompt, normalizeMessages } = require('../lib/prompt');
const { renderMetrics } = require('../lib/metrics');
const { parseMetrics } = require('./helpers');

describe('units', () => {
  it('parses flags over environment defaults', () => {
    const c = parseConfig(
      ['--model', '/m', '--port=0', '--adapter-root', '/r1', '--adapter-root', '/r2', '--adapter', 'a=/r1/a',
        '--allow-unverified', '--budget', '64M', '--threads', '2'],
      { LORADOCK_MAX_CONTEXT: '512', LORADOCK_THREADS: '7', LORADOCK_HOST: '0.0.0.0' },
    );
    assert.equal(c.port, 0);
    assert.equal(c.host, '0.0.0.0');
    assert.deepEqual(c.runtime.storeRoots, ['/r1', '/r2']);
    assert.equal(c.runtime.budgetBytes, 64 * 1024 * 1024);
    assert.equal(c.runtime.threads, 2); // the flag wins over LORADOCK_THREADS
    assert.equal(c.runtime.maxContext, 512);
    assert.equal(c.runtime.allowUnverified, true);
    assert.deepEqual(c.adapters, [{ name: 'a', source: '/r1/a' }]);
    assert.equal(parseConfig([], { LORADOCK_MODEL: '/env-model' }).runtime.model, '/env-model');
    assert.throws(() => parseConfig([]), /--model/);
    assert.throws(() => parseConfig(['--model', 'm', '--bogus']), /unknown flag --bogus/);
    assert.throws(() => parseConfig(['--model', 'm', '--port', 'x']), /non-negative integer/);
    assert.throws(() => parseConfig(['--model', 'm', '--adapter', 'noequals']), /NAME=SOURCE/);
    assert.equal(parseConfig(['--help']).help, true);
  });

  it('parses model strings: base, adapters, composites with weights', () => {
    assert.deepEqual(parseModel('base'), []);
    assert.deepEqual(parseModel('styleA'), [{ name: 'styleA', weight: 1 }]);
    assert.deepEqual(parseModel('base+styleA:0.7+styleB:0.3'), [
      { name: 'styleA', weight: 0.7 },
      { name: 'styleB', weight: 0.3 },
    ]);
    assert.deepEqual(parseModel('a+b:-0.5'), [{ name: 'a', weight: 1 }, { name: 'b', weight: -0.5 }]);
    for (const bad of ['', 'base+', 'a:x', 'a:', 'a+base', '+a', 42]) {
      assert.throws(() => parseModel(bad), (e) => e.status === 400, `model ${JSON.stringify(bad)}`);
    }
  });

  it('maps loradock statuses to HTTP statuses', () => {
    const status = (code) => fromLoradock(new LoradockError(code, 'm', 0)).status;
    assert.equal(status('LORADOCK_STATUS_UNKNOWN_ADAPTER'), 404);
    assert.equal(status('LORADOCK_STATUS_INVALID_ARGUMENT'), 400);
    assert.equal(status('LORADOCK_STATUS_TOKENIZER'), 400);
    assert.equal(status('LORADOCK_STATUS_BUSY'), 429);
    assert.equal(status('LORADOCK_STATUS_OVER_BUDGET'), 503);
    assert.equal(status('LORADOCK_STATUS_SHUT_DOWN'), 503);
    assert.equal(status('LORADOCK_STATUS_ADAPTER'), 500);
    assert.equal(status('LORADOCK_STATUS_INTERNAL'), 500);
    const body = fromLoradock(new LoradockError('LORADOCK_STATUS_BUSY', 'queue full', 300)).body();
    assert.deepEqual(body, {
      error: { message: 'queue full', type: 'rate_limit_error', param: null, code: 'LORADOCK_STATUS_BUSY' },
    });
  });

  it('renders the documented fallback chat prompt', () => {
    const msgs = normalizeMessages([
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hel' }, { type: 'text', text: 'lo' }] },
    ]);
    assert.equal(fallbackPrompt(msgs), 'system: Be brief.\nuser: Hello\nassistant:');
    assert.throws(() => normalizeMessages([]), (e) => e.status === 400);
    assert.throws(() => normalizeMessages([{ role: 'user', content: [{ type: 'image_url' }] }]), /text parts/);
  });

  it('renders valid Prometheus text', () => {
    const stats = { requestsCompleted: 3, usedBytes: 10, tokensPerS: 1.5 };
    const text = renderMetrics(stats, new Map([['/v1/models\t200', 2]]));
    const m = parseMetrics(text);
    assert.equal(m.loradock_requests_completed_total, 3);
    assert.equal(m.loradock_tokens_per_second, 1.5);
    assert.equal(m['loradock_http_requests_total{route="/v1/models",code="200"}'], 2);
    assert.match(text, /^# TYPE loradock_used_bytes gauge$/m);
    assert.match(text, /^# HELP loradock_used_bytes .+$/m);
  });
});
