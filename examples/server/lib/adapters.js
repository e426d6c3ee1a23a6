'use strict';
// The adapters this server registered (the C ABI has no call that lists them), and the
// /v1/adapters and /v1/models endpoints.
const { HttpError } = require('./errors');
const { readJson, sendJson } = require('./http');
const { BASE } = require('./models');

const POLICIES = ['disposable', 'keepWarm', 'pinned'];

/** Registered adapters by name: {name, source, digest, policy, generation, created}. */
class AdapterRegistry {
  /** @param {import('loradock').Runtime} rt */
  constructor(rt) {
    this.rt = rt;
    this.byName = new Map();
  }

  /**
   * Register (or re-register) an adapter with the runtime and remember it.
   * @returns {Promise<{entry: object, replaced: boolean}>}
   */
  async register(name, source, { digest, policy } = {}) {
    const generation = await this.rt.registerAdapter(name, source, { digest, policy });
    const replaced = this.byName.has(name);
    const entry = {
      name,
      source,
      digest: digest ?? null,
      policy: policy ?? 'disposable',
      generation,
      created: Math.floor(Date.now() / 1000),
    };
    this.byName.set(name, entry);
    return { entry, replaced };
  }

  /** Unregister; rejects with LORADOCK_STATUS_UNKNOWN_ADAPTER (→ 404) when unknown. */
  async unregister(name) {
    await this.rt.unregisterAdapter(name);
    this.byName.delete(name);
  }

  list() {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

function adapterJson(e) {
  return { id: e.name, object: 'adapter', source: e.source, digest: e.digest, policy: e.policy,
    generation: e.generation, created: e.created };
}

function modelJson(id, created, parent = null) {
  return { id, object: 'model', created, owned_by: 'loradock', parent };
}

/** POST /v1/adapters {name, source, digest?, policy?} → 201 (200 when re-registered). */
async function createAdapter(ctx, req, res) {
  const body = await readJson(req, ctx.config.maxBody);
  if (!body || typeof body !== 'object') throw new HttpError(400, 'the body must be a JSON object');
  for (const k of ['name', 'source']) {
    if (typeof body[k] !== 'string' || body[k] === '') throw new HttpError(400, `'${k}' must be a non-empty string`, { param: k });
  }
  if (body.name === BASE) throw new HttpError(400, `'${BASE}' names the base model`, { param: 'name' });
  if (body.digest != null && typeof body.digest !== 'string') throw new HttpError(400, "'digest' must be a string", { param: 'digest' });
  if (body.policy != null && !POLICIES.includes(body.policy)) {
    throw new HttpError(400, `'policy' must be one of ${POLICIES.join(', ')}`, { param: 'policy' });
  }
  const { entry, replaced } = await ctx.adapters.register(body.name, body.source, body);
  sendJson(res, replaced ? 200 : 201, adapterJson(entry));
}

/** DELETE /v1/adapters/:name */
async function deleteAdapter(ctx, req, res, name) {
  await ctx.adapters.unregister(name);
  sendJson(res, 200, { id: name, object: 'adapter', deleted: true });
}

/** GET /v1/adapters */
function listAdapters(ctx, req, res) {
  sendJson(res, 200, { object: 'list', data: ctx.adapters.list().map(adapterJson) });
}

/** GET /v1/models: the base model and every registered adapter. */
function listModels(ctx, req, res) {
  const data = [modelJson(BASE, ctx.state.started),
    ...ctx.adapters.list().map((e) => modelJson(e.name, e.created, BASE))];
  sendJson(res, 200, { object: 'list', data });
}

/** GET /v1/models/:id */
function getModel(ctx, req, res, id) {
  if (id === BASE) return sendJson(res, 200, modelJson(BASE, ctx.state.started));
  const e = ctx.adapters.byName.get(id);
  if (!e) throw new HttpError(404, `The model '${id}' does not exist`, { code: 'model_not_found', param: 'model' });
  sendJson(res, 200, modelJson(e.name, e.created, BASE));
}

module.exports = { AdapterRegistry, createAdapter, deleteAdapter, listAdapters, listModels, getModel };
