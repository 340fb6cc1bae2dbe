package spawn

import (
	"strconv"
	"time"

	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/status"
)

// reloadState is the rolling reload (SIGHUP).
//
// A pass replaces the slots --reload-batch at a time: the new worker of a
// slot starts next to the old one, and the old one receives the stop signal
// only once the new one is ready. A HUP during a pass sets pending: the pass
// finishes, then exactly one more pass runs, however many HUPs arrived.
type reloadState struct {
	generation uint64
	inProgress bool
	pending    bool
	queue      []*slot // slots still to replace in this pass
	active     int     // slots with a replacement under way
	started    time.Time
	replaced   int
	failures   int
	failed     string // why the pass was abandoned
	lastResult string
}

func (s *Supervisor) startReload() {
	if s.down.active {
		return
	}
	r := &s.reload
	if r.inProgress {
		if !r.pending {
			s.log.Info().Msg("reload requested during a reload; one more pass will follow")
		}
		r.pending = true
		return
	}
	r.generation++
	r.inProgress, r.started = true, time.Now()
	r.replaced, r.failures, r.failed, r.active = 0, 0, "", 0
	r.queue = r.queue[:0]
	for _, sl := range s.slots {
		if !sl.retiring {
			sl.reloadAttempts = 0
			r.queue = append(r.queue, sl)
		}
	}
	s.log.Info().Uint64("generation", r.generation).Int("slots", len(r.queue)).Int("batch", s.opt.ReloadBatch).Msg("reload started")
	if s.opt.Lifecycle != nil {
		s.opt.Lifecycle.Reloading()
	}
	s.pumpReload()
}

// pumpReload starts replacements until --reload-batch are under way.
func (s *Supervisor) pumpReload() {
	r := &s.reload
	for r.failed == "" && r.active < s.opt.ReloadBatch && len(r.queue) > 0 {
		sl := r.queue[0]
		r.queue = r.queue[1:]
		if sl.retiring || sl.candidate != nil {
			continue
		}
		r.active++
		s.startCandidate(sl)
	}
	if r.active == 0 && len(r.queue) == 0 {
		s.finishReload()
	}
}

func (s *Supervisor) startCandidate(sl *slot) {
	if sl.state == status.Errored || sl.state == status.Stopped {
		// New code deserves a new chance: a reload revives a slot that had
		// given up.
		sl.consecutive = 0
	}
	if sl.restart != nil {
		sl.restart.Stop()
		sl.restart = nil
	}
	w, err := s.startWorker(sl)
	if err != nil {
		s.log.Error().Err(err).Int("slot", sl.index).Msg("cannot start replacement worker")
		s.candidateFailed(sl, "start failed: "+err.Error())
		return
	}
	sl.candidate = w
	if sl.state == status.Errored || sl.state == status.Stopped || sl.state == status.Backoff {
		sl.state = status.Starting
	}
}

// promote makes the ready candidate the slot's serving worker and stops the
// old one.
func (s *Supervisor) promote(sl *slot) {
	w := sl.candidate
	old := sl.current
	sl.candidate, sl.current = nil, w
	sl.state = status.Ready
	if old != nil {
		s.stop(old, "replaced by reload")
	}
	r := &s.reload
	if r.inProgress {
		r.replaced++
		s.reloadSlotDone()
		s.pumpReload()
	}
}

// candidateFailed handles a replacement that exited (or could not start)
// before it was ready: the old worker keeps serving; the replacement is
// retried with backoff, and after --max-restarts the pass is abandoned.
func (s *Supervisor) candidateFailed(sl *slot, why string) {
	r := &s.reload
	r.failures++
	sl.reloadAttempts++
	sl.lastExit = why
	if s.down.active || !r.inProgress {
		s.reloadSlotDone()
		s.reviveIfEmpty(sl)
		return
	}
	if sl.current == nil {
		// The old worker is gone too (it crashed meanwhile): nothing keeps
		// serving, so the slot restarts at once, as after any crash, and
		// the pass goes on with the other slots.
		s.log.Warn().Int("slot", sl.index).Str("exit", why).Msg("replacement worker failed before ready and the old one is gone; restarting the slot")
		s.reloadSlotDone()
		s.afterExit(sl, 1, why, 0)
		s.pumpReload()
		return
	}
	if sl.reloadAttempts > s.opt.MaxRestarts {
		r.active--
		r.failed = "slot " + strconv.Itoa(sl.index) + ": replacement never became ready (" + why + ")"
		r.queue = nil
		s.log.Error().Int("slot", sl.index).Int("attempts", sl.reloadAttempts).Str("last_exit", why).
			Msg("reload abandoned: the new version does not start; the old workers keep serving")
		s.reviveIfEmpty(sl)
		if r.active == 0 {
			s.finishReload()
		}
		return
	}
	d := backoff(sl.reloadAttempts)
	s.log.Warn().Int("slot", sl.index).Str("exit", why).Dur("retry_in", d).Msg("replacement worker failed before ready; the old one keeps serving")
	sl.reloadRetry = s.after(d, func() {
		sl.reloadRetry = nil
		if r.inProgress && r.failed == "" && !s.down.active && sl.candidate == nil && !sl.retiring {
			s.startCandidate(sl)
			return
		}
		s.reloadSlotDone()
		s.reviveIfEmpty(sl)
		if r.inProgress {
			s.pumpReload()
		}
	})
}

