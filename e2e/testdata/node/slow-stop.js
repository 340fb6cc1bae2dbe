'use strict';
// A PM2-style app whose graceful stop takes a while: on SIGINT it stops
// accepting, waits STOP_MS (in-flight work, flushing), writes MARK.<pid>
// and exits 0.
const fs = require('fs');
const http = require('http');

const server = http.createServer((req, res) => res.end(String(process.pid)));
server.listen(process.env.PORT || 3000);

process.on('SIGINT', () => {
  server.close();
  setTimeout(() => {
    fs.writeFileSync(process.env.MARK + '.' + process.pid, 'stopped');
    process.exit(0);
  }, Number(process.env.STOP_MS) || 3000);
});
