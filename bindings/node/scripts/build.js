#!/usr/bin/env node
'use strict';
/**
 * Builds the N-API addon build/loradock.node from src/*.c with the system C compiler,
 * against the node-api-headers package (no node-gyp, no header downloads) and loradock's
 * shared library.
 *
 * Environment:
 *   LORADOCK_LIB_DIR      directory of libloradock.so (default: <repo>/target/debug)
 *   LORADOCK_INCLUDE_DIR  directory of loradock.h (default: <repo>/include)
 *   CC                    C compiler (default: cc)
 *   LORADOCK_NODE_WERROR  1: warnings are errors
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const pkg = path.resolve(__dirname, '..');
const repo = path.resolve(pkg, '..', '..');
const libDir = path.resolve(process.env.LORADOCK_LIB_DIR || path.join(repo, 'target', 'debug'));
const incDir = path.resolve(process.env.LORADOCK_INCLUDE_DIR || path.join(repo, 'include'));
const napiInc = require('node-api-headers').include_dir;
const cc = process.env.CC || 'cc';
const out = path.join(pkg, 'build', 'loradock.node');

for (const [what, file] of [
  ['loradock.h', path.join(incDir, 'loradock.h')],
  ['libloradock.so', path.join(libDir, 'libloradock.so')],
]) {
  if (!fs.existsSync(file)) {
    console.error(`loradock: ${what} not found at ${file}; build it (cargo build --lib) or set ` +
      (what.endsWith('.h') ? 'LORADOCK_INCLUDE_DIR' : 'LORADOCK_LIB_DIR'));
    process.exit(1);
  }
}

const sources = fs.readdirSync(path.join(pkg, 'src'))
  .filter((f) => f.endsWith('.c'))
  .sort()
  .map((f) => path.join(pkg, 'src', f));
fs.mkdirSync(path.dirname(out), { recursive: true });
const args = [
  '-std=c11', '-D_DEFAULT_SOURCE', '-O2', '-g', '-fPIC', '-shared', '-pthread',
  '-fvisibility=hidden', '-Wall', '-Wextra',
  ...(process.env.LORADOCK_NODE_WERROR === '1' ? ['-Werror'] : []),
  `-I${napiInc}`, `-I${incDir}`,
  ...sources,
  '-o', out,
  `-L${libDir}`, '-lloradock', `-Wl,-rpath,${libDir}`,
];
try {
  execFileSync(cc, args, { stdio: 'inherit' });
} catch (e) {
  console.error(`loradock: ${cc} failed (${e.status ?? e.message})`);
  process.exit(1);
}
console.log(`loradock: built ${path.relative(process.cwd(), out) || out} against ${libDir}`);
