'use strict';
// Stands for a module the user preloads with NODE_OPTIONS=--require (an APM
// agent such as dd-trace/init or newrelic): it takes SLOW_REQUIRE_MS
// (default 1500) to load, before gm2-init's preload runs.
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.env.SLOW_REQUIRE_MS) || 1500);
