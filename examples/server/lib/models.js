'use strict';
// The `model` field: "base", a registered adapter "styleA", or a composite
// "base+styleA:0.7+styleB:0.3" (weights after a colon, default 1).
const { HttpError } = require('./errors');

const BASE = 'base';

/**
 * The adapters a model string names, as loradock adapter uses.
 * @param {unknown} model
 * @returns {{name: string, weight: number}[]} empty for the base model
 * @throws {HttpError} 400 when malformed
 */
function parseModel(model) {
  if (typeof model !== 'string' || model.trim() === '') {
    throw new HttpError(400, "'model' must be a non-empty string", { param: 'model' });
  }
  const parts = model.split('+').map((p) => p.trim());
  const uses = [];
  parts.forEach((part, i) => {
    if (part === BASE && i === 0) return;
    const colon = part.lastIndexOf(':');
    const name = colon < 0 ? part : part.slice(0, colon);
    const w = colon < 0 ? '1' : part.slice(colon + 1);
    if (!name || name === BASE) {
      throw new HttpError(400, `bad model '${model}': '${BASE}' may only come first, names may not be empty`, {
        param: 'model',
      });
    }
    const weight = Number(w);
    if (w.trim() === '' || !Number.isFinite(weight)) {
      throw new HttpError(400, `bad model '${model}': '${w}' is not a weight`, { param: 'model' });
    }
    uses.push({ name, weight });
  });
  return uses;
}

module.exports = { parseModel, BASE };
