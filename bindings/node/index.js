'use strict';
/**
 * loradock for Node: one resident base model serving many LoRA adapters.
 *
 *   const loradock = require('loradock');
 *   const rt = await loradock.open({ model: '/path/to/model' });
 *   for await (const ev of rt.generate({ prompt: 'Hello', maxTokens: 16 })) …
 *   await rt.close();
 */
const native = require('./lib/native');
const { LoradockError, Status } = require('./lib/errors');
const { Runtime, open } = require('./lib/runtime');
const { Generation } = require('./lib/generation');

/** @returns {string} the C library's version, "MAJOR.MINOR.PATCH" */
function version() {
  return native.version();
}

/**
 * @param {number} status a numeric loradock status
 * @returns {string} its name, e.g. 'LORADOCK_STATUS_BUSY'
 */
function statusName(status) {
  return native.statusName(status);
}

module.exports = { open, Runtime, Generation, LoradockError, Status, version, statusName };