// reloadSlotDone releases the place a slot held in the reload pass (its
// replacement is gone, or the slot is).
func (s *Supervisor) reloadSlotDone() {
	if s.reload.inProgress && s.reload.active > 0 {
		s.reload.active--
	}
}

// reviveIfEmpty restarts a slot left without any worker (its old worker
// crashed while the replacement was failing).
func (s *Supervisor) reviveIfEmpty(sl *slot) {
	if sl.current == nil && sl.candidate == nil && sl.restart == nil && !sl.retiring && !s.down.active &&
		sl.state != status.Errored && sl.state != status.Stopped {
		s.afterExit(sl, 1, sl.lastExit, 0)
	}
}

func (s *Supervisor) finishReload() {
	r := &s.reload
	if !r.inProgress {
		return
	}
	r.inProgress = false
	result := "ok"
	if r.failed != "" {
		result = "failed"
		r.lastResult = "failed: " + r.failed
	} else {
		r.lastResult = "ok"
	}
	s.counters.Reloads[result]++
	ev := s.log.Info()
	if result != "ok" {
		ev = s.log.Error()
	}
	ev.Uint64("generation", r.generation).Str("result", r.lastResult).Dur("duration", time.Since(r.started)).
		Int("replaced", r.replaced).Int("failures", r.failures).Msg("reload finished")
	if r.pending {
		r.pending = false
		s.startReload()
		return
	}
	if s.opt.Lifecycle != nil && !s.down.active {
		s.opt.Lifecycle.Ready(s.lastReady, s.lastTotal)
	}
}

// scaleUp (SIGTTIN) adds one slot, as gunicorn does.
func (s *Supervisor) scaleUp() {
	if s.down.active {
		return
	}
	// Take back a slot being removed before adding one, so that indices
	// stay contiguous.
	for _, sl := range s.slots {
		if sl.retiring {
			sl.retiring = false
			sl.state = status.Starting
			s.startCurrent(sl)
			s.log.Info().Int("instances", s.instances()).Msg("scaled up (SIGTTIN)")
			return
		}
	}
	sl := &slot{index: len(s.slots), state: status.Starting}
	s.slots = append(s.slots, sl)
	s.startCurrent(sl)
	s.log.Info().Int("instances", s.instances()).Msg("scaled up (SIGTTIN)")
}

// scaleDown (SIGTTOU) removes the highest slot, never the last one.
func (s *Supervisor) scaleDown() {
	if s.down.active || s.instances() <= 1 {
		if !s.down.active {
			s.log.Info().Msg("SIGTTOU ignored: one worker is the minimum")
		}
		return
	}
	var sl *slot
	for i := len(s.slots) - 1; i >= 0; i-- {
		if !s.slots[i].retiring {
			sl = s.slots[i]
			break
		}
	}
	// Slots are numbered 0…N-1, so the highest goes. Never when it is the
	// last one that works: the rest errored, and gm2-init would exit.
	working := false
	for _, o := range s.slots {
		if o != sl && !o.retiring && o.state != status.Errored && o.state != status.Stopped {
			working = true
		}
	}
	if !working {
		s.log.Warn().Int("slot", sl.index).Msg("SIGTTOU ignored: the other slots have errored or stopped")
		return
	}
	sl.retiring = true
	if sl.restart != nil {
		sl.restart.Stop()
		sl.restart = nil
	}
	if sl.reloadRetry != nil {
		sl.reloadRetry.Stop()
		sl.reloadRetry = nil
		s.reloadSlotDone()
	} else if sl.candidate != nil {
		s.reloadSlotDone()
	}
	for _, w := range []*worker{sl.candidate, sl.current} {
		if w != nil {
			s.stop(w, "scaled down (SIGTTOU)")
		}
	}
	if len(sl.draining) == 0 {
		s.removeSlot(sl)
	}
	s.log.Info().Int("instances", s.instances()).Msg("scaled down (SIGTTOU)")
	if s.reload.inProgress {
		s.pumpReload() // finishes the pass if this slot was its last
	}
}

