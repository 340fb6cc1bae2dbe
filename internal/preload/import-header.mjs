// Prepended by gm2-init to preload.cjs when the preload is loaded as a
// data: URL with --import (no file needed). A data: module can import
// builtins but has no require; the builtins imported here are the same
// objects CommonJS code gets, so the preload patches what the app uses.
import gm2Fs from 'node:fs';
import gm2Net from 'node:net';
import gm2Dgram from 'node:dgram';
import gm2ChildProcess from 'node:child_process';
import gm2Path from 'node:path';
import gm2Module from 'node:module';
import gm2Events from 'node:events';
import gm2WorkerThreads from 'node:worker_threads';
import gm2Os from 'node:os';
const gm2Builtins = {
  fs: gm2Fs,
  net: gm2Net,
  dgram: gm2Dgram,
  child_process: gm2ChildProcess,
  path: gm2Path,
  module: gm2Module,
  events: gm2Events,
  worker_threads: gm2WorkerThreads,
  os: gm2Os,
};
// The cluster module picks its primary or worker half when it is first
// loaded, from NODE_UNIQUE_ID: it must not be imported before the preload
// has decided, so it is loaded on demand (the path only anchors the lookup
// of a builtin; no file is read).
const require = (id) => {
  if (id === 'cluster') return gm2Module.createRequire('/gm2-init-preload.cjs')('cluster');
  if (!Object.prototype.hasOwnProperty.call(gm2Builtins, id)) throw new Error('gm2-init preload: no builtin ' + id);
  return gm2Builtins[id];
};
