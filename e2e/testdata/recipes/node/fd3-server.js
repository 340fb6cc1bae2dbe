'use strict';
// The explicit Node recipe: serve on the socket gm2-init passes as fd 3
// (no preload needed), answer "pid P ppid Q", finish open requests on TERM.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`pid ${process.pid} ppid ${process.ppid}\n`);
});
server.listen({ fd: 3 });

process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
