'use strict';
// Turns the public request shape into the flat one the addon reads.
const { invalidArgument } = require('./errors');

const PASS = ['combination', 'density', 'svdRank', 'combinationSeed', 'maxTokens', 'temperature',
  'topK', 'topP', 'minP', 'repetitionPenalty', 'seed', 'ignoreEos'];

/**
 * Normalize one adapter use: a registered name (string), `{name, weight}` or an inline
 * `{source, digest, weight}`.
 * @param {string|object} a
 * @param {number} i index, for messages
 */
function adapterUse(a, i) {
  if (typeof a === 'string') return { name: a, weight: 1 };
  if (!a || typeof a !== 'object') throw invalidArgument(`adapters[${i}] must be a name or an object`);
  const out = { weight: a.weight ?? 1 };
  if (a.name != null) out.name = a.name;
  else if (a.source != null) {
    out.source = a.source;
    if (a.digest != null) out.digest = a.digest;
  } else throw invalidArgument(`adapters[${i}] needs a name or a source`);
  return out;
}

/**
 * The addon's request object from a public {@link GenerateRequest}.
 * @param {object} req
 * @returns {object}
 */
function normalizeRequest(req) {
  if (!req || typeof req !== 'object') throw invalidArgument('request must be an object');
  const out = {};
  if (req.prompt != null) out.prompt = req.prompt;
  if (req.messages != null) {
    if (!Array.isArray(req.messages) ||
        !req.messages.every((m) => m && typeof m.role === 'string' && typeof m.content === 'string')) {
      throw invalidArgument('messages must be an array of {role, content} strings');
    }
    out.messagesJson = JSON.stringify(req.messages.map((m) => ({ role: m.role, content: m.content })));
  }
  if (req.tokenIds != null) out.tokenIds = Array.from(req.tokenIds);
  if (req.adapters != null) {
    if (!Array.isArray(req.adapters)) throw invalidArgument('adapters must be an array');
    out.adapters = req.adapters.map(adapterUse);
  }
  if (req.stop != null) out.stop = typeof req.stop === 'string' ? [req.stop] : req.stop;
  for (const k of PASS) if (req[k] != null) out[k] = req[k];
  return out;
}

module.exports = { normalizeRequest };
