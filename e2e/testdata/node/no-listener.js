'use strict';
// A Node program without any server (a batch job): it prints what it sees
// and ends by itself. With or without the preload the output must be the same.
const net = require('net');
process.stdout.write(JSON.stringify({
  argv: process.argv.slice(2),
  exec_argv: process.execArgv,
  preload_patched: net.Server.prototype.listen[Symbol.for('gm2-init.preload')] === true,
  sigterm_listeners: process.listenerCount('SIGTERM'),
  // An IPC channel to a parent (gm2-init's, for its cluster workers).
  ipc_channel: process.channel !== undefined,
}) + '\n');
