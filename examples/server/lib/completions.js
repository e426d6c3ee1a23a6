'use strict';
// POST /v1/chat/completions and POST /v1/completions: run one loradock request, streamed as
// server-sent events or answered as one JSON body. A client that disconnects aborts its
// request (loradock cancels it).
const { HttpError, fromLoradock } = require('./errors');
const { readJson, sendJson, sendError, SseWriter } = require('./http');
const { CompletionShape } = require('./openai');
const { commonParams, completionInput } = require('./params');
const { normalizeMessages, fallbackPrompt, isNoTemplate } = require('./prompt');

/**
 * Start the generation and wait for its first event, so that failures (unknown adapter,
 * refused adapter, busy…) are answered with an HTTP status before any header is sent.
 * A chat request on a model without a chat template is retried once with the documented
 * fallback prompt (see prompt.js), and later ones go to it directly.
 */
async function start(ctx, request, messages, signal) {
  const useFallback = messages && ctx.state.noChatTemplate;
  const input = !messages ? {} : useFallback ? { prompt: fallbackPrompt(messages) } : { messages };
  const gen = ctx.rt.generate({ ...request, ...input }, { signal });
  try {
    return { gen, first: await gen.next() };
  } catch (err) {
    if (messages && !useFallback && isNoTemplate(err)) {
      ctx.state.noChatTemplate = true;
      return start(ctx, request, messages, signal);
    }
    throw err;
  }
}

/** Collect the whole text and answer one JSON body. */
async function respondWhole(res, shape, gen, first) {
  let text = '';
  let done = null;
  for (let r = first; !r.done; r = await gen.next()) {
    if (r.value.type === 'token') text += r.value.text;
    else done = r.value;
  }
  if (res.destroyed || done.finishReason === 'cancelled') return; // the client is gone
  sendJson(res, 200, shape.response(text, done));
}

/** Stream chunks as server-sent events; errors after the headers become an error event. */
async function respondStream(res, shape, gen, first, includeUsage) {
  const sse = new SseWriter(res);
  let r = first;
  try {
    if (shape.kind === 'chat') await sse.send(shape.chunk({ role: 'assistant', text: '' }));
    for (; !r.done; r = await gen.next()) {
      if (res.destroyed) return; // the abort signal cancels the request
      const ev = r.value;
      if (ev.type === 'token') {
        await sse.send(shape.chunk({ text: ev.text }));
      } else {
        await sse.send(shape.chunk({ finish: ev.finishReason }));
        if (includeUsage) await sse.send(shape.usageChunk(ev));
      }
    }
  } catch (err) {
    await sse.send(fromLoradock(err).body());
  }
  sse.end();
}

/**
 * Handle one completion request.
 * @param {object} ctx the server context (rt, config, state)
 * @param {'chat'|'text'} kind
 */
async function handleCompletion(ctx, req, res, kind) {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  let gen;
  try {
    const body = await readJson(req, ctx.config.maxBody);
    const p = commonParams(body, ctx.config);
    let messages = null;
    if (kind === 'chat') {
      messages = normalizeMessages(body.messages);
    } else {
      if (body.echo) throw new HttpError(400, "'echo' is not supported", { param: 'echo' });
      if (body.suffix) throw new HttpError(400, "'suffix' is not supported", { param: 'suffix' });
      Object.assign(p.request, completionInput(body));
    }
    const shape = new CompletionShape(kind, p.model);
    const started = await start(ctx, p.request, messages, ac.signal);
    gen = started.gen;
    if (p.stream) await respondStream(res, shape, gen, started.first, p.includeUsage);
    else await respondWhole(res, shape, gen, started.first);
  } catch (err) {
    if (!res.destroyed) sendError(res, err);
  } finally {
    if (gen) await gen.return();
  }
}

module.exports = { handleCompletion };
