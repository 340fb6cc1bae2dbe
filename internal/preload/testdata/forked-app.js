'use strict';
// The HTTP example app, plus a check that a fork()ed child still has its
// IPC channel after the preload moved it past the inherited fds.
if (process.env.FORKED === '1' && typeof process.send !== 'function') {
  process.exit(42);
}
require('../../../examples/node/http-server.js');
