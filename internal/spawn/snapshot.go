package spawn

import (
	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/status"
)

// readyCounts returns the slots with a ready worker, the wanted slots, and
// whether the start has settled: every slot ready, given up on (errored,
// stopped), or known to fail (its first worker died: it waits out its
// backoff). A slot that crash-loops must not hold back the end of the start
// until it errors (16 attempts, about 146 s with the defaults): systemd's
// Type=notify start would time out at 90 s and stop the healthy workers
// with it. STATUS=N/M says how many are ready.
func (s *Supervisor) readyCounts() (ready, total int, settled bool) {
	settled = true
	for _, a := range s.apps {
		for _, sl := range a.slots {
			if sl.retiring {
				continue
			}
			total++
			switch {
			case sl.current != nil && sl.current.state == status.Ready:
				ready++
			case sl.state == status.Errored || sl.state == status.Stopped:
			case sl.state == status.Backoff || sl.failures > 0:
			case sl.current != nil && sl.current.overdue:
			default:
				settled = false
			}
		}
	}
	return ready, total, settled
}

// tellLifecycle reports the end of the start and changes of the ready count.
func (s *Supervisor) tellLifecycle() {
	lc := s.opt.Lifecycle
	if lc == nil || s.down.active {
		return
	}
	ready, total, settled := s.readyCounts()
	if ready != s.lastReady || total != s.lastTotal {
		s.lastReady, s.lastTotal = ready, total
		lc.Status(ready, total)
	}
	if !s.started && settled {
		s.started = true
		lc.Ready(ready, total)
	}
}

// publish builds the snapshot the health endpoints read (see Snapshot).
func (s *Supervisor) publish() {
	snap := &status.Snapshot{
		Version:      s.opt.Version,
		StartedAt:    s.startedAt,
		Instances:    s.totalInstances(),
		ShuttingDown: s.down.active,
		Counters:     s.counters,
	}
	snap.Counters.Reloads = map[string]uint64{}
	for k, v := range s.counters.Reloads {
		snap.Counters.Reloads[k] = v
	}
	// Three allocations for the slots and workers whatever their number:
	// the slots, and one backing array that every slot's Workers slices.
	live, nslots := 0, 0
	for _, a := range s.apps {
		nslots += len(a.slots)
		for _, sl := range a.slots {
			live += len(sl.draining) + 2
		}
	}
	workers := make([]status.Worker, 0, live)
	snap.Slots = make([]status.Slot, 0, nslots)
	snap.Apps = make([]status.App, 0, len(s.apps))
	for _, a := range s.apps {
		as := status.App{
			Name:      a.name,
			Instances: a.instances(),
			Reload: status.Reload{
				Generation: a.reload.generation,
				InProgress: a.reload.inProgress,
				LastResult: a.reload.lastResult,
			},
		}
		as.MinReady = a.spec.MinReady
		if as.MinReady <= 0 || as.MinReady > as.Instances {
			as.MinReady = as.Instances
		}
		for _, sl := range a.slots {
			// Paused: stopped for good, or a fork slot's reload or memory
			// restart, from the old worker's stop signal until the new
			// worker is ready (its replacing ends then; a cluster slot's
			// old worker serves until its candidate is ready instead).
			if !sl.retiring && (sl.state == status.Stopped || a.spec.ExecMode == appspec.Fork && sl.replacing != "" && sl.candidate == nil) {
				as.Paused++
			}
			out := status.Slot{App: a.name, Index: sl.index, State: sl.state, Restarts: sl.restarts, LastExit: sl.lastExit}
			first := len(workers)
			add := func(w *worker) {
				if w != nil {
					workers = append(workers, status.Worker{Pid: w.pid, State: w.state, Generation: w.gen, StartedAt: w.started, Status: w.statusText})
					if w.state == status.Ready {
						as.Ready++
					}
				}
			}
			add(sl.current)
			add(sl.candidate)
			for _, w := range sl.draining {
				add(w)
			}
			out.Workers = workers[first:len(workers):len(workers)]
			w := sl.current
			if w == nil {
				w = sl.candidate
			}
			if w != nil {
				out.Pid, out.StartedAt, out.LastStatus, out.State = w.pid, w.started, w.statusText, w.state
			} else if len(sl.draining) > 0 {
				// A slot a scale-down removes, while its worker drains:
				// that worker is still the slot's (its pid, CPU and
				// memory in the status table).
				d := sl.draining[0]
				out.Pid, out.StartedAt, out.LastStatus, out.State = d.pid, d.started, d.statusText, status.Draining
			}
			snap.Slots = append(snap.Slots, out)
		}
		snap.Apps = append(snap.Apps, as)
		for _, l := range a.spec.Listeners {
			snap.Listeners = append(snap.Listeners, status.Listener{Name: l.Spec.Name, Network: string(l.Spec.Network), Address: l.Bound, App: a.name, Inherited: l.Inherited})
		}
	}
	if s.opt.Shared != nil {
		for _, sh := range s.opt.Shared.Shared() {
			l := sh.Listener
			snap.Listeners = append(snap.Listeners, status.Listener{
				Name: l.Spec.Name, Network: string(l.Spec.Network), Address: l.Bound, App: sh.App, OnDemand: true,
			})
		}
	}
	// The totals keep the single-app shape of /status: min_ready and the
	// reload of the first app when there is one app, sums otherwise.
	for _, as := range snap.Apps {
		snap.MinReady += as.MinReady
	}
	if len(snap.Apps) == 1 {
		snap.Reload = snap.Apps[0].Reload
	} else {
		for _, as := range snap.Apps {
			snap.Reload.Generation += as.Reload.Generation
			snap.Reload.InProgress = snap.Reload.InProgress || as.Reload.InProgress
			if as.Reload.LastResult != "" && (snap.Reload.LastResult == "" || as.Reload.LastResult != "ok") {
				snap.Reload.LastResult = as.Reload.LastResult
			}
		}
	}
	s.snap.Store(snap)
	s.stale.Store(false) // after the store: a reader that sees false gets this one
}
