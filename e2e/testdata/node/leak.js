'use strict';
// A Node app that leaks, for the --max-memory-restart tests: an HTTP server
// on PORT (listen(PORT), as a PM2 app does) whose worker of slot LEAK_SLOT
// keeps LEAK_MB MiB more every second, up to LEAK_MAX_MB, touched so that
// they are resident. Only the first worker to create the file LEAK_ONCE
// leaks: its replacement does not. SIGTERM closes the server and exits 0.
const fs = require('fs');
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ pid: process.pid, instance: process.env.GM2_INSTANCE }));
});
server.listen(Number(process.env.PORT || 3000), process.env.HOST);

function claim(file) {
  try {
    fs.closeSync(fs.openSync(file, 'wx'));
    return true;
  } catch (e) {
    return false;
  }
}

const held = [];
if (process.env.GM2_INSTANCE === (process.env.LEAK_SLOT || '0') && claim(process.env.LEAK_ONCE)) {
  const mb = Number(process.env.LEAK_MB || 16);
  const max = Number(process.env.LEAK_MAX_MB || 512);
  const timer = setInterval(() => {
    if (held.length * mb >= max) {
      clearInterval(timer);
      return;
    }
    held.push(Buffer.alloc(mb << 20, 1));
  }, 1000);
  timer.unref();
}

process.on('SIGTERM', () => server.close(() => process.exit(0)));
