'use strict';
// HTTP errors in OpenAI's shape ({error: {message, type, param, code}}) and the mapping
// from loradock status codes to HTTP statuses.

/** An error answered to the client with `status` and OpenAI's error body. */
class HttpError extends Error {
  /**
   * @param {number} status HTTP status
   * @param {string} message
   * @param {{type?: string, code?: string|null, param?: string|null}} [extra]
   */
  constructor(status, message, { type, code = null, param = null } = {}) {
    super(message);
    this.status = status;
    this.type = type ?? defaultType(status);
    this.code = code;
    this.param = param;
  }

  /** The JSON body. */
  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function defaultType(status) {
  if (status === 404) return 'invalid_request_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'server_error';
}

const BAD_REQUEST = new Set([
  'LORADOCK_STATUS_NULL_ARGUMENT',
  'LORADOCK_STATUS_INVALID_ARGUMENT',
  'LORADOCK_STATUS_INVALID_UTF8',
  'LORADOCK_STATUS_TOKENIZER',
]);

/**
 * The HttpError for a loradock failure: unknown adapter → 404, invalid arguments → 400,
 * busy → 429, over budget or shut down → 503, anything else → 500. `code` carries the
 * loradock status name.
 * @param {Error & {code?: string}} err
 * @returns {HttpError}
 */
function fromLoradock(err) {
  if (err instanceof HttpError) return err;
  const code = typeof err.code === 'string' ? err.code : null;
  let status = 500;
  if (code === 'LORADOCK_STATUS_UNKNOWN_ADAPTER') {
    return new HttpError(404, err.message, { code: 'model_not_found', param: 'model' });
  }
  if (BAD_REQUEST.has(code)) status = 400;
  else if (code === 'LORADOCK_STATUS_BUSY') status = 429;
  else if (code === 'LORADOCK_STATUS_OVER_BUDGET' || code === 'LORADOCK_STATUS_SHUT_DOWN') status = 503;
  return new HttpError(status, err.message || String(err), { code });
}

module.exports = { HttpError, fromLoradock };
