'use strict';
// An app that took over its listener and then starts a Node subprocess: the
// subprocess must get no listening socket and its preload must stay silent
// although it inherits GM2_LISTENERS.
const cp = require('child_process');
const server = require('http').createServer((req, res) => res.end(String(process.pid)));
server.listen(Number(process.env.PORT), () => {
  const r = cp.spawnSync(process.execPath, ['-e', `
    const fs = require('fs');
    let socket = false;
    try { socket = fs.fstatSync(3).isSocket(); } catch (e) {}
    console.log(JSON.stringify({ pid: process.pid, fd3IsSocket: socket }));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.stdout.write(r.stdout);
});
process.on('SIGINT', () => server.close(() => process.exit(0)));
