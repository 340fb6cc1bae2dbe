'use strict';
// Node's own cluster module running hello.js in WORKERS workers (default 2):
// the primary accepts every connection and hands it to a worker (round
// robin, Node's default on Linux), as PM2's cluster mode does.
const cluster = require('cluster');

if (cluster.isPrimary) {
  const n = Number(process.env.WORKERS || 2);
  let stopping = false;
  for (let i = 0; i < n; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
    else if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  require('./hello.js');
}
