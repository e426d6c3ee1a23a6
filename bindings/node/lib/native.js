'use strict';
// Loads the compiled addon (build/loradock.node, or $LORADOCK_NODE_ADDON) and gives it the
// error class it builds its errors with.
const path = require('node:path');
const { LoradockError } = require('./errors');

const file = process.env.LORADOCK_NODE_ADDON || path.join(__dirname, '..', 'build', 'loradock.node');
let native;
try {
  native = require(file);
} catch (e) {
  e.message = `loradock: cannot load the addon ${file} (run \`npm run build\`): ${e.message}`;
  throw e;
}
native.setErrorClass(LoradockError);

module.exports = native;
