'use strict';
// Listens on PORT, says so on stdout, answers with its pid, stops on SIGINT.
const server = require('http').createServer((req, res) => res.end(String(process.pid)));
server.listen(Number(process.env.PORT), () => console.log('listening on ' + server.address().port));
process.on('SIGINT', () => server.close(() => process.exit(0)));
