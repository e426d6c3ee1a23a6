'use strict';
// OpenAI request bodies → loradock requests (sampling, limits, stop strings, streaming).
const { HttpError } = require('./errors');
const { parseModel } = require('./models');

function bad(param, message) {
  return new HttpError(400, message, { param });
}

function number(body, key, { min = -Infinity, max = Infinity, integer = false } = {}) {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    const range = `${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` >= ${min}` : ''}${max < Infinity ? ` <= ${max}` : ''}`;
    throw bad(key, `'${key}' must be ${range}`);
  }
  return v;
}

function stops(body) {
  const s = body.stop;
  if (s === undefined || s === null) return undefined;
  if (typeof s === 'string') return [s];
  if (Array.isArray(s) && s.every((x) => typeof x === 'string')) return s;
  throw bad('stop', "'stop' must be a string or an array of strings");
}

/**
 * The parts common to chat and text completions.
 * @param {object} body the parsed JSON body
 * @param {{defaultMaxTokens: number}} config
 * @returns {{model: string, adapters: object[], stream: boolean, includeUsage: boolean, request: object}}
 */
function commonParams(body, config) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad(null, 'the body must be a JSON object');
  const adapters = parseModel(body.model);
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    throw bad('stream', "'stream' must be a boolean");
  }
  const n = number(body, 'n', { min: 1, integer: true });
  if (n !== undefined && n !== 1) throw bad('n', "only 'n': 1 is supported");
  if (body.logprobs) throw bad('logprobs', "'logprobs' is not supported");
  for (const k of ['presence_penalty', 'frequency_penalty']) {
    if (number(body, k, { min: -2, max: 2 })) throw bad(k, `'${k}' is not supported (use repetition_penalty)`);
  }
  const maxTokens = number(body, 'max_completion_tokens', { min: 1, integer: true }) ??
    number(body, 'max_tokens', { min: 1, integer: true }) ?? config.defaultMaxTokens;
  const request = {
    adapters,
    maxTokens,
    temperature: number(body, 'temperature', { min: 0, max: 2 }) ?? 1,
  };
  const opt = {
    topP: number(body, 'top_p', { min: 0, max: 1 }),
    topK: number(body, 'top_k', { min: 0, integer: true }),
    minP: number(body, 'min_p', { min: 0, max: 1 }),
    repetitionPenalty: number(body, 'repetition_penalty', { min: 0 }),
    stop: stops(body),
  };
  const seed = number(body, 'seed', { integer: true });
  if (seed !== undefined) opt.seed = BigInt.asUintN(64, BigInt(seed));
  if (body.ignore_eos !== undefined) {
    if (typeof body.ignore_eos !== 'boolean') throw bad('ignore_eos', "'ignore_eos' must be a boolean");
    opt.ignoreEos = body.ignore_eos;
  }
  for (const [k, v] of Object.entries(opt)) if (v !== undefined) request[k] = v;
  return {
    model: body.model,
    stream: body.stream === true,
    includeUsage: body.stream === true && body.stream_options?.include_usage === true,
    request,
  };
}

/**
 * The prompt of a text completion: a string, a one-string array, token ids, or a one-array
 * array of token ids.
 * @returns {{prompt: string} | {tokenIds: number[]}}
 */
function completionInput(body) {
  let p = body.prompt;
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  if (typeof p === 'string') {
    if (p === '') throw bad('prompt', "'prompt' must not be empty");
    return { prompt: p };
  }
  if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0)) return { tokenIds: p };
  if (p === undefined || p === null) throw bad('prompt', "'prompt' is required");
  throw bad('prompt', "'prompt' must be a string or token ids (one prompt per request)");
}

module.exports = { commonParams, completionInput };
