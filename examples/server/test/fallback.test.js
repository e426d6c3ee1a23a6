'use strict';
// Chat on a model without a chat template: the server renders the documented plain prompt
// ("role: content" lines, then "assistant:"), so the chat answer is the text completion of
// that prompt. A model with a template uses its template instead.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, it } = require('node:test');
const { fallbackPrompt } = require('../lib/prompt');
const { MODEL, client, serverArgs, startServer, tempDir } = require('./helpers');

/** A copy of the tiny model (files linked) whose tokenizer_config.json has no chat_template. */
function modelWithoutTemplate() {
  const dir = tempDir('notemplate');
  for (const f of fs.readdirSync(MODEL)) {
    if (f !== 'tokenizer_config.json') fs.symlinkSync(path.join(MODEL, f), path.join(dir, f));
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(MODEL, 'tokenizer_config.json'), 'utf8'));
  assert.equal(typeof cfg.chat_template, 'string', 'the fixture has a template to remove');
  delete cfg.chat_template;
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
  return dir;
}

describe('chat without a chat template', () => {
  let plain;
  let templated;
  before(async () => {
    const args = serverArgs();
    args[args.indexOf('--model') + 1] = modelWithoutTemplate();
    [plain, templated] = await Promise.all([startServer(args), startServer(serverArgs())]);
  });
  after(() => Promise.all([plain.stop(), templated.stop()]));

  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }];
  const opts = { model: 'base', max_tokens: 12, temperature: 0, ignore_eos: true };

  it('renders the fallback prompt, streamed and not', async () => {
    const openai = client(plain.url);
    const viaText = await openai.completions.create({ ...opts, prompt: fallbackPrompt(messages) });
    for (let i = 0; i < 2; i++) { // the first request discovers the missing template
      const chat = await openai.chat.completions.create({ ...opts, messages });
      assert.equal(chat.choices[0].message.content, viaText.choices[0].text);
      assert.equal(chat.usage.prompt_tokens, viaText.usage.prompt_tokens);
    }
    let streamed = '';
    for await (const c of await openai.chat.completions.create({ ...opts, messages, stream: true })) {
      streamed += c.choices[0]?.delta?.content ?? '';
    }
    assert.equal(streamed, viaText.choices[0].text);
  });

  it('a model with a template does not use the fallback', async () => {
    const openai = client(templated.url);
    const chat = await openai.chat.completions.create({ ...opts, messages });
    const viaText = await openai.completions.create({ ...opts, prompt: fallbackPrompt(messages) });
    assert.notEqual(chat.usage.prompt_tokens, viaText.usage.prompt_tokens);
  });
});