// removeSlot drops retired slots from the end of the list once they hold no
// process.
func (s *Supervisor) removeSlot(*slot) {
	for n := len(s.slots); n > 0; n-- {
		sl := s.slots[n-1]
		if !sl.retiring || sl.current != nil || sl.candidate != nil || len(sl.draining) > 0 {
			return
		}
		s.slots = s.slots[:n-1]
	}
}

// readPreload forwards the Node preload's events (hello, listening) to the
// loop. It ends when the pipe is closed: every process holding the write end
// exited, or the loop closed the read end after the worker exited.
func (s *Supervisor) readPreload(w *worker, f interface{ Read([]byte) (int, error) }) {
	preload.Read(f, func(ev preload.Event) {
		s.post(func() { s.onPreload(w, ev) })
	})
}

func (s *Supervisor) onPreload(w *worker, ev preload.Event) {
	if !w.alive {
		return
	}
	switch ev.Kind {
	case "hello":
		w.hello = true
	case "listening":
		w.hello = true
		w.listening[ev.FD] = true
		if len(w.listening) >= s.opt.PreloadListeners && !s.opt.WaitReady {
			s.markReady(w, "preload: every listener listening")
		}
	}
}

// readNodeIPC reads PM2's readiness handshake, process.send('ready').
func (s *Supervisor) readNodeIPC(w *worker, f interface{ Read([]byte) (int, error) }) {
	notify.ReadNode(f, func() {
		s.post(func() { s.markReady(w, "process.send('ready')") })
	})
}

// publish builds the snapshot the health endpoints read (see Snapshot).
func (s *Supervisor) publish() {
	snap := &status.Snapshot{
		Version:      s.opt.Version,
		StartedAt:    s.startedAt,
		Instances:    s.instances(),
		ShuttingDown: s.down.active,
		Reload: status.Reload{
			Generation: s.reload.generation,
			InProgress: s.reload.inProgress,
			LastResult: s.reload.lastResult,
		},
		Counters: s.counters,
	}
	snap.Counters.Reloads = map[string]uint64{}
	for k, v := range s.counters.Reloads {
		snap.Counters.Reloads[k] = v
	}
	snap.MinReady = s.opt.MinReady
	if snap.MinReady <= 0 || snap.MinReady > snap.Instances {
		snap.MinReady = snap.Instances
	}
	// Four allocations whatever the number of workers: the slots, and
	// one backing array that every slot's Workers slices.
	live := 0
	for _, sl := range s.slots {
		live += len(sl.draining) + 2
	}
	workers := make([]status.Worker, 0, live)
	snap.Slots = make([]status.Slot, 0, len(s.slots))
	for _, sl := range s.slots {
		out := status.Slot{Index: sl.index, State: sl.state, Restarts: sl.restarts, LastExit: sl.lastExit}
		first := len(workers)
		add := func(w *worker) {
			if w != nil {
				workers = append(workers, status.Worker{Pid: w.pid, State: w.state, Generation: w.gen, StartedAt: w.started, Status: w.statusText})
			}
		}
		add(sl.current)
		add(sl.candidate)
		for _, w := range sl.draining {
			add(w)
		}
		out.Workers = workers[first:len(workers):len(workers)]
		if w := sl.current; w != nil {
			out.Pid, out.StartedAt, out.LastStatus, out.State = w.pid, w.started, w.statusText, w.state
		} else if w := sl.candidate; w != nil {
			out.Pid, out.StartedAt, out.LastStatus, out.State = w.pid, w.started, w.statusText, w.state
		} else if len(sl.draining) > 0 {
			out.State = status.Draining
		}
		snap.Slots = append(snap.Slots, out)
	}
	s.snap.Store(snap)
	s.stale.Store(false) // after the store: a reader that sees false gets this one
}
