'use strict';
// GET /metrics: Prometheus text with HELP and TYPE lines, runtime counters that follow the
// requests served, gauges of the memory ledger, and HTTP request counts by route.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const { ADAPTERS, client, parseMetrics, serverArgs, startServer } = require('./helpers');

describe('metrics', () => {
  let srv;
  before(async () => {
    srv = await startServer(serverArgs(['--adapter', `a=${ADAPTERS}/t_a`, '--adapter', `b=${ADAPTERS}/t_b`]));
  });
  after(() => srv.stop());

  it('serves counters and gauges that follow the requests', async () => {
    const openai = client(srv.url);
    for (const model of ['base', 'a', 'base+a:0.5+b:0.5']) {
      await openai.completions.create({ model, prompt: 'hi', max_tokens: 5, temperature: 0, ignore_eos: true });
    }
    await assert.rejects(openai.completions.create({ model: 'ghost', prompt: 'hi', max_tokens: 5 }));
    const res = await fetch(`${srv.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const text = await res.text();

    // Every sample follows its HELP and TYPE lines.
    const declared = new Map();
    for (const line of text.split('\n')) {
      const t = /^# TYPE (\S+) (counter|gauge)$/.exec(line);
      if (t) declared.set(t[1], t[2]);
      const s = /^([a-z_]+)[{ ]/.exec(line);
      if (s) assert.ok(declared.has(s[1]), `${s[1]} has a TYPE line before it`);
    }
    for (const name of declared.keys()) assert.match(text, new RegExp(`^# HELP ${name} \\S.*$`, 'm'));
    for (const [name, type] of declared) if (name.endsWith('_total')) assert.equal(type, 'counter', name);

    const m = parseMetrics(text);
    assert.equal(m.loradock_requests_completed_total, 3);
    assert.equal(m.loradock_tokens_generated_total, 15);
    assert.equal(m.loradock_adapters_registered, 2);
    assert.ok(m.loradock_adapter_docks_total >= 2);
    assert.equal(m.loradock_budget_bytes, 64 * 1024 * 1024);
    assert.ok(m.loradock_used_bytes >= m.loradock_base_weight_bytes && m.loradock_base_weight_bytes > 0);
    assert.equal(m['loradock_http_requests_total{route="/v1/completions",code="200"}'], 3);
    assert.equal(m['loradock_http_requests_total{route="/v1/completions",code="404"}'], 1);
  });
});
