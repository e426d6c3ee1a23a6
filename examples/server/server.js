#!/usr/bin/env node
'use strict';
/**
 * Example OpenAI-compatible server over loradock: one resident base model ("base"), LoRA
 * adapters as models ("styleA") and composites ("base+styleA:0.7+styleB:0.3").
 * Run `node server.js --help` for the flags. Prints "listening on http://HOST:PORT" once
 * ready; SIGINT/SIGTERM stop it (in-flight requests end, the runtime is closed).
 */
const loradock = require('loradock');
const { parseConfig } = require('./lib/config');
const { createApp } = require('./lib/app');

/**
 * Open the runtime, register the configured adapters and listen.
 * @param {ReturnType<typeof parseConfig>} config
 * @returns {Promise<{server: import('node:http').Server, rt: import('loradock').Runtime, url: string, close: () => Promise<void>}>}
 */
async function startServer(config) {
  const rt = await loradock.open(config.runtime);
  const { server, ctx } = createApp(rt, config);
  try {
    for (const a of config.adapters) await ctx.adapters.register(a.name, a.source);
  } catch (e) {
    await rt.close();
    throw e;
  }
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const { address, port } = server.address();
  const host = address.includes(':') ? `[${address}]` : address;
  const close = async () => {
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    });
    await rt.close();
  };
  return { server, rt, url: `http://${host}:${port}`, close };
}

async function main() {
  let config;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (e) {
    console.error(`error: ${e.message}`);
    process.exit(2);
  }
  if (config.help) {
    process.stdout.write(config.text);
    return;
  }
  const app = await startServer(config).catch((e) => {
    console.error(`error: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    process.exit(1);
  });
  console.log(`listening on ${app.url}`);
  const stop = async () => {
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) main();

module.exports = { startServer };
