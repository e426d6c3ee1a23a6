'use strict';
// The Runtime class and open(): a thin promise-based layer over the addon.
const native = require('./native');
const { invalidArgument } = require('./errors');
const { Generation } = require('./generation');
const { normalizeRequest } = require('./request');

const POLICIES = { disposable: 0, keepWarm: 1, 'keep-warm': 1, keep_warm: 1, pinned: 2 };

function policyNumber(policy) {
  if (policy == null) return 0;
  if (typeof policy === 'number') return policy;
  const n = POLICIES[policy];
  if (n === undefined) throw invalidArgument(`policy must be 'disposable', 'keepWarm' or 'pinned', not '${policy}'`);
  return n;
}

/**
 * A running loradock runtime: one base model, adapters docked on demand. Create it with
 * {@link open}; end it with {@link Runtime#close}.
 */
class Runtime {
  #handle;
  #closing = null;

  /** @internal use open() */
  constructor(handle) {
    this.#handle = handle;
  }

  /**
   * Register (or re-register, as a new generation) `name` → `source`: a path or `file://`
   * URL under the store roots, `http(s)://…` or `ipfs://CID`. Nothing is fetched until a
   * request uses it.
   * @param {string} name
   * @param {string} source
   * @param {{digest?: string, policy?: 'disposable'|'keepWarm'|'pinned'}} [options]
   * @returns {Promise<number>} the registration's generation
   */
  async registerAdapter(name, source, { digest, policy } = {}) {
    return native.registerAdapter(this.#handle, name, source, digest ?? null, policyNumber(policy));
  }

  /**
   * Remove a registered adapter (requests already submitted keep it).
   * Rejects with code LORADOCK_STATUS_UNKNOWN_ADAPTER when `name` is not registered.
   * @param {string} name
   * @returns {Promise<void>}
   */
  async unregisterAdapter(name) {
    native.unregisterAdapter(this.#handle, name);
  }

  /**
   * A snapshot of counters, gauges and the memory ledger (loradock_stats, camelCase).
   * @returns {Promise<object>}
   */
  async stats() {
    return native.stats(this.#handle);
  }

  /**
   * Start a request and iterate its events:
   * `for await (const ev of rt.generate({prompt: 'hi', adapters: ['a']})) …`.
   * Argument errors throw here; failures of the request (unknown adapter, refused adapter,
   * busy…) are thrown by the iterator. See {@link Generation} for abort semantics.
   * @param {object} request
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Generation}
   */
  generate(request, { signal } = {}) {
    return new Generation(this, this.#handle, normalizeRequest(request), signal);
  }

  /**
   * Run a request to its end and return its text.
   * @param {object} request
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{text: string, finishReason: string, usage: object}>}
   */
  async generateText(request, options) {
    let text = '';
    for await (const ev of this.generate(request, options)) {
      if (ev.type === 'token') text += ev.text;
      else return { text, finishReason: ev.finishReason, usage: ev.usage };
    }
    throw new Error('unreachable: the stream ended without a done event');
  }

  /**
   * Shut down and free the runtime (off the JS thread). Running requests end with
   * LORADOCK_STATUS_SHUT_DOWN errors; later calls reject with it. Idempotent.
   * @returns {Promise<void>}
   */
  close() {
    this.#closing ??= native.close(this.#handle);
    return this.#closing;
  }
}

/**
 * Load a model and start a runtime (the load runs off the JS thread).
 * @param {object} options see index.d.ts (RuntimeOptions); `model` is required
 * @returns {Promise<Runtime>}
 */
async function open(options) {
  if (!options || typeof options !== 'object') throw invalidArgument('options must be an object');
  return new Runtime(await native.open(options));
}

module.exports = { Runtime, open };
