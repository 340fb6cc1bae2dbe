'use strict';
// An ordinary Express app: app.listen(port) as the Express docs write it.
// It answers GET / with its pid and stops gracefully on SIGINT.
const express = require('express');

const app = express();
app.get('/', (req, res) => {
  res.type('text/plain').send(String(process.pid));
});

const server = app.listen(process.env.PORT || 3000);

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
});
