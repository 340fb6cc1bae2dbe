'use strict';
// An ordinary PM2-style app: it knows nothing about gm2-init. It listens on
// PORT (3000 by default), answers every request with its pid, prints
// nothing, and on SIGINT stops accepting, finishes open requests and exits 0.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(String(process.pid));
});

server.listen(process.env.PORT || 3000);

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
