'use strict';
// Every listen() form of every server kind, one passed port each (FORM_PORTS,
// in the order of `forms` below), plus servers the preload must leave alone:
// port 0, a port gm2-init did not pass (OTHER_PORT), a unix path it passed
// (PASSED_PATH) and one it did not (OTHER_PATH). Prints one JSON line with
// every server's address() once all are listening.
const fs = require('fs');
const net = require('net');
const http = require('http');
const https = require('https');
const http2 = require('http2');
const tls = require('tls');

const ports = process.env.FORM_PORTS.split(',').map(Number);
const tlsOpts = { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) };
const reply = (name) => (req, res) => res.end(name);
const callbacks = {};

const forms = [
  ['net-port', (p) => net.createServer((s) => s.end('net-port')).listen(p)],
  ['http-port-host', (p) => http.createServer(reply('http-port-host')).listen(p, '127.0.0.1')],
  ['http-port-host-backlog-cb', (p) => http.createServer(reply('http-port-host-backlog-cb'))
    .listen(p, '127.0.0.1', 100, () => { callbacks['http-port-host-backlog-cb'] = true; })],
  ['http-port-cb', (p) => http.createServer(reply('http-port-cb'))
    .listen(p, () => { callbacks['http-port-cb'] = true; })],
  ['http-options', (p) => http.createServer(reply('http-options')).listen({ port: p, host: 'localhost' })],
  ['http-string-port', (p) => http.createServer(reply('http-string-port')).listen(String(p))],
  ['http-host-mismatch', (p) => http.createServer(reply('http-host-mismatch')).listen(p, '::1')],
  ['https', (p) => https.createServer(tlsOpts, reply('https')).listen(p)],
  ['tls', (p) => tls.createServer(tlsOpts, (s) => s.end('tls')).listen({ port: p })],
  ['http2-secure', (p) => http2.createSecureServer(tlsOpts, reply('http2-secure')).listen(p)],
  ['http2-plain', (p) => http2.createServer(reply('http2-plain')).listen(p)],
];

const servers = {};
forms.forEach(([name, make], i) => { servers[name] = make(ports[i]); });
servers['zero'] = http.createServer(reply('zero')).listen(0, '127.0.0.1');
servers['other'] = http.createServer(reply('other')).listen(Number(process.env.OTHER_PORT), '127.0.0.1');
servers['passed-path'] = http.createServer(reply('passed-path')).listen(process.env.PASSED_PATH);
servers['other-path'] = http.createServer(reply('other-path')).listen({ path: process.env.OTHER_PATH });

let pending = Object.keys(servers).length;
Object.keys(servers).forEach((name) => {
  const s = servers[name];
  s.on('error', (err) => { console.log(JSON.stringify({ error: name + ': ' + err.message })); process.exit(1); });
  s.once('listening', () => {
    if (--pending > 0) return;
    // Callbacks run as 'listening' listeners too; let them all run first.
    setImmediate(() => {
      const out = { callbacks: callbacks, address: {} };
      Object.keys(servers).forEach((n) => { out.address[n] = servers[n].address(); });
      console.log(JSON.stringify(out));
    });
  });
});

process.on('SIGINT', () => process.exit(0));
