// Package status holds the snapshot of the supervisor's state that the rest of
// gm2-init reads: the health endpoints, /status and /metrics.
//
// The supervisor owns its state in a single goroutine and builds an
// immutable Snapshot when a reader asks and something changed since the
// last one; the wait is bounded, and a reader of a stuck supervisor gets the
// last snapshot. Readers never ask a worker anything: a probe costs one round
// trip through the supervisor's loop at most, and keeps working while the
// CPU quota is exhausted.
package status

import "time"

// State is the lifecycle state of one worker slot.
type State string

const (
	Starting State = "starting" // process started, not ready yet
	Ready    State = "ready"    // process ready to serve
	Draining State = "draining" // stop signal sent, waiting for it to exit
	Backoff  State = "backoff"  // no process; waiting to restart after a crash
	Errored  State = "errored"  // crash-looped past --max-restarts; not restarted
	Stopped  State = "stopped"  // exited and not restarted (restart policy), or stopped by the shutdown
)

// AllStates lists every State, in a stable order (for metrics).
var AllStates = []State{Starting, Ready, Draining, Backoff, Errored, Stopped}

// Worker is one running process (a slot can briefly have two during a reload:
// the old one serving or draining and its replacement starting).
type Worker struct {
	Pid        int       `json:"pid"`
	State      State     `json:"state"`
	Generation uint64    `json:"generation"`
	StartedAt  time.Time `json:"started_at"`
	Status     string    `json:"status,omitempty"` // last STATUS= text sent by the worker
}

// Slot is one of the N instances (GM2_INSTANCE is its index).
type Slot struct {
	App        string    `json:"app"` // the app this slot belongs to
	Index      int       `json:"instance"`
	State      State     `json:"state"`
	Pid        int       `json:"pid,omitempty"` // the current (serving or starting) worker, 0 if none
	Restarts   int       `json:"restarts"`      // restarts after an exit, since start
	StartedAt  time.Time `json:"started_at,omitempty"`
	LastExit   string    `json:"last_exit,omitempty"` // e.g. "exit status 1", "signal: killed"
	LastStatus string    `json:"last_status,omitempty"`
	Workers    []Worker  `json:"workers"` // every live process of this slot
}

// App summarizes one app (a single command is one app, named after it).
type App struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"` // wanted
	MinReady  int    `json:"min_ready"` // resolved count of ready workers required
	Ready     int    `json:"ready"`     // ready workers now
	Reload    Reload `json:"reload"`
	// Paused counts the slots left without a worker on purpose: stopped
	// for good by the restart policy (a one-shot task that ended), or
	// stopped to be started again (a fork app's reload or memory restart,
	// which cannot run two workers side by side). /readyz does not wait
	// for them.
	Paused int `json:"paused"`
}

// Listener is one socket gm2-init holds for its workers: bound at start
// (--listen, inherited from its own parent) or on a worker's first request.
type Listener struct {
	Name     string `json:"name"`
	Network  string `json:"network"` // tcp, udp, unix, unixgram
	Address  string `json:"address"` // as bound
	App      string `json:"app,omitempty"`
	OnDemand bool   `json:"on_demand,omitempty"` // bound when a worker first asked for it
	// Inherited: passed by gm2-init's own parent (LISTEN_FDS), not bound.
	Inherited bool `json:"inherited,omitempty"`
}

// Reload describes rolling reloads.
type Reload struct {
	Generation uint64 `json:"generation"` // incremented at each reload pass
	InProgress bool   `json:"in_progress"`
	LastResult string `json:"last_result,omitempty"` // "ok", "failed: …", "" if none yet
}

// Counters are monotonic totals since start.
type Counters struct {
	Restarts       uint64            `json:"restarts_total"`
	Reloads        map[string]uint64 `json:"reloads_total"` // by result: "ok", "failed"
	OrphansReaped  uint64            `json:"orphans_reaped_total"`
	WorkersStarted uint64            `json:"workers_started_total"`
	MemoryRestarts uint64            `json:"memory_restarts_total"` // workers replaced for --max-memory-restart
}

// Snapshot is an immutable view of the supervisor. Never modify one you were
// given: it is shared between readers.
type Snapshot struct {
	Version      string     `json:"version"`
	StartedAt    time.Time  `json:"started_at"`
	Instances    int        `json:"instances"` // wanted
	MinReady     int        `json:"min_ready"` // resolved count of ready workers required
	ShuttingDown bool       `json:"shutting_down"`
	Slots        []Slot     `json:"slots"` // every slot of every app
	Apps         []App      `json:"apps"`
	Listeners    []Listener `json:"listeners"`
	Reload       Reload     `json:"reload"`
	Counters     Counters   `json:"counters"`
}

// ReadyWorkers counts the processes that are ready to serve, across slots.
func (s *Snapshot) ReadyWorkers() int {
	n := 0
	for _, sl := range s.Slots {
		for _, w := range sl.Workers {
			if w.State == Ready {
				n++
			}
		}
	}
	return n
}

// ErroredIn lists the instance numbers of app's slots that crash-looped
// past --max-restarts.
func (s *Snapshot) ErroredIn(app string) []int {
	var out []int
	for _, sl := range s.Slots {
		if sl.App == app && sl.State == Errored {
			out = append(out, sl.Index)
		}
	}
	return out
}

// ErroredSlots lists the slots that crash-looped past --max-restarts, by
// instance number (each app's start at 0: see ErroredIn).
func (s *Snapshot) ErroredSlots() []int {
	var out []int
	for _, sl := range s.Slots {
		if sl.State == Errored {
			out = append(out, sl.Index)
		}
	}
	return out
}
