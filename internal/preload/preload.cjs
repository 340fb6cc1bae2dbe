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
    const spec = process.env.GM2_LISTENERS;
    if (!spec) return;
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
    const channelFd = toInt(process.env.NODE_CHANNEL_FD);

    const entries = parseListeners(spec).filter(function (e) {
      return e.fd !== channelFd && verify(e);
    });
    if (entries.length === 0) return;

    let reportFd = toInt(process.env.GM2_PRELOAD_FD);
    if (!validReportFd(reportFd)) reportFd = -1;

    // Inherited fds to hand on to children while this process is a wrapper.
    const handoff = entries.map(function (e) { return e.fd; });
    if (reportFd >= 0) handoff.push(reportFd);
    handoff.sort(function (a, b) { return a - b; });
    let consumed = false;

    report('hello ' + pid);
    patchNet();
    patchDgram();
    patchChildProcess();
    handleSignals();
    try {
      // ESM named imports of builtins (import { spawn } from
      // 'child_process') are snapshots; refresh them after patching.
      const mod = require('module');
      if (typeof mod.syncBuiltinESMExports === 'function') mod.syncBuiltinESMExports();
    } catch (err) {
      // Nothing to refresh on a Node without ESM.
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

    function toPort(v) {
      if (typeof v !== 'number' && typeof v !== 'string') return 0;
      if (typeof v === 'string' && v.trim() === '') return 0;
      const n = Number(v);
      return Number.isInteger(n) && n > 0 && n <= 65535 ? n : 0;
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

    function patchNet() {
      const proto = net.Server.prototype;
      const orig = proto.listen;
      proto.listen = copyShape(function listen() {
        const args = Array.prototype.slice.call(arguments);
        let redirected = null;
        try {
          redirected = redirectListen(this, args);
        } catch (err) {
          redirected = null;
        }
        return orig.apply(this, redirected || args);
      }, orig);
      proto.listen[MARK] = true;
    }

    // redirectListen mirrors net's normalizeArgs: listen(port[, host][,
    // backlog][, cb]), listen({port, host, backlog}[, cb]), listen(path[,
    // backlog][, cb]), listen({path}[, cb]). Handles, fds, port 0 and
    // ports or paths gm2-init did not pass are left to Node.
    function redirectListen(server, args) {
      if (server._handle) return null; // Node throws ERR_SERVER_ALREADY_LISTEN
      const n = args.length;
      if (n === 0 || typeof args[0] === 'function') return null;
      const cb = typeof args[n - 1] === 'function' ? args[n - 1] : null;
      const backlogFromArgs = toBacklog(n > 1 && args[1]) || toBacklog(n > 2 && args[2]);
      const a0 = args[0];
      let port = 0;
      let host = '';
      let upath = '';
      let signal = null;
      let backlog = backlogFromArgs;
      if (a0 !== null && typeof a0 === 'object') {
        if (a0._handle || a0.handle || typeof a0.fd === 'number') return null;
        if (typeof a0.port === 'number' || typeof a0.port === 'string') {
          port = toPort(a0.port);
          host = typeof a0.host === 'string' ? a0.host : '';
        } else if ('port' in a0) {
          return null;
        } else if (typeof a0.path === 'string') {
          upath = a0.path;
        }
        signal = a0.signal || null;
        backlog = toBacklog(a0.backlog) || backlogFromArgs;
      } else if (typeof a0 === 'string' && toBacklog(a0) === 0 && a0 !== '0') {
        upath = a0; // net's isPipeName: a string that is not a number
      } else {
        port = toPort(a0);
        if (n > 1 && typeof args[1] === 'string') host = args[1];
      }
      if (port === 0 && upath === '') return null;
      const e = upath !== '' ? take('unix', 0, '', upath, 0) : take('tcp', port, host, '', 0);
      if (e === null) return null;
      const opts = { fd: e.fd };
      if (signal) opts.signal = signal;
      const out = [opts];
      if (backlog) out.push(backlog);
      if (cb) out.push(cb);
      onListening(server, e.fd);
      // A server opened from an fd has no pipe name, and address() returns
      // that name; Node sets it at the same point for listen(path).
      if (upath !== '') server._pipeName = upath;
      return out;
    }

    function patchDgram() {
      const proto = dgram.Socket.prototype;
      const orig = proto.bind;
      proto.bind = copyShape(function bind() {
        const args = Array.prototype.slice.call(arguments);
        let redirected = null;
        try {
          redirected = redirectBind(this, args);
        } catch (err) {
          redirected = null;
        }
        return orig.apply(this, redirected || args);
      }, orig);
    }

    // redirectBind covers bind(port[, address][, cb]) and bind({port,
    // address, exclusive}[, cb]). Only a listener of the socket's own family
    // is used: a udp4 socket on an IPv6 fd would receive but fail to reply.
    function redirectBind(sock, args) {
      const n = args.length;
      if (n === 0 || typeof args[0] === 'function') return null;
      const cb = typeof args[n - 1] === 'function' ? args[n - 1] : null;
      const a0 = args[0];
      let port = 0;
      let host = '';
      let exclusive = false;
      if (a0 !== null && typeof a0 === 'object') {
        if (a0.fd !== undefined || typeof a0.recvStart === 'function') return null;
        port = toPort(a0.port);
        host = typeof a0.address === 'string' ? a0.address : '';
        exclusive = !!a0.exclusive;
      } else {
        port = toPort(a0);
        if (n > 1 && typeof args[1] === 'string') host = args[1];
      }
      if (port === 0) return null;
      const family = sock.type === 'udp6' ? 6 : 4;
      const e = take('udp', port, host, '', family);
      if (e === null) return null;
      const out = [{ fd: e.fd, exclusive: exclusive }];
      if (cb) out.push(cb);
      onListening(sock, e.fd);
      return out;
    }

    // ---- child processes ------------------------------------------------

    // Node passes a child no fd above 2 unless its stdio array names it. A
    // wrapper (npm start, yarn, a Node launcher) would thus starve the app
    // it starts; so, in a process that has not used a listener itself, every
    // child gets the inherited listener fds and the report pipe at the same
    // numbers. A process that did use one (the app) hands nothing on, so its
    // own subprocesses do not hold the listening sockets.
    function extendStdio(stdio) {
      let arr;
      if (stdio === undefined || stdio === null) arr = ['pipe', 'pipe', 'pipe'];
      else if (typeof stdio === 'string') arr = [stdio, stdio, stdio];
      else if (Array.isArray(stdio)) arr = Array.from(stdio);
      else return stdio; // let Node report the invalid value
      while (arr.length < 3) arr.push(undefined);
      let ipc = false;
      handoff.forEach(function (fd) {
        if (arr[fd] === 'ipc') {
          // fork() puts its IPC channel at fd 3; move it after ours (the
          // child learns the number from NODE_CHANNEL_FD).
          arr[fd] = undefined;
          ipc = true;
        }
      });
      handoff.forEach(function (fd) {
        while (arr.length <= fd) arr.push(undefined);
        if (arr[fd] === undefined || arr[fd] === null) arr[fd] = fd;
      });
      if (ipc) arr.push('ipc');
      return arr;
    }

    function patchChildProcess() {
      // spawn, exec, execFile and fork all end in ChildProcess#spawn with
      // normalized options, which Node itself rewrites (options.stdio).
      const CP = childProcess.ChildProcess;
      if (CP && CP.prototype && typeof CP.prototype.spawn === 'function') {
        const orig = CP.prototype.spawn;
        CP.prototype.spawn = copyShape(function spawn(options) {
          if (!consumed && options !== null && typeof options === 'object') {
            try {
              options.stdio = extendStdio(options.stdio);
            } catch (err) {
              // leave options as they are
            }
          }
          return orig.apply(this, arguments);
        }, orig);
      }
      // The sync family calls an internal function, so each export is
      // wrapped. execSync and execFileSync echo the child's stderr only
      // when no stdio was given; there the call is left alone, which costs
      // nothing: a long-running app started that way would have its
      // output buffered until it exits, so nobody does that.
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
                args[i] = Object.assign({}, o, { stdio: extendStdio(o && o.stdio) });
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
