'use strict';
// Prints what an app can observe of its own process, for comparing runs with
// and without the preload. Ends by itself.
const net = require('net');
const dgram = require('dgram');
const cp = require('child_process');
const env = Object.keys(process.env).filter((k) => !/^(NODE_OPTIONS|GM2_|LISTEN_)/.test(k)).sort();
const out = {
  argv: process.argv,
  execArgv: process.execArgv,
  globals: Object.getOwnPropertyNames(globalThis).sort(),
  processProps: Object.getOwnPropertyNames(process).sort(),
  processSymbols: Object.getOwnPropertySymbols(process).map(String),
  env: env,
  main: require.main === module,
  events: process.eventNames().filter((e) => e !== 'newListener' && e !== 'removeListener').map(String),
  sigterm: process.listenerCount('SIGTERM'),
  sigint: process.listenerCount('SIGINT'),
  listen: [net.Server.prototype.listen.name, net.Server.prototype.listen.length],
  bind: [dgram.Socket.prototype.bind.name, dgram.Socket.prototype.bind.length],
  spawnSync: [cp.spawnSync.name, cp.spawnSync.length],
  handles: process.getActiveResourcesInfo ? process.getActiveResourcesInfo() : null,
};
console.log(JSON.stringify(out, null, 1));
console.error('stderr line');
setTimeout(() => console.log('timer'), 1);
