'use strict';
// An app for the on-demand tests, driven by its environment:
//   PORTS=3000,3001   an HTTP server on each port (no host: every interface)
//   HOST=127.0.0.1    listen on that host instead
//   TLS_KEY, TLS_CERT HTTPS instead of HTTP
//   PRIVATE=1         also listen(0), listen({port: PRIVATE_PORT, exclusive: true})
//                     and on the unix path PRIVATE_PATH; print their addresses
//   DOUBLE=1          a second server on the first port in this process
//   READY=1           process.send('ready') once every server listens
// Every server answers JSON: pid, cluster.isWorker, cluster.worker.id. The
// first line on stdout says what listens ("listening {...}"); an error of a
// server prints "error CODE" and exits 3. SIGINT prints "sigint PID", closes
// and exits 0.
const http = require('http');
const https = require('https');
const fs = require('fs');
const net = require('net');
const cluster = require('cluster');

const ports = (process.env.PORTS || '').split(',').filter(Boolean).map(Number);
const host = process.env.HOST || undefined;
const servers = [];
const out = { pid: process.pid, isWorker: cluster.isWorker, id: cluster.worker ? cluster.worker.id : null, ports: [] };

function handler(req, res) {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ pid: process.pid, isWorker: cluster.isWorker, id: cluster.worker ? cluster.worker.id : null }));
}

function make() {
  if (process.env.TLS_KEY) {
    return https.createServer({ key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) }, handler);
  }
  return http.createServer(handler);
}

function listen(server, args) {
  return new Promise((resolve) => {
    server.once('error', (err) => {
      console.log('error ' + err.code);
      console.log('stack ' + JSON.stringify(err.stack));
      process.exit(3);
    });
    servers.push(server);
    server.listen(...args, () => resolve(server));
  });
}

async function main() {
  for (const port of ports) {
    const s = await listen(make(), host ? [port, host] : [port]);
    out.ports.push(s.address().port);
  }
  if (process.env.PRIVATE === '1') {
    const zero = await listen(net.createServer((c) => c.end(String(process.pid))), [0]);
    out.zero = zero.address().port;
    const excl = await listen(net.createServer((c) => c.end(String(process.pid))),
      [{ port: Number(process.env.PRIVATE_PORT), host: '127.0.0.1', exclusive: true }]);
    out.exclusive = excl.address().port;
    const unix = await listen(net.createServer((c) => c.end(String(process.pid))), [process.env.PRIVATE_PATH]);
    out.unix = unix.address();
  }
  if (process.env.DOUBLE === '1') {
    const second = make();
    second.once('error', (err) => {
      out.double = err.code;
      done();
    });
    second.listen(ports[0], () => {
      out.double = 'listening';
      done();
    });
    return;
  }
  done();
}

function done() {
  console.log('listening ' + JSON.stringify(out));
  if (process.env.READY === '1') process.send('ready');
}

process.on('SIGINT', () => {
  console.log('sigint ' + process.pid);
  let n = servers.length;
  if (n === 0) process.exit(0);
  for (const s of servers) s.close(() => { if (--n === 0) process.exit(0); });
});

main();
