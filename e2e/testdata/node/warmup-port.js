'use strict';
// An app that serves a warm-up port for a moment, then closes it and
// serves its real one: listen(WARMUP_PORT, '127.0.0.1'), close it, then
// listen(PORT, '127.0.0.1'). Every answer is the pid. SIGINT closes the
// server and exits 0.
const http = require('http');

function server() {
  return http.createServer((req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.end(String(process.pid));
  });
}

const warmup = server();
let api;
warmup.listen(Number(process.env.WARMUP_PORT), '127.0.0.1', () => {
  warmup.close(() => {
    api = server();
    api.listen(Number(process.env.PORT), '127.0.0.1');
  });
});

process.on('SIGINT', () => {
  if (!api) process.exit(0);
  api.close(() => process.exit(0));
});
