'use strict';
// An app with its port written in the code, as many are: listen(3000), no
// PORT, no configuration. It answers every request with its pid and, on
// SIGINT, stops accepting, finishes open requests and exits 0.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(String(process.pid));
});

server.listen(3000);

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
