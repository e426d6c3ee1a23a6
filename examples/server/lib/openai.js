'use strict';
// OpenAI's response and chunk shapes for chat and text completions.
const crypto = require('node:crypto');

/** A response id with OpenAI's prefixes ('chatcmpl-', 'cmpl-'). */
function newId(kind) {
  return `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomBytes(12).toString('hex')}`;
}

/** loradock finish reasons → OpenAI's ('eos' and stop strings are both 'stop'). */
function finishReason(r) {
  return r === 'length' ? 'length' : 'stop';
}

/** OpenAI usage from loradock usage. */
function usage(u) {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
  };
}

/**
 * Builds the bodies of one completion (chat or text) with a fixed id, time and model.
 */
class CompletionShape {
  /**
   * @param {'chat'|'text'} kind
   * @param {string} model the model string the client asked for
   */
  constructor(kind, model) {
    this.kind = kind;
    this.model = model;
    this.id = newId(kind);
    this.created = Math.floor(Date.now() / 1000);
  }

  #head(object) {
    return { id: this.id, object, created: this.created, model: this.model, system_fingerprint: null };
  }

  /** The whole response of a non-streaming request. */
  response(text, done) {
    const choice = this.kind === 'chat'
      ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finishReason(done.finishReason) }
      : { index: 0, text, logprobs: null, finish_reason: finishReason(done.finishReason) };
    return {
      ...this.#head(this.kind === 'chat' ? 'chat.completion' : 'text_completion'),
      choices: [choice],
      usage: usage(done.usage),
    };
  }

  /** A streamed chunk: text (and, for chat, the role on the first chunk) or the finish. */
  chunk({ text = '', role, finish = null } = {}) {
    if (this.kind === 'chat') {
      const delta = finish ? {} : { ...(role ? { role } : {}), content: text };
      return {
        ...this.#head('chat.completion.chunk'),
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish ? finishReason(finish) : null }],
      };
    }
    return {
      ...this.#head('text_completion'),
      choices: [{ index: 0, text, logprobs: null, finish_reason: finish ? finishReason(finish) : null }],
    };
  }

  /** The last streamed chunk when the client asked for usage (stream_options.include_usage). */
  usageChunk(done) {
    const object = this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    return { ...this.#head(object), choices: [], usage: usage(done.usage) };
  }
}

module.exports = { CompletionShape, finishReason, usage };
