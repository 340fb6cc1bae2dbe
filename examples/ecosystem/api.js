'use strict';
// The API of the example: an ordinary Node HTTP server, as PM2 runs it in
// cluster mode. It listens on PORT (3000), answers each request with which
// app, instance and process served it, tells PM2 (or gm2-init) that it is
// ready with process.send('ready') once it listens (wait_ready: true), and
// on SIGINT stops accepting, finishes open requests and exits 0.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({
    app: 'api',
    pid: process.pid,
    instance: process.env.NODE_APP_INSTANCE,
    env: process.env.NODE_ENV,
  }));
});

server.listen(process.env.PORT || 3000, () => {
  if (process.send) process.send('ready');
});

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
