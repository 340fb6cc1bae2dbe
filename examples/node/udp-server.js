'use strict';
// An ordinary UDP app: it binds PORT (5353 by default) and answers every
// datagram with its pid. SIGINT closes the socket and exits 0.
const dgram = require('dgram');

const socket = dgram.createSocket('udp4');
socket.on('message', (msg, rinfo) => {
  socket.send(String(process.pid), rinfo.port, rinfo.address);
});
socket.bind(Number(process.env.PORT) || 5353);

process.on('SIGINT', () => {
  socket.close(() => process.exit(0));
});
