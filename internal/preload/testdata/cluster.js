'use strict';
// An app that uses Node's own cluster module: the primary forks WORKERS
// workers and never listens; every worker listens on PORT.
const cluster = require('cluster');
if (cluster.isPrimary) {
  for (let i = 0; i < Number(process.env.WORKERS || 2); i++) cluster.fork();
  process.on('SIGINT', () => {
    for (const id in cluster.workers) cluster.workers[id].kill();
    process.exit(0);
  });
} else {
  require('http').createServer((req, res) => res.end(String(process.pid))).listen(Number(process.env.PORT));
}
