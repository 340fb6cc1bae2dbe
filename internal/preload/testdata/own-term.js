'use strict';
// Has its own SIGTERM listener (and a SIGINT one): SIGTERM must run its own.
const server = require('http').createServer((req, res) => res.end(String(process.pid)));
server.listen(Number(process.env.PORT));
process.on('SIGINT', () => { console.log('sigint'); process.exit(3); });
process.on('SIGTERM', () => { console.log('term'); process.exit(7); });
