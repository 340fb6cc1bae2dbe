package main

import (
	"runtime/debug"

	"github.com/gm2-init/gm2-init/internal/spawn"
)

// returnMemory wraps the supervisor's Lifecycle (nil: none) so that when
// the start has finished, and after each reload pass, gm2-init returns the
// memory it no longer uses to the kernel at once (debug.FreeOSMemory: a
// collection of a heap under 1 MB, then every free page released).
//
// Why: starting workers and reloading them leaves free pages behind. Left
// to it, the Go runtime's background scavenger hands them back bit by bit
// over the next minute, waking the runtime's monitor thread for tens of
// context switches each time; that was most of an idle gm2-init's
// wakeups in its first minutes (bench/analysis.md, "Idle wakeups"), and
// the pages count in its RSS meanwhile. Done here, it costs about a
// millisecond of the supervisor loop at moments when nothing waits on it.
type returnMemory struct{ next spawn.Lifecycle }

func (r returnMemory) Ready(ready, total int) {
	if r.next != nil {
		r.next.Ready(ready, total)
	}
	debug.FreeOSMemory()
}

func (r returnMemory) Reloading() {
	if r.next != nil {
		r.next.Reloading()
	}
}

func (r returnMemory) Stopping() {
	if r.next != nil {
		r.next.Stopping()
	}
}

func (r returnMemory) Status(ready, total int) {
	if r.next != nil {
		r.next.Status(ready, total)
	}
}
