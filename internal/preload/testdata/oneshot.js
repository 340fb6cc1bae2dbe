'use strict';
// A one-shot script: it may listen on PORT (shared on demand), closes the
// server again, prints "done" and ends by itself; nothing keeps it alive.
const http = require('http');
const cluster = require('cluster');

if (process.env.PORT) {
  const s = http.createServer(() => {});
  s.listen(Number(process.env.PORT), () => {
    s.close(() => console.log('done ' + cluster.isWorker));
  });
} else {
  setTimeout(() => console.log('done ' + cluster.isWorker), 10);
}
