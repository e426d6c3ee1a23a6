'use strict';
// A client that disconnects aborts its generation: the runtime counts it cancelled and
// nothing is left running. Requests ask for 1000 tokens (seconds of decoding on the tiny
// model), so they are still running when the client goes.
const assert = require('node:assert/strict');
const http = require('node:http');
const { after, before, describe, it } = require('node:test');
const { metrics, serverArgs, startServer, until } = require('./helpers');

describe('client disconnect', () => {
  let srv;
  before(async () => {
    srv = await startServer(serverArgs(['--max-context', '1024']));
  });
  after(() => srv.stop());

  /** Send a completion request; resolves to the request once `ready(res)` or at once. */
  function send(body, onResponse) {
    const data = JSON.stringify(body);
    const req = http.request(`${srv.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
    }, onResponse);
    req.on('error', () => {}); // destroyed on purpose
    req.end(data);
    return req;
  }

  const long = { model: 'base', prompt: 'hello', max_tokens: 1000, temperature: 0, ignore_eos: true };

  it('a streaming client that goes away cancels its request', async () => {
    const before = await metrics(srv.url);
    await new Promise((resolve) => {
      const req = send({ ...long, stream: true }, (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
    });
    const m = await until(async () => {
      const x = await metrics(srv.url);
      return x.loradock_requests_cancelled_total === before.loradock_requests_cancelled_total + 1 &&
        x.loradock_running_requests === 0 ? x : null;
    });
    assert.ok(m, 'the request was cancelled');
    assert.equal(m.loradock_requests_completed_total, before.loradock_requests_completed_total);
  });

  it('a non-streaming client that goes away cancels its request', async () => {
    const before = await metrics(srv.url);
    const req = send(long, () => assert.fail('no response expected'));
    const running = await until(async () => (await metrics(srv.url)).loradock_running_requests === 1);
    assert.ok(running, 'the request is decoding');
    req.destroy();
    const m = await until(async () => {
      const x = await metrics(srv.url);
      return x.loradock_requests_cancelled_total === before.loradock_requests_cancelled_total + 1 &&
        x.loradock_running_requests === 0 ? x : null;
    });
    assert.ok(m, 'the request was cancelled');
    assert.equal(m.loradock_requests_completed_total, before.loradock_requests_completed_total);
  });
});
