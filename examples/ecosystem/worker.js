'use strict';
// The queue worker of the example, in fork mode: one process that does
// some work every second and serves no port. It stands in for a consumer
// of a job queue. On SIGINT it finishes the current job and exits 0.
let jobs = 0;
const timer = setInterval(() => {
  jobs++;
}, 1000);

process.on('SIGINT', () => {
  clearInterval(timer);
  process.exit(0);
});
