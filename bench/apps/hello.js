'use strict';
// The app of the benchmarks: examples/node/http-server.js plus one branch.
// It calls listen(PORT, HOST) like any PM2 app: under pm2-runtime and Node's
// cluster module the master takes that over, under gm2-init its Node
// preload redirects it to the socket gm2-init passed (how gm2-init runs an
// unmodified PM2 app). Under the ideal launcher, which has no preload, it
// serves on the passed fd 3 itself (LISTEN_FDS, LISTEN_PID); HELLO_FD3=1
// makes it do that under gm2-init too. It answers every request with its pid
// and stops gracefully on SIGINT (PM2) or SIGTERM.
const http = require('http');

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(String(process.pid));
});

const fds = Number(process.env.LISTEN_FDS || 0);
const passed = fds >= 1 && Number(process.env.LISTEN_PID) === process.pid;
if (passed && (!process.env.GM2_LISTENERS || process.env.HELLO_FD3 === '1')) {
  server.listen({ fd: 3 });
} else {
  server.listen(Number(process.env.PORT || 3000), process.env.HOST || undefined);
}

function stop() {
  server.close(() => process.exit(0));
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
