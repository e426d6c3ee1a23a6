'use strict';
// Chat messages: validation of OpenAI's message shapes, and the plain-text prompt used when
// the model has no chat template.
const { HttpError } = require('./errors');

/**
 * Normalize OpenAI chat messages to `{role, content}` strings. Content may be a string or
 * an array of `{type: 'text', text}` parts (joined); `developer` is sent as `system`.
 * @param {unknown} messages
 * @returns {{role: string, content: string}[]}
 */
function normalizeMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new HttpError(400, "'messages' must be a non-empty array", { param: 'messages' });
  }
  return messages.map((m, i) => {
    if (!m || typeof m !== 'object' || typeof m.role !== 'string') {
      throw new HttpError(400, `messages[${i}] needs a string 'role'`, { param: `messages[${i}]` });
    }
    let content = m.content ?? '';
    if (Array.isArray(content)) {
      content = content.map((p, j) => {
        if (!p || p.type !== 'text' || typeof p.text !== 'string') {
          throw new HttpError(400, `messages[${i}].content[${j}]: only text parts are supported`, {
            param: `messages[${i}].content`,
          });
        }
        return p.text;
      }).join('');
    }
    if (typeof content !== 'string') {
      throw new HttpError(400, `messages[${i}].content must be a string or text parts`, {
        param: `messages[${i}].content`,
      });
    }
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}

/**
 * The prompt a model without a chat template gets: one "role: content" line per message,
 * then "assistant:" for the reply.
 *
 *   system: Be brief.
 *   user: Hello
 *   assistant:
 *
 * @param {{role: string, content: string}[]} messages
 * @returns {string}
 */
function fallbackPrompt(messages) {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant:';
}

/** True when `err` says the model has no chat template. */
function isNoTemplate(err) {
  return err?.code === 'LORADOCK_STATUS_TOKENIZER' && /has no chat template/.test(err.message);
}

module.exports = { normalizeMessages, fallbackPrompt, isNoTemplate };
