'use strict';
// A SIGINT listener and nothing else: the process must end by itself, the
// preload's SIGTERM listener must not keep it alive.
process.on('SIGINT', () => {});
setImmediate(() => console.log('SIGTERM listeners: ' + process.listenerCount('SIGTERM')));
