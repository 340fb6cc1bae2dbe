'use strict';
// An unchanged app for gm2-init's end-to-end tests. It listens on PORT the
// way a PM2 app does (or on the inherited fd INFO_FD, for a run without the
// preload), optionally also on ADMIN_PORT (a port not in --listen, which
// gm2-init shares on demand), and answers every request with what it
// observes as JSON. SIGINT closes the servers and exits 0.
const http = require('http');
const net = require('net');
const v8 = require('v8');

function info(server) {
  return JSON.stringify({
    pid: process.pid,
    node_options: process.env.NODE_OPTIONS === undefined ? null : process.env.NODE_OPTIONS,
    preload_fd: process.env.GM2_PRELOAD_FD === undefined ? null : process.env.GM2_PRELOAD_FD,
    preload_patched: net.Server.prototype.listen[Symbol.for('gm2-init.preload')] === true,
    heap_limit: v8.getHeapStatistics().heap_size_limit,
    address: server.address(),
    argv: process.argv.slice(2),
    exec_argv: process.execArgv,
  });
}

function serve() {
  const server = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(info(server));
  });
  return server;
}

// The admin server is asked for first: by the time the preload reports the
// main server listening (which makes the worker ready), it listens too.
const servers = [];
if (process.env.ADMIN_PORT) {
  const admin = serve();
  admin.listen(Number(process.env.ADMIN_PORT), '127.0.0.1');
  servers.push(admin);
}
const main = serve();
if (process.env.INFO_FD) {
  main.listen({ fd: Number(process.env.INFO_FD) });
} else {
  main.listen(process.env.PORT || 3000);
}
servers.push(main);

process.on('SIGINT', () => {
  let open = servers.length;
  servers.forEach((s) => s.close(() => {
    if (--open === 0) process.exit(0);
  }));
});
