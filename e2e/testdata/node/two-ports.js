'use strict';
// An app with two HTTP ports, as many have (the API and an admin or metrics
// port): listen(PORT || 3000) and listen(ADMIN_PORT || 3001, '127.0.0.1').
// Both answer every request with the pid. SIGINT closes both and exits 0.
const http = require('http');

function server() {
  return http.createServer((req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.end(String(process.pid));
  });
}

const api = server();
api.listen(Number(process.env.PORT) || 3000);
const admin = server();
admin.listen(Number(process.env.ADMIN_PORT) || 3001, '127.0.0.1');

process.on('SIGINT', () => {
  let open = 2;
  for (const s of [api, admin]) {
    s.close(() => {
      if (--open === 0) process.exit(0);
    });
  }
});
