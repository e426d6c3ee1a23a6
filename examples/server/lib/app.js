'use strict';
// The HTTP server: routes, per-route request counts, and errors in OpenAI's shape.
const http = require('node:http');
const { HttpError } = require('./errors');
const { sendError, sendJson } = require('./http');
const { handleCompletion } = require('./completions');
const { AdapterRegistry, createAdapter, deleteAdapter, listAdapters, listModels, getModel } = require('./adapters');
const { serveMetrics } = require('./metrics');

// [method, pattern, route label, handler(ctx, req, res, ...params)]
const ROUTES = [
  ['POST', /^\/v1\/chat\/completions$/, '/v1/chat/completions', (c, q, s) => handleCompletion(c, q, s, 'chat')],
  ['POST', /^\/v1\/completions$/, '/v1/completions', (c, q, s) => handleCompletion(c, q, s, 'text')],
  ['GET', /^\/v1\/models$/, '/v1/models', listModels],
  ['GET', /^\/v1\/models\/([^/]+)$/, '/v1/models/:id', getModel],
  ['GET', /^\/v1\/adapters$/, '/v1/adapters', listAdapters],
  ['POST', /^\/v1\/adapters$/, '/v1/adapters', createAdapter],
  ['DELETE', /^\/v1\/adapters\/([^/]+)$/, '/v1/adapters/:name', deleteAdapter],
  ['GET', /^\/metrics$/, '/metrics', serveMetrics],
  ['GET', /^\/health$/, '/health', (c, q, s) => sendJson(s, 200, { status: 'ok' })],
];

function route(method, pathname) {
  let pathMatched = false;
  for (const [m, re, label, handler] of ROUTES) {
    const match = re.exec(pathname);
    if (!match) continue;
    pathMatched = true;
    if (m === method) return { label, handler, params: match.slice(1).map(decodeURIComponent) };
  }
  return { label: pathMatched ? 'method_not_allowed' : 'not_found', handler: null, params: [], pathMatched };
}

/**
 * An http.Server serving the OpenAI-compatible API over `rt`.
 * @param {import('loradock').Runtime} rt
 * @param {{maxBody: number, defaultMaxTokens: number}} config
 * @returns {{server: import('node:http').Server, ctx: object}}
 */
function createApp(rt, config) {
  const ctx = {
    rt,
    config,
    adapters: new AdapterRegistry(rt),
    state: { started: Math.floor(Date.now() / 1000), noChatTemplate: false, httpCounts: new Map() },
  };
  const server = http.createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    const r = route(req.method, pathname);
    res.on('close', () => {
      const key = `${r.label}\t${res.headersSent ? res.statusCode : 'disconnected'}`;
      ctx.state.httpCounts.set(key, (ctx.state.httpCounts.get(key) ?? 0) + 1);
    });
    try {
      if (!r.handler) {
        throw r.pathMatched
          ? new HttpError(405, `${req.method} is not allowed on ${pathname}`)
          : new HttpError(404, `no route ${req.method} ${pathname}`, { code: 'unknown_url' });
      }
      await r.handler(ctx, req, res, ...r.params);
    } catch (err) {
      if (!res.destroyed) sendError(res, err);
    }
  });
  return { server, ctx };
}

module.exports = { createApp };
