'use strict';
// Adapter management over HTTP: register, list (as models), use, re-register, delete.
const assert = require('node:assert/strict');
const { after, before, describe, it } = require('node:test');
const { ADAPTERS, client, postJson, serverArgs, startServer } = require('./helpers');

describe('adapters', () => {
  let srv;
  let openai;
  before(async () => {
    srv = await startServer(serverArgs(['--adapter', `qv=${ADAPTERS}/r8_qv`]));
    openai = client(srv.url);
  });
  after(() => srv.stop());

  const run = async (model) => (await openai.completions.create({
    model, prompt: 'hello world', max_tokens: 12, temperature: 0, ignore_eos: true,
  })).choices[0].text;

  it('/v1/models lists base and the adapters registered at start', async () => {
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ['base', 'qv']);
    const qv = await openai.models.retrieve('qv');
    assert.equal(qv.object, 'model');
    assert.equal(qv.owned_by, 'loradock');
  });

  it('POST /v1/adapters registers; the adapter becomes a model', async () => {
    const r = await postJson(`${srv.url}/v1/adapters`, { name: 'mlp', source: `${ADAPTERS}/r16_mlp`, policy: 'keepWarm' });
    assert.equal(r.status, 201);
    assert.equal(r.body.id, 'mlp');
    assert.equal(r.body.policy, 'keepWarm');
    assert.ok(r.body.generation > 0);
    const ids = (await openai.models.list()).data.map((m) => m.id);
    assert.deepEqual(ids, ['base', 'mlp', 'qv']);
    assert.notEqual(await run('mlp'), await run('base'));
    const list = await (await fetch(`${srv.url}/v1/adapters`)).json();
    assert.deepEqual(list.data.map((a) => a.id), ['mlp', 'qv']);
  });

  it('re-registering a name is a 200 with a new generation and new content', async () => {
    const first = await postJson(`${srv.url}/v1/adapters`, { name: 'x', source: `${ADAPTERS}/t_a` });
    const textA = await run('x');
    const again = await postJson(`${srv.url}/v1/adapters`, { name: 'x', source: `${ADAPTERS}/t_b` });
    assert.equal(first.status, 201);
    assert.equal(again.status, 200);
    assert.ok(again.body.generation > first.body.generation);
    const textB = await run('x');
    assert.notEqual(textB, textA);
    assert.equal(textB, await run('base+x'));
  });

  it('DELETE /v1/adapters/:name unregisters; later uses are 404s', async () => {
    await postJson(`${srv.url}/v1/adapters`, { name: 'tmp', source: `${ADAPTERS}/t_a` });
    const del = await fetch(`${srv.url}/v1/adapters/tmp`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.deepEqual(await del.json(), { id: 'tmp', object: 'adapter', deleted: true });
    await assert.rejects(run('tmp'), (e) => e.status === 404);
    assert.ok(!(await openai.models.list()).data.some((m) => m.id === 'tmp'));
    const again = await fetch(`${srv.url}/v1/adapters/tmp`, { method: 'DELETE' });
    assert.equal(again.status, 404);
  });

  it('invalid registrations are 400s', async () => {
    const cases = [
      [{ source: `${ADAPTERS}/t_a` }, 'name'],
      [{ name: 'y' }, 'source'],
      [{ name: 'y', source: `${ADAPTERS}/t_a`, policy: 'forever' }, 'policy'],
      [{ name: 'base', source: `${ADAPTERS}/t_a` }, 'name'],
    ];
    for (const [body, param] of cases) {
      const r = await postJson(`${srv.url}/v1/adapters`, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.param, param);
    }
    // Refused by loradock: '+' is the composite separator; a malformed digest.
    for (const body of [{ name: 'a+b', source: `${ADAPTERS}/t_a` }, { name: 'z', source: `${ADAPTERS}/t_a`, digest: 'sha256:zz' }]) {
      const r = await postJson(`${srv.url}/v1/adapters`, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'LORADOCK_STATUS_INVALID_ARGUMENT');
    }
  });
});
