'use strict';
// Listens and handles no signal at all: SIGTERM must kill it as it kills Node.
require('http').createServer((req, res) => res.end(String(process.pid))).listen(Number(process.env.PORT));
