'use strict';
// Small HTTP helpers: bounded JSON bodies, JSON answers, OpenAI-shaped errors and
// server-sent events with backpressure.
const { once } = require('node:events');
const { HttpError, fromLoradock } = require('./errors');

/**
 * Read and parse a JSON body of at most `maxBytes`.
 * @param {import('node:http').IncomingMessage} req
 * @param {number} maxBytes
 * @returns {Promise<any>}
 * @throws {HttpError} 400 on malformed JSON, 413 when too large
 */
async function readJson(req, maxBytes) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, `the body is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'the body is empty; send a JSON object');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `the body is not valid JSON: ${e.message}`);
  }
}

/** Answer `status` with a JSON body. */
function sendJson(res, status, body) {
  const data = JSON.stringify(body, (_, v) => (typeof v === 'bigint' ? Number(v) : v));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

/** Answer an error (HttpError, LoradockError or other) in OpenAI's error shape. */
function sendError(res, err) {
  const e = fromLoradock(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, e.status, e.body());
}

/** A server-sent-events writer that waits for the socket to drain when it is full. */
class SseWriter {
  /** @param {import('node:http').ServerResponse} res */
  constructor(res) {
    this.res = res;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.flushHeaders();
  }

  /** Send one `data:` event (an object as JSON, or a raw string); resolves when buffered. */
  async send(data) {
    const ok = this.res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    if (!ok && !this.res.destroyed) await Promise.race([once(this.res, 'drain'), once(this.res, 'close')]);
  }

  /** Send `data: [DONE]` and end the response. */
  end() {
    if (!this.res.destroyed) this.res.end('data: [DONE]\n\n');
  }
}

module.exports = { readJson, sendJson, sendError, SseWriter };
