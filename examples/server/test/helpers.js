'use strict';
// Test setup: start server.js as a child process on a free port with the repository's tiny
// fixture model, and an OpenAI client pointed at it.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const OpenAI = require('openai');

const REPO = path.resolve(__dirname, '..', '..', '..');
const TINY = path.join(REPO, 'tests', 'fixtures', 'tiny');
const MODEL = path.join(TINY, 'model');
const ADAPTERS = path.join(TINY, 'adapters');
const SERVER = path.join(__dirname, '..', 'server.js');

const tempDirs = [];
process.on('exit', () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary directory, removed when the process exits. */
function tempDir(tag) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `loradock-server-${tag}-`));
  tempDirs.push(dir);
  return dir;
}

/** The server's flags for the tiny model (threads 1, 64 MiB, context 256), plus `extra`. */
function serverArgs(extra = []) {
  return [
    '--model', MODEL, '--port', '0', '--adapter-root', ADAPTERS, '--allow-unverified',
    '--threads', '1', '--budget', '64M', '--max-context', '256', '--cache-dir', tempDir('cache'),
    ...extra,
  ];
}

/**
 * Start the server; resolves once it prints its address.
 * @returns {Promise<{url: string, child: import('node:child_process').ChildProcess, stop: () => Promise<void>, output: () => string}>}
 */
function startServer(args = serverArgs()) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        resolve({
          url: m[1],
          child,
          output: () => out,
          stop: () => new Promise((r) => {
            if (child.exitCode !== null) return r();
            child.once('exit', r);
            child.kill('SIGTERM');
          }),
        });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (out += d));
    child.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${out}`)));
  });
}

/** An OpenAI client for the server (no retries, so errors surface as they are). */
function client(url) {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60000 });
}

/** POST JSON with fetch; resolves to {status, body}. */
async function postJson(url, body, raw = false) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Parse Prometheus text into {name{labels}: value}. */
function parseMetrics(text) {
  const samples = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`bad metrics line: ${line}`);
    samples[m[1]] = Number(m[2]);
  }
  return samples;
}

/** GET /metrics, parsed. */
async function metrics(url) {
  return parseMetrics(await (await fetch(`${url}/metrics`)).text());
}

/** Poll `fn` until it returns a truthy value (or `ms` pass); returns the last value. */
async function until(fn, ms = 20000) {
  const deadline = Date.now() + ms;
  let v;
  while (!(v = await fn()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return v;
}

module.exports = {
  REPO, TINY, MODEL, ADAPTERS, tempDir, serverArgs, startServer, client, postJson, parseMetrics, metrics, until,
};
