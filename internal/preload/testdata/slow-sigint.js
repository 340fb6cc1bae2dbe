'use strict';
// A once('SIGINT') app whose shutdown takes a while: a second SIGTERM (a
// wrapper forwarding the same stop) must not kill it halfway. SIGWINCH tells
// the test that every earlier signal has been dispatched: libuv hands
// signals to JavaScript in delivery order, and the kernel delivers a pending
// SIGTERM (15) before a pending SIGWINCH (28).
const server = require('http').createServer((req, res) => res.end(String(process.pid)));
server.listen(Number(process.env.PORT));
process.once('SIGINT', () => {
  server.close();
  process.on('SIGWINCH', () => console.log('winch'));
  // Said once this turn of the loop is over, so that a second SIGTERM sent
  // on seeing it meets whatever the preload left in place after the first.
  setImmediate(() => console.log('stopping'));
  process.stdin.once('data', () => process.exit(0)); // the test says when
});
