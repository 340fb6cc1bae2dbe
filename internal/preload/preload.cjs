'use strict';
// gm2-init's Node preload. It is loaded into every Node process of a worker
// through NODE_OPTIONS (--require of this file, or --import of a data: URL
// built from this file plus import-header.mjs), and it does nothing at all
// unless GM2_LISTENERS describes sockets that really are inherited by this
// process. Why it exists and the exact contract: see the package doc of
// github.com/gm2-init/gm2-init/preload (preload.go).
//
// Style constraints, on purpose:
//   - one script body valid as CommonJS and as the tail of an ES module: it
//     only uses `require` (which the ESM header provides) and no module,
//     exports or __filename;
//   - ES2017 syntax, so an old Node that loads it by --require parses it;
//   - every entry point is wrapped so that a failure leaves the app exactly
//     as Node would run it: the preload must never break a worker;
//   - no output, no handle that keeps the loop alive, no global, no change to
//     process.env or process.argv.
(function gm2InitPreload() {
  try {
    setup();
  } catch (err) {
    // Deliberately silent: an app must run as if the preload were absent.
  }

  function setup() {
    const spec = process.env.GM2_LISTENERS || '';
    const clusterId = toInt(process.env.GM2_NODE_CLUSTER);
    if (!spec && clusterId < 1) return;
    let workerThreads = null;
    try {
      workerThreads = require('worker_threads');
    } catch (err) {
      workerThreads = null;
    }
    // Listening sockets, signals and child processes belong to the main
    // thread; a worker thread sharing the fds could close them under it.
    if (workerThreads && !workerThreads.isMainThread) return;

    const fs = require('fs');
    const net = require('net');
    const dgram = require('dgram');
    const childProcess = require('child_process');
    const path = require('path');

    // A second copy (a nested gm2-init, or NODE_OPTIONS naming the preload
    // twice) must not wrap the wrappers.
    const MARK = Symbol.for('gm2-init.preload');
    if (net.Server.prototype.listen[MARK]) return;

    const pid = process.pid;
    const direct = process.env.LISTEN_PID === String(pid);
    // Node has already opened the IPC channel (NODE_CHANNEL_FD) and removed
    // the variable; its descriptor is what process.channel reports.
    const channelFd = process.channel && typeof process.channel.fd === 'number' ? process.channel.fd : -1;

    const entries = parseListeners(spec).filter(function (e) {
      return e.fd !== channelFd && verify(e);
    });
    // The channel is gm2-init's (or a relaying wrapper's) when
    // GM2_NODE_CLUSTER names a worker id and NODE_CHANNEL_FD really was a
    // socket: the variable is inherited also by processes that got no
    // channel, or the channel of another parent.
    const ours = clusterId >= 1 && channelFd >= 0 && isSocket(channelFd);
    if (entries.length === 0 && !ours) return;

    let reportFd = toInt(process.env.GM2_PRELOAD_FD);
    if (!validReportFd(reportFd)) reportFd = -1;

    // Inherited fds to hand on to children while this process is a wrapper.
    const handoff = entries.map(function (e) { return e.fd; });
    if (reportFd >= 0) handoff.push(reportFd);
    handoff.sort(function (a, b) { return a - b; });
    let consumed = false;

    // replyIds maps a query's ref to the on-demand socket id of its answer;
    // relayed, the ref of a query relayed up to {child, seq, gm2, cmd}.
    const replyIds = new Map();
    const relayed = new Map();
    let nextRelay = 0;
    // cluster is Node's cluster module when this process is a cluster
    // worker of gm2-init (or of a relaying wrapper), else null.
    const cluster = ours ? becomeWorker(clusterId) : null;
    const UV_EADDRINUSE = -require('os').constants.errno.EADDRINUSE;
    const UV_ECONNRESET = -require('os').constants.errno.ECONNRESET;

    report('hello ' + pid);
    patchNet();
    patchDgram();
    patchChildProcess();
    if (cluster !== null) {
      patchCluster();
      relayReplies();
    }
    handleSignals();
    try {
      // ESM named imports of builtins (import { spawn } from
      // 'child_process') are snapshots; refresh them after patching.
      const mod = require('module');
      if (typeof mod.syncBuiltinESMExports === 'function') mod.syncBuiltinESMExports();
    } catch (err) {
      // Nothing to refresh on a Node without ESM.
    }

    function isSocket(fd) {
      try {
        return fs.fstatSync(fd).isSocket();
      } catch (err) {
        return false;
      }
    }

    // ---- GM2_LISTENERS ----------------------------------------------------

    // parseListeners reads "3=tcp:0.0.0.0:3000,6=unix:/run/app.sock".
    // Malformed entries are skipped, never guessed.
    function parseListeners(s) {
      const out = [];
      const seen = new Set();
      s.split(',').forEach(function (item) {
        const m = /^([0-9]{1,9})=(tcp|udp|unix|unixgram):(.+)$/.exec(item);
        if (!m) return;
        const fd = Number(m[1]);
        if (fd < 3 || seen.has(fd)) return;
        const e = { fd: fd, proto: m[2], host: '', port: 0, path: '', taken: false };
        if (e.proto === 'tcp' || e.proto === 'udp') {
          const i = m[3].lastIndexOf(':');
          if (i < 0) return;
          let host = m[3].slice(0, i);
          if (host[0] === '[' && host[host.length - 1] === ']') host = host.slice(1, -1);
          const port = Number(m[3].slice(i + 1));
          if (!Number.isInteger(port) || port < 1 || port > 65535) return;
          e.host = host;
          e.port = port;
        } else {
          e.path = m[3];
        }
        seen.add(fd);
        out.push(e);
      });
      return out;
    }

    // verify proves that fd e.fd is the socket GM2_LISTENERS describes.
    // GM2_LISTENERS is inherited by every descendant, also by those that got
    // none of the fds (an app's own subprocesses): there fd 3 may be Node's
    // epoll fd or an IPC socket. The process gm2-init started directly
    // (LISTEN_PID) only needs a socket at that number; any other process
    // needs proof from /proc/self/net: the fd's inode listed as a socket of
    // that kind, listening, on that port. Without /proc it does nothing.
    function verify(e) {
      let st;
      try {
        st = fs.fstatSync(e.fd);
      } catch (err) {
        return false;
      }
      if (!st.isSocket()) return false;
      if (direct) return true;
      return procHasSocket(e, String(st.ino));
    }

    function procHasSocket(e, ino) {
      const files = e.proto === 'tcp' ? ['tcp', 'tcp6'] : e.proto === 'udp' ? ['udp', 'udp6'] : ['unix'];
      for (let i = 0; i < files.length; i++) {
        const rows = procTable(files[i]);
        for (let j = 1; j < rows.length; j++) {
          const f = rows[j].trim().split(/\s+/);
          if (e.proto === 'tcp' || e.proto === 'udp') {
            // sl local_address rem_address st ... uid timeout inode
            if (f[9] !== ino) continue;
            const port = parseInt(f[1].slice(f[1].lastIndexOf(':') + 1), 16);
            return port === e.port && (e.proto === 'udp' || f[3] === '0A');
          }
          // Num RefCount Protocol Flags Type St Inode Path
          if (f[6] !== ino) continue;
          if (e.proto === 'unixgram') return f[4] === '0002';
          return f[4] === '0001' && (parseInt(f[3], 16) & 0x10000) !== 0;
        }
      }
      return false;
    }

    function procTable(name) {
      try {
        return fs.readFileSync('/proc/self/net/' + name, 'latin1').split('\n');
      } catch (err) {
        return [];
      }
    }

    // validReportFd accepts GM2_PRELOAD_FD only if it is a pipe that is none
    // of the listeners: writing a line into anything else would corrupt it.
    function validReportFd(fd) {
      if (fd < 3 || fd === channelFd) return false;
      if (entries.some(function (e) { return e.fd === fd; })) return false;
      try {
        return fs.fstatSync(fd).isFIFO();
      } catch (err) {
        return false;
      }
    }

    // report writes one event line with a single write(2): lines are far
    // below PIPE_BUF, so they never interleave with other processes' lines.
    // No stream, so nothing keeps the process alive; gm2-init may have
    // closed its end (EPIPE) and a full pipe is not worth blocking for.
    function report(line) {
      if (reportFd < 0) return;
      try {
        fs.writeSync(reportFd, line + '\n');
      } catch (err) {
        // EPIPE, EBADF, EAGAIN: the supervisor does without this line.
      }
    }

    // ---- listen() and bind() ---------------------------------------------

    // take returns the inherited entry that should serve a request for port
    // (or path). The port alone identifies a listener: gm2-init's --listen
    // decides the address, the app's host argument is ignored. An entry
    // serves one server per process: closing that server closes the fd.
    function take(proto, port, host, upath, family) {
      let best = null;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        if (e.taken || e.proto !== proto) continue;
        if (proto === 'unix') {
          if (!samePath(e.path, upath)) continue;
        } else {
          if (e.port !== port) continue;
          if (family && net.isIP(e.host) && net.isIP(e.host) !== family) continue;
          if (best === null || (host && e.host === host)) best = e;
          continue;
        }
        best = e;
        break;
      }
      if (best !== null) {
        best.taken = true;
        consumed = true;
      }
      return best;
    }

    function samePath(bound, asked) {
      if (typeof asked !== 'string' || asked === '') return false;
      if (bound[0] === '@') return asked === '\0' + bound.slice(1);
      if (asked === bound) return true;
      return asked[0] !== '\0' && path.resolve(asked) === path.resolve(bound);
    }

    function toBacklog(v) {
      const n = Number(v);
      return n >= 0 ? n : 0;
    }

    // onListening reports when target listens, after the app's own
    // 'listening' callbacks (which often install its SIGINT handler) and
    // the ticks they queue have run: readiness means ready to be stopped too.
    function onListening(target, fd) {
      target.once('listening', function () {
        setImmediate(function () {
          report('listening ' + fd + ' ' + pid);
        });
      });
    }

    // portOf reads a port the way net and dgram accept it: undefined and
    // null mean 0 (any free port); a number or a numeric string from 0 to
    // 65535 is that port; anything else is -1 and left to Node, which
    // throws its own error for it.
    function portOf(v) {
      if (v === undefined || v === null) return 0;
      if (typeof v !== 'number' && typeof v !== 'string') return -1;
      if (typeof v === 'string' && v.trim() === '') return -1;
      const n = Number(v);
      return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : -1;
    }

    // asPrimary runs fn while the cluster module says this process is the
    // primary. net's listen() asks the primary for every form that is not
    // exclusive, even for an fd or a handle (it would then ask gm2-init to
    // open its own descriptor with that number); and those forms ignore
    // `exclusive`. listen() reads cluster.isPrimary synchronously for them,
    // so flipping it for that call makes Node open the fd in this process.
    function asPrimary(fn) {
      if (cluster === null || cluster.isPrimary !== false) return fn();
      cluster.isPrimary = true;
      try {
        return fn();
      } finally {
        cluster.isPrimary = false;
      }
    }

    // exclusive returns a copy of an options object with exclusive: true.
    function exclusive(o) {
      return Object.assign({}, o, { exclusive: true });
    }

    function patchNet() {
      const proto = net.Server.prototype;
      const orig = proto.listen;
      proto.listen = copyShape(function listen() {
        const server = this;
        const args = Array.prototype.slice.call(arguments);
        let plan = null;
        try {
          plan = planListen(server, args);
        } catch (err) {
          plan = null;
        }
        if (plan === null) return orig.apply(server, args);
        if (plan.local) return asPrimary(function () { return orig.apply(server, plan.args); });
        return orig.apply(server, plan.args);
      }, orig);
      proto.listen[MARK] = true;
    }

    // planListen mirrors net's normalizeArgs: listen(port[, host][,
    // backlog][, cb]), listen({port, host, backlog}[, cb]), listen(path[,
    // backlog][, cb]), listen({path}[, cb]), listen(handle), listen({fd}).
    // It returns null to leave the call to Node as it is, or {args, local}:
    // new arguments, and whether to run them as the primary (local).
    //
    //  - a --listen port (and unix path): {fd: N} of the passed socket, local;
    //  - in a cluster worker of gm2-init, what Node's cluster never shares
    //    stays the process's own: port 0, unix paths (exclusive: true), fds
    //    and handles (local);
    //  - any other port in a cluster worker: left to Node, which asks
    //    gm2-init (shared on demand); `exclusive: true` binds locally.
    function planListen(server, args) {
      if (server._handle) return null; // Node throws ERR_SERVER_ALREADY_LISTEN
      const n = args.length;
      const worker = cluster !== null;
      if (n === 0) return worker ? { args: [{ port: 0, exclusive: true }], local: false } : null;
      const a0 = args[0];
      if (typeof a0 === 'function') {
        return worker ? { args: [{ port: 0, exclusive: true }].concat(args), local: false } : null;
      }
      const cb = typeof args[n - 1] === 'function' ? args[n - 1] : null;
      const backlogFromArgs = toBacklog(n > 1 && args[1]) || toBacklog(n > 2 && args[2]);
      let port = -1;
      let host = '';
      let upath = '';
      let signal = null;
      let backlog = backlogFromArgs;
      let object = false;
      if (a0 !== null && typeof a0 === 'object') {
        object = true;
        if (a0._handle || a0.handle || typeof a0.fd === 'number') return { args: args, local: true };
        if ('port' in a0) {
          port = portOf(a0.port);
          host = typeof a0.host === 'string' ? a0.host : '';
        } else if (typeof a0.path === 'string' && a0.path !== '') {
          upath = a0.path;
        } else {
          return null; // Node throws ERR_INVALID_ARG_VALUE
        }
        signal = a0.signal || null;
        backlog = toBacklog(a0.backlog) || backlogFromArgs;
      } else if (typeof a0 === 'string' && !(Number(a0) >= 0)) {
        upath = a0; // net's isPipeName: a string that is not a number
      } else {
        port = portOf(a0);
        if (n > 1 && typeof args[1] === 'string') host = args[1];
      }
      if (port < 0 && upath === '') return null;
      const e = upath !== '' ? take('unix', 0, '', upath, 0) : port > 0 ? take('tcp', port, host, '', 0) : null;
      if (e !== null) {
        const opts = { fd: e.fd };
        if (signal) opts.signal = signal;
        const out = [opts];
        if (backlog) out.push(backlog);
        if (cb) out.push(cb);
        onListening(server, e.fd);
        // A server opened from an fd has no pipe name, and address() returns
        // that name; Node sets it at the same point for listen(path).
        if (upath !== '') server._pipeName = upath;
        return { args: out, local: true };
      }
      if (!worker || port > 0) return null;
      // Port 0 or a unix path in a cluster worker: exclusive, as Node's
      // cluster module would not share them either. The other arguments
      // stay, so that backlog and callback are read as before.
      if (object) return { args: [exclusive(a0)].concat(args.slice(1)), local: false };
      const opts = upath !== '' ? { path: upath, exclusive: true } : { port: 0, exclusive: true };
      if (upath === '' && n > 1 && typeof args[1] === 'string') opts.host = args[1];
      return { args: [opts].concat(args.slice(1)), local: false };
    }

    function patchDgram() {
      const proto = dgram.Socket.prototype;
      const orig = proto.bind;
      proto.bind = copyShape(function bind() {
        const args = Array.prototype.slice.call(arguments);
        let redirected = null;
        try {
          redirected = planBind(this, args);
        } catch (err) {
          redirected = null;
        }
        return orig.apply(this, redirected || args);
      }, orig);
    }

    // planBind covers bind(port[, address][, cb]), bind({port, address,
    // exclusive, fd}[, cb]) and bind(handle). A --listen port of the
    // socket's own family is redirected to its fd (a udp4 socket on an IPv6
    // fd would receive but fail to reply). dgram honours `exclusive` for
    // every form, so in a cluster worker an fd, port 0 and no port at all
    // are made exclusive; another port is left to Node, which asks gm2-init.
    function planBind(sock, args) {
      const n = args.length;
      const worker = cluster !== null;
      const cb = n > 0 && typeof args[n - 1] === 'function' ? args[n - 1] : null;
      const rest = cb ? [cb] : [];
      if (n === 0 || typeof args[0] === 'function') {
        return worker ? [{ port: 0, exclusive: true }].concat(rest) : null;
      }
      const a0 = args[0];
      let port = 0;
      let host = '';
      if (a0 !== null && typeof a0 === 'object') {
        if (typeof a0.recvStart === 'function') return null; // a handle: Node opens it here
        if (a0.fd !== undefined) return worker && !a0.exclusive ? [exclusive(a0)].concat(rest) : null;
        port = portOf(a0.port);
        host = typeof a0.address === 'string' ? a0.address : '';
      } else {
        port = portOf(a0);
        if (n > 1 && typeof args[1] === 'string') host = args[1];
      }
      if (port < 0) return null;
      const family = sock.type === 'udp6' ? 6 : 4;
      const e = port > 0 ? take('udp', port, host, '', family) : null;
      if (e !== null) {
        onListening(sock, e.fd);
        return [{ fd: e.fd, exclusive: true }].concat(rest);
      }
      if (!worker || port > 0) return null;
      if (a0 !== null && typeof a0 === 'object') return [exclusive(a0)].concat(rest);
      const opts = { port: 0, exclusive: true };
      if (host) opts.address = host;
      return [opts].concat(rest);
    }

    // ---- cluster worker of gm2-init ---------------------------------------

    // becomeWorker makes this process a cluster worker, exactly as Node
    // does for a child with NODE_UNIQUE_ID (cluster.isWorker, cluster.worker
    // with the id gm2-init gave), and returns the cluster module; null when
    // it cannot (something loaded the cluster module as primary before this
    // preload ran). gm2-init does not set NODE_UNIQUE_ID itself, see the
    // nodeipc package doc.
    function becomeWorker(id) {
      const had = Object.prototype.hasOwnProperty.call(process.env, 'NODE_UNIQUE_ID');
      let c;
      // Node's worker setup reads its id from NODE_UNIQUE_ID and removes it
      // from the environment, as here.
      if (!had) process.env.NODE_UNIQUE_ID = String(id);
      try {
        c = require('cluster');
        if (!c || !c.isWorker) return null;
        if (!c.worker) {
          if (typeof c._setupWorker !== 'function') return null;
          c._setupWorker();
        }
      } finally {
        if (!had) delete process.env.NODE_UNIQUE_ID;
      }
      // The worker's 'message' and 'disconnect' listeners (Node's own: the
      // app has not run yet) each keep the loop alive through the channel:
      // a one-shot script would never end. Take those references back; a
      // pending query holds one of its own (channelRef), and the app's own
      // listeners count as in Node.
      if (process.env.GM2_NODE_RELAYED === '1') {
        // A wrapper relays for this process (npm start). A stop signal
        // reaches the whole process group, and a wrapper often dies of it
        // at once: Node's cluster worker would then exit on the spot, in
        // the middle of the app's graceful stop. With gm2-init's own channel
        // that cannot happen (gm2-init keeps it open while the worker
        // lives), so only here the disconnect counts as intended.
        process.prependListener('disconnect', function () {
          if (c.worker) c.worker.exitedAfterDisconnect = true;
        });
      }
      const n = process.listenerCount('message') + process.listenerCount('disconnect');
      for (let i = 0; i < n; i++) channelUnref();
      return c;
    }

    // The channel's reference count (Node's Control.refCounted, which
    // Node's own listeners and writes use too), so that what the app does
    // with the channel (process.on('message')) keeps it alive as in Node.
    function channelRef() {
      const ch = process.channel;
      if (!ch) return;
      if (typeof ch.refCounted === 'function') ch.refCounted();
      else ch.ref();
    }

    function channelUnref() {
      const ch = process.channel;
      if (!ch) return;
      if (typeof ch.unrefCounted === 'function') ch.unrefCounted();
      else ch.unref();
    }

    // patchCluster wraps the cluster worker's query to its primary: the
    // channel is referenced while the answer is pending (else a process
    // with nothing else to do would exit before it arrives); the query is
    // tagged {pid, ref} so that the answer names the on-demand socket,
    // which is reported when the server listens; and a second server of
    // this process on an address it already serves gets EADDRINUSE, as
    // without gm2-init (and as Node's own primary answers).
    function patchCluster() {
      const orig = cluster._getServer;
      if (typeof orig !== 'function') return;
      const held = new Set();
      let nextRef = 0;
      cluster._getServer = copyShape(function _getServer(obj, options, cb) {
        if (options === null || typeof options !== 'object' || typeof cb !== 'function') {
          return orig.apply(this, arguments);
        }
        const key = [options.address, options.port, options.addressType, options.fd].join(':');
        if (held.has(key)) {
          process.nextTick(cb, UV_EADDRINUSE, null);
          return undefined;
        }
        if (!process.connected) {
          // No primary any more (a relaying wrapper died): Node would wait
          // for an answer forever.
          process.nextTick(cb, UV_ECONNRESET, null);
          return undefined;
        }
        const ref = ++nextRef;
        let pending = true;
        channelRef();
        const finish = function () {
          if (!pending) return;
          pending = false;
          channelUnref();
        };
        const tagged = Object.assign({}, options, { gm2: { pid: pid, ref: ref } });
        const done = function (errno, handle) {
          finish();
          const id = replyIds.get(ref);
          replyIds.delete(ref);
          if (!errno && handle) {
            consumed = true;
            held.add(key);
            const close = handle.close;
            handle.close = function () {
              held.delete(key);
              return close.apply(this, arguments);
            };
            if (id >= 1) {
              obj.once('listening', function () {
                setImmediate(function () {
                  report('shared ' + id + ' ' + pid);
                });
              });
            }
          }
          return cb.apply(this, arguments);
        };
        try {
          return orig.call(this, obj, tagged, done);
        } catch (err) {
          finish();
          throw err;
        }
      }, orig);
    }

    // relayReplies watches the answers of gm2-init (or of a relaying
    // wrapper) before Node's cluster module handles them: it keeps the
    // socket id of this process's answers, and neutralises an answer meant
    // for another process that shared the channel (a script run before
    // this one by the same shell): its ack would match one of this
    // process's own queries. In a wrapper it also passes the answers to
    // relayed queries down to the child that asked.
    function relayReplies() {
      process.prependListener('internalMessage', function (msg, handle) {
        try {
          if (msg === null || typeof msg !== 'object' || msg.ack === undefined) return;
          if (msg.cmd === 'NODE_GM2') {
            relayDown(msg, handle);
            return;
          }
          if (msg.cmd !== 'NODE_CLUSTER' || msg.gm2 === null || typeof msg.gm2 !== 'object') return;
          if (msg.gm2.pid !== pid) {
            delete msg.ack;
            closeHandle(handle);
            return;
          }
          replyIds.set(msg.gm2.ref, msg.gm2.id);
        } catch (err) {
          // An unexpected message: Node handles it as it would anyway.
        }
      });
    }

    function closeHandle(handle) {
      try {
        if (handle && typeof handle.close === 'function') handle.close();
      } catch (err) {
        // already closed
      }
    }

    // ---- relay (a wrapper's children) ------------------------------------

    // A wrapper (npm start, yarn start, a Node launcher) is a cluster worker
    // of gm2-init but not the app: Node gives its children no channel. So a
    // process that has not listened itself gives every child an IPC channel
    // and GM2_NODE_CLUSTER, and passes its children's queries up to
    // gm2-init as NODE_GM2 messages (ignored by its own cluster module),
    // and the answers, with their sockets, back down.
    function relayChild(child, ownChannel) {
      if (!child || typeof child.send !== 'function' || !child.channel) return;
      if (ownChannel) {
        // The channel must not keep the wrapper alive by itself: the child
        // process does, as long as the wrapper waits for it.
        try {
          child.channel.unref();
        } catch (err) {
          // nothing to unref
        }
        // PM2's readiness handshake, from an app started by a wrapper.
        child.on('message', function (m) {
          if (m === 'ready' && process.connected) {
            try {
              process.send('ready');
            } catch (err) {
              // the channel to gm2-init is gone
            }
          }
        });
      }
      child.on('internalMessage', function (msg, handle) {
        try {
          relayUp(child, msg, handle);
        } catch (err) {
          closeHandle(handle);
        }
      });
    }

    function relayUp(child, msg, handle) {
      if (msg === null || typeof msg !== 'object') return;
      if (msg.cmd !== 'NODE_CLUSTER' && msg.cmd !== 'NODE_GM2') return;
      closeHandle(handle); // a worker never sends its primary a socket
      if (msg.act === 'exitedAfterDisconnect') {
        // The child disconnects from this wrapper on purpose: answer here.
        child.send({ cmd: msg.cmd, ack: msg.seq }, undefined, { swallowErrors: true }, noop);
        return;
      }
      if (msg.act !== 'queryServer' || !process.connected) {
        if (msg.act === 'queryServer') {
          child.send({ cmd: msg.cmd, ack: msg.seq, errno: UV_ECONNRESET, data: null },
            undefined, { swallowErrors: true }, noop);
        }
        return;
      }
      const ref = ++nextRelay;
      relayed.set(ref, { child: child, seq: msg.seq, gm2: msg.gm2, cmd: msg.cmd });
      channelRef();
      const up = Object.assign({}, msg, { cmd: 'NODE_GM2', seq: ref, gm2: { pid: pid, ref: ref } });
      process.send(up, undefined, { swallowErrors: true }, noop);
    }

    function relayDown(msg, handle) {
      const r = relayed.get(msg.ack);
      if (r === undefined || !msg.gm2 || msg.gm2.pid !== pid) {
        closeHandle(handle);
        return;
      }
      relayed.delete(msg.ack);
      channelUnref();
      const down = { cmd: r.cmd, ack: r.seq, errno: msg.errno, key: msg.key, data: msg.data === undefined ? null : msg.data };
      if (r.gm2 !== null && typeof r.gm2 === 'object') {
        down.gm2 = { pid: r.gm2.pid, ref: r.gm2.ref, id: msg.gm2.id };
      }
      if (!r.child.connected) {
        closeHandle(handle);
        return;
      }
      if (handle) {
        // Node closes no "net.Native" handle it sends: this process's copy
        // is closed once the child has it.
        r.child.send(down, handle, { swallowErrors: true }, function () { closeHandle(handle); });
      } else {
        r.child.send(down, undefined, { swallowErrors: true }, noop);
      }
    }

    function noop() {}

    // ---- child processes ------------------------------------------------

    // Node passes a child no fd above 2 unless its stdio array names it. A
    // wrapper (npm start, yarn, a Node launcher) would thus starve the app
    // it starts; so, in a process that has not used a listener itself, every
    // child gets the inherited listener fds and the report pipe at the same
    // numbers, and (in a cluster worker of gm2-init) an IPC channel to relay
    // its queries (relay). A process that did use one (the app) hands
    // nothing on, so its own subprocesses do not hold the listening sockets.
    // extendStdio returns the new stdio, whether the child has a channel
    // and whether this preload added it.
    function extendStdio(stdio, relay) {
      let arr;
      if (stdio === undefined || stdio === null) arr = ['pipe', 'pipe', 'pipe'];
      else if (typeof stdio === 'string') arr = [stdio, stdio, stdio];
      else if (Array.isArray(stdio)) arr = Array.from(stdio);
      else return { stdio: stdio, ipc: false, added: false }; // let Node report the invalid value
      while (arr.length < 3) arr.push(undefined);
      const ipc = arr.indexOf('ipc') >= 0;
      let moved = false;
      handoff.forEach(function (fd) {
        if (arr[fd] === 'ipc') {
          // fork() puts its IPC channel at fd 3; move it after ours (the
          // child learns the number from NODE_CHANNEL_FD).
          arr[fd] = undefined;
          moved = true;
        }
      });
      handoff.forEach(function (fd) {
        while (arr.length <= fd) arr.push(undefined);
        if (arr[fd] === undefined || arr[fd] === null) arr[fd] = fd;
      });
      let added = false;
      if (moved) arr.push('ipc');
      else if (relay && !ipc) {
        arr.push('ipc');
        added = true;
      }
      return { stdio: arr, ipc: ipc || added, added: added };
    }

    // clusterEnv sets GM2_NODE_CLUSTER in a child's environment only when
    // this process relays for it: any other child (the app's own
    // subprocesses, a fork of its own) must not take its channel for
    // gm2-init's.
    function clusterEnv(pairs, relay) {
      if (!Array.isArray(pairs)) return pairs;
      const out = pairs.filter(function (kv) {
        return typeof kv !== 'string' || (kv.indexOf('GM2_NODE_CLUSTER=') !== 0 && kv.indexOf('GM2_NODE_RELAYED=') !== 0);
      });
      if (relay) out.push('GM2_NODE_CLUSTER=' + cluster.worker.id, 'GM2_NODE_RELAYED=1');
      return out;
    }

    function patchChildProcess() {
      // spawn, exec, execFile and fork all end in ChildProcess#spawn with
      // normalized options, which Node itself rewrites (options.stdio).
      const CP = childProcess.ChildProcess;
      if (CP && CP.prototype && typeof CP.prototype.spawn === 'function') {
        const orig = CP.prototype.spawn;
        CP.prototype.spawn = copyShape(function spawn(options) {
          let info = null;
          if (options !== null && typeof options === 'object') {
            try {
              const relay = !consumed && cluster !== null && cluster.worker !== null;
              if (!consumed) {
                info = extendStdio(options.stdio, relay);
                options.stdio = info.stdio;
              }
              if (cluster !== null) options.envPairs = clusterEnv(options.envPairs, relay && info !== null && info.ipc);
            } catch (err) {
              info = null; // leave options as they are
            }
          }
          const ret = orig.apply(this, arguments);
          if (info !== null && info.ipc && cluster !== null && !consumed) {
            try {
              relayChild(this, info.added);
            } catch (err) {
              // the child runs without a relay
            }
          }
          return ret;
        }, orig);
      }
      // The sync family calls an internal function, so each export is
      // wrapped. execSync and execFileSync echo the child's stderr only
      // when no stdio was given; there the call is left alone, which costs
      // nothing: a long-running app started that way would have its
      // output buffered until it exits, so nobody does that. A synchronous
      // child gets no IPC channel (Node has none for them).
      wrapSync('spawnSync', true);
      wrapSync('execFileSync', false);
      wrapSync('execSync', false);
    }

    function wrapSync(name, always) {
      const orig = childProcess[name];
      if (typeof orig !== 'function') return;
      childProcess[name] = copyShape(function () {
        const args = Array.prototype.slice.call(arguments);
        if (!consumed) {
          try {
            const i = syncOptionsIndex(name, args);
            if (i > 0) {
              const o = args[i];
              let extend = false;
              if (o === undefined) extend = always;
              else if (o !== null && typeof o === 'object') extend = always || o.stdio !== undefined;
              if (extend) {
                while (args.length <= i) args.push(undefined);
                args[i] = Object.assign({}, o, { stdio: extendStdio(o && o.stdio, false).stdio });
              }
            }
          } catch (err) {
            return orig.apply(this, arguments);
          }
        }
        return orig.apply(this, args);
      }, orig);
    }

    // syncOptionsIndex finds the options argument the way Node reads it:
    // execSync(command, options), spawnSync/execFileSync(file[, args][, options]).
    function syncOptionsIndex(name, args) {
      if (name === 'execSync') return 1;
      const a1 = args[1];
      if (Array.isArray(a1) || a1 === undefined || a1 === null) return 2;
      if (typeof a1 === 'object') return 1;
      return -1;
    }

    // ---- signals --------------------------------------------------------

    // Apps written for PM2 stop on SIGINT; gm2-init stops workers with
    // SIGTERM, which kills a Node process that does not listen for it.
    // While the app listens for SIGINT and not for SIGTERM, a SIGTERM runs
    // its SIGINT listeners. Otherwise Node's behaviour is untouched, because
    // the preload's own SIGTERM listener exists only in that state: an app
    // with a SIGTERM listener keeps it, an app with neither dies by SIGTERM.
    // A signal listener does not keep Node's loop alive. The listener is
    // visible in process.listeners('SIGTERM') while it exists: hiding it
    // would mean patching listenerCount, which Node's own signal code uses
    // to decide when to stop catching the signal.
    function handleSignals() {
      const EE = require('events');
      const rawListeners = EE.prototype.rawListeners;
      let latched = false;
      let scheduled = false;

      function onTerm() {
        if (others('SIGTERM') > 0) return; // the app's own listener runs
        if (latched) return; // a wrapper forwarding the same stop request
        if (process.listenerCount('SIGINT') > 0) {
          latched = true;
          process.emit('SIGINT', 'SIGINT', 2);
          return;
        }
        // The app dropped its SIGINT listener after this one was added:
        // die by SIGTERM as Node would have.
        process.removeListener('SIGTERM', onTerm);
        process.kill(process.pid, 'SIGTERM');
      }

      function others(type) {
        return rawListeners.call(process, type).filter(function (l) { return l !== onTerm; }).length;
      }

      function sync() {
        scheduled = false;
        const want = others('SIGTERM') === 0 && (latched || process.listenerCount('SIGINT') > 0);
        const has = rawListeners.call(process, 'SIGTERM').indexOf(onTerm) >= 0;
        if (want && !has) process.on('SIGTERM', onTerm);
        if (!want && has) process.removeListener('SIGTERM', onTerm);
      }

      // 'newListener' fires before the app's listener is added. Adding ours
      // for a new SIGINT listener right away closes the window in which a
      // SIGTERM would still kill the app; anything else waits for a
      // microtask: removing ours while the app's SIGTERM listener is being
      // added would make Node stop catching the signal just before it.
      function onNewListener(type, listener) {
        if (listener === onTerm) return;
        if (type === 'SIGINT' && others('SIGTERM') === 0 &&
            rawListeners.call(process, 'SIGTERM').indexOf(onTerm) < 0) {
          process.on('SIGTERM', onTerm);
        }
        schedule(type, listener);
      }

      function schedule(type, listener) {
        if (listener === onTerm || scheduled) return;
        if (type !== 'SIGINT' && type !== 'SIGTERM') return;
        scheduled = true;
        const run = function () {
          try {
            sync();
          } catch (err) {
            scheduled = false;
          }
        };
        if (typeof queueMicrotask === 'function') queueMicrotask(run);
        else Promise.resolve().then(run);
      }

      process.on('newListener', onNewListener);
      process.on('removeListener', schedule);
    }

    // copyShape keeps name and length of the function it replaces, so that
    // code inspecting the builtins sees what Node defines.
    function copyShape(fn, orig) {
      try {
        Object.defineProperty(fn, 'name', { value: orig.name, configurable: true });
        Object.defineProperty(fn, 'length', { value: orig.length, configurable: true });
      } catch (err) {
        // cosmetic only
      }
      return fn;
    }
  }

  function toInt(v) {
    if (typeof v !== 'string' || !/^[0-9]{1,9}$/.test(v)) return -1;
    return Number(v);
  }
})();
