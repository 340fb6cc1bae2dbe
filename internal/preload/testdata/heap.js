'use strict';
// Prints the V8 heap limit (NODE_OPTIONS=--max-old-space-size must still
// apply) and serves the passed port.
const v8 = require('v8');
console.log(String(v8.getHeapStatistics().heap_size_limit));
require('../../../examples/node/http-server.js');
