// Package spawn is the supervisor: it starts the workers of every app and
// decides what follows each exit, signal, readiness message, timer and
// control command — restarts with backoff, rolling reloads, scaling,
// replacement of a bloated worker, and the graceful shutdown.
//
// # One loop, typed inputs, a seam around the system
//
// All state belongs to one goroutine, the loop in Run. The reaper, the
// signal channel, timers, the notify socket and the per-worker readiness
// channels reach it only as events, applied in the order they arrive; no
// decision is taken by a poller and there are no locks around the state.
//
// Everything the supervisor does to the system goes through two small
// interfaces, System (start a worker, signal its process tree, look at
// /proc) and Clock (now, timers). The real ones are in system.go; the unit
// tests drive the same code with a fake clock and fake processes, one event
// at a time, and check the invariants below after every event; the loop
// tests run Run itself over the same fakes, with events arriving
// concurrently through its channels. Nothing in the decisions sleeps or
// reads the wall clock directly; only the final sweep, after the loop has
// ended, waits on Go's own timers.
//
// # Vocabulary
//
//   - app: one command (or one entry of a process file) with its settings;
//   - slot: one of an app's N instances, numbered 0…N-1 (GM2_INSTANCE),
//     stable across restarts and reloads;
//   - worker: one process started for a slot. A slot has at most one
//     current worker (serving, or starting), at most one candidate (its
//     replacement during a reload or a memory replacement), and any number
//     of draining workers (stopped, not yet exited).
//
// # Invariants (checked after every event by the unit tests)
//
//  1. A slot has at most one current and at most one candidate worker, and
//     they are distinct live processes; every live worker is in byPid and
//     in exactly one place of exactly one slot.
//  2. A draining worker is never ready and never current or candidate.
//  3. A candidate exists only while its slot is being replaced (a reload
//     pass or a memory replacement) and never after the shutdown began.
//  4. A reload never lowers capacity: a slot's current worker is stopped
//     only once its candidate is ready, so the number of ready slots never
//     drops below what it was when the pass began, except for workers that
//     exited on their own. (An app in fork mode shares nothing — a second
//     worker would find its ports taken — so its reload and its memory
//     restart stop the worker before the next one starts, as PM2's fork
//     mode does.)
//  5. Under --wait-ready, a replacement that never said READY never replaces
//     a worker that did.
//  6. A slot in backoff has a pending restart and no worker of its own; an
//     errored or stopped slot has no current worker and no pending restart.
//  7. After the shutdown began, no worker is started.
//  8. A reload pass that ends ok leaves every slot's current worker on the
//     pass's code (its generation): `gm2-init reload` never answers ok
//     while a slot runs a worker started before it.
//
// # Crash loops
//
// A worker that exits before it was ready, or before it had been ready for
// the stable period (see stablePeriod), counts as a failed start, however
// long it lived; the restart delay doubles with each one (100 ms up to
// 15 s), and after --max-restarts in a row the slot is errored. The count
// resets only once a worker has been ready for the stable period.
package spawn
