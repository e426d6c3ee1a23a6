'use strict';

/**
 * A failure reported by loradock: `code` is the C status name
 * (e.g. `'LORADOCK_STATUS_UNKNOWN_ADAPTER'`), `status` its number, `message` the C
 * library's message (read from its thread-local last error on the thread that failed).
 */
class LoradockError extends Error {
  /**
   * @param {string} code status name, `LORADOCK_STATUS_*`
   * @param {string} message what went wrong
   * @param {number} status the numeric status
   */
  constructor(code, message, status) {
    super(message);
    this.name = 'LoradockError';
    this.code = code;
    this.status = status;
  }
}

/** Status codes by name (a subset of loradock.h's `loradock_status`, all of them). */
const Status = Object.freeze({
  OK: 0,
  NULL_ARGUMENT: 100,
  INVALID_ARGUMENT: 101,
  INVALID_UTF8: 102,
  STRUCT_SIZE: 103,
  BUFFER_TOO_SMALL: 104,
  UNKNOWN_ADAPTER: 200,
  SHUT_DOWN: 201,
  TIMEOUT: 202,
  STREAM_ENDED: 203,
  BUSY: 300,
  OVER_BUDGET: 301,
  IO: 400,
  FORMAT: 401,
  UNSUPPORTED: 402,
  SHAPE_MISMATCH: 403,
  MISSING_TENSOR: 404,
  CONFIG: 405,
  ADAPTER: 406,
  TOKENIZER: 407,
  FETCH: 500,
  DIGEST_MISMATCH: 501,
  FETCH_TIMEOUT: 502,
  SLOW_CONSUMER: 600,
  INTERNAL: 900,
  PANIC: 901,
  DEVICE: 902,
});

/**
 * An INVALID_ARGUMENT error raised by the binding itself (bad option types).
 * @param {string} message
 * @returns {LoradockError}
 */
function invalidArgument(message) {
  return new LoradockError('LORADOCK_STATUS_INVALID_ARGUMENT', message, Status.INVALID_ARGUMENT);
}

module.exports = { LoradockError, Status, invalidArgument };
