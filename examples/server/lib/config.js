'use strict';
// Server configuration from command-line flags, with environment variables as defaults.
const path = require('node:path');

const HELP = `loradock OpenAI-compatible server (example)

usage: node server.js --model PATH [options]

  --model PATH             base model: HF directory or GGUF file        (LORADOCK_MODEL)
  --host HOST              listen address, default 127.0.0.1             (LORADOCK_HOST)
  --port N                 listen port, default 8080; 0 = any free port  (LORADOCK_PORT)
  --adapter-root DIR       a directory local adapter sources must be under; repeatable
                                                     (LORADOCK_ADAPTER_ROOTS, ':'-separated)
  --adapter NAME=SOURCE    register an adapter at start; repeatable
                                                     (LORADOCK_ADAPTERS, ','-separated)
  --allow-unverified       accept adapters registered without a digest (LORADOCK_ALLOW_UNVERIFIED=1)
  --threads N              compute threads, 0 = all cores                (LORADOCK_THREADS)
  --budget BYTES           device memory budget, K/M/G suffixes          (LORADOCK_BUDGET)
  --max-context N          most positions per request                    (LORADOCK_MAX_CONTEXT)
  --max-seqs N             sequences decoding at once                    (LORADOCK_MAX_SEQS)
  --stream-buffer N        events buffered per request before it pauses  (LORADOCK_STREAM_BUFFER)
  --kv-type T              f32 | f16 | int8 | q4                         (LORADOCK_KV_TYPE)
  --cache-dir DIR          adapter store disk cache                      (LORADOCK_CACHE_DIR)
  --default-max-tokens N   max_tokens when a request gives none, default 128
  --max-body BYTES         largest request body, default 1M
  --help                   this text
`;

const FLAGS = {
  model: 'string',
  host: 'string',
  port: 'int',
  'adapter-root': 'list',
  adapter: 'list',
  'allow-unverified': 'bool',
  threads: 'int',
  budget: 'bytes',
  'max-context': 'int',
  'max-seqs': 'int',
  'stream-buffer': 'int',
  'kv-type': 'string',
  'cache-dir': 'string',
  'default-max-tokens': 'int',
  'max-body': 'bytes',
  help: 'bool',
};

/** Parse "64M", "1G", "4096" into bytes. */
function parseBytes(s) {
  const m = /^(\d+)\s*([kmg]?)i?b?$/i.exec(String(s).trim());
  if (!m) throw new Error(`not a byte size: '${s}'`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()];
}

function convert(kind, name, v) {
  if (kind === 'int') {
    if (!/^\d+$/.test(String(v))) throw new Error(`--${name} must be a non-negative integer, not '${v}'`);
    return Number(v);
  }
  if (kind === 'bytes') return parseBytes(v);
  if (kind === 'bool') return v === true || /^(1|true|yes|on)$/i.test(String(v));
  return String(v);
}

/** Defaults from the environment. */
function fromEnv(env) {
  const o = {};
  const set = (name, v) => {
    if (v !== undefined && v !== '') o[name] = v;
  };
  set('model', env.LORADOCK_MODEL);
  set('host', env.LORADOCK_HOST);
  set('port', env.LORADOCK_PORT);
  if (env.LORADOCK_ADAPTER_ROOTS) o['adapter-root'] = env.LORADOCK_ADAPTER_ROOTS.split(':').filter(Boolean);
  if (env.LORADOCK_ADAPTERS) o.adapter = env.LORADOCK_ADAPTERS.split(',').filter(Boolean);
  set('allow-unverified', env.LORADOCK_ALLOW_UNVERIFIED);
  set('threads', env.LORADOCK_THREADS);
  set('budget', env.LORADOCK_BUDGET);
  set('max-context', env.LORADOCK_MAX_CONTEXT);
  set('max-seqs', env.LORADOCK_MAX_SEQS);
  set('stream-buffer', env.LORADOCK_STREAM_BUFFER);
  set('kv-type', env.LORADOCK_KV_TYPE);
  set('cache-dir', env.LORADOCK_CACHE_DIR);
  return o;
}

/**
 * The server's configuration from `argv` (flags win) and `env`.
 * @param {string[]} argv arguments after the script name
 * @param {NodeJS.ProcessEnv} env
 * @returns {{help: boolean, host: string, port: number, runtime: object,
 *   adapters: {name: string, source: string}[], defaultMaxTokens: number, maxBody: number}}
 */
function parseConfig(argv, env = process.env) {
  const raw = fromEnv(env);
  const lists = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}' (see --help)`);
    let [name, value] = a.slice(2).split(/=(.*)/s, 2);
    const kind = FLAGS[name];
    if (!kind) throw new Error(`unknown flag --${name} (see --help)`);
    if (value === undefined && kind !== 'bool') {
      if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`);
      value = argv[++i];
    }
    if (kind === 'list') (lists[name] ??= []).push(value);
    else raw[name] = value ?? true;
  }
  Object.assign(raw, lists);
  const c = {};
  for (const [name, v] of Object.entries(raw)) {
    c[name] = FLAGS[name] === 'list' ? v : convert(FLAGS[name], name, v);
  }
  if (c.help) return { help: true, text: HELP };
  if (!c.model) throw new Error('--model (or LORADOCK_MODEL) is required (see --help)');
  const adapters = (c.adapter ?? []).map((spec) => {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new Error(`--adapter takes NAME=SOURCE, not '${spec}'`);
    return { name: spec.slice(0, eq), source: spec.slice(eq + 1) };
  });
  const runtime = { model: path.resolve(c.model) };
  if (c['adapter-root']) runtime.storeRoots = c['adapter-root'].map((d) => path.resolve(d));
  if (c['allow-unverified']) runtime.allowUnverified = true;
  if (c.threads !== undefined) runtime.threads = c.threads;
  if (c.budget !== undefined) runtime.budgetBytes = c.budget;
  if (c['max-context'] !== undefined) runtime.maxContext = c['max-context'];
  if (c['max-seqs'] !== undefined) runtime.maxSeqs = c['max-seqs'];
  if (c['stream-buffer'] !== undefined) runtime.streamBuffer = c['stream-buffer'];
  if (c['kv-type'] !== undefined) runtime.kvType = c['kv-type'];
  if (c['cache-dir'] !== undefined) runtime.cacheDir = path.resolve(c['cache-dir']);
  return {
    help: false,
    host: c.host ?? '127.0.0.1',
    port: c.port ?? 8080,
    runtime,
    adapters,
    defaultMaxTokens: c['default-max-tokens'] ?? 128,
    maxBody: c['max-body'] ?? 1024 * 1024,
  };
}

module.exports = { parseConfig, parseBytes, HELP };
