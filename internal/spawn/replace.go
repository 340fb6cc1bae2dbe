package spawn

import (
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/status"
)

// A slot's worker is replaced the same way for a rolling reload (SIGHUP,
// `gm2-init reload`) and for a worker over --max-memory-restart: the new
// worker (the candidate) starts next to the old one, with the same
// GM2_INSTANCE, and the old one gets the stop signal only once the new one
// is ready. If the candidate dies before it is ready, the old one keeps
// serving.

// reloadState is one app's rolling reload.
//
// A pass replaces the slots --reload-batch at a time. A reload requested
// during a pass sets pending: the pass finishes, then exactly one more pass
// runs, however many requests arrived.
type reloadState struct {
	generation uint64 // passes started, the generation of new workers
	inProgress bool
	pending    bool
	queue      []*slot // slots still to replace in this pass
	started    time.Time
	replaced   int
	failures   int // replacements that died or timed out before ready
	// unreplaced counts the slots the pass gave up on; abandoned says why
	// the whole pass stopped early. Either makes the result "failed".
	unreplaced int
	abandoned  string
	lastResult string
}

// replacing counts the app's slots with a reload replacement under way.
func (a *app) replacing(kind string) int {
	n := 0
	for _, sl := range a.slots {
		if sl.replacing == kind {
			n++
		}
	}
	return n
}

func (s *Supervisor) startReload(a *app, why string) {
	if s.down.active {
		return
	}
	r := &a.reload
	if r.inProgress {
		if !r.pending {
			s.log.Info().Str("app", a.name).Msg("reload requested during a reload; one more pass will follow")
		}
		r.pending = true
		return
	}
	first := !s.anyReloading()
	r.generation++
	r.inProgress, r.started = true, s.clock.Now()
	r.replaced, r.failures, r.unreplaced, r.abandoned = 0, 0, 0, ""
	r.queue = r.queue[:0]
	for _, sl := range a.slots {
		if !sl.retiring && !stoppedForGood(sl) {
			r.queue = append(r.queue, sl)
		}
	}
	s.log.Info().Str("app", a.name).Str("by", why).Uint64("generation", r.generation).Int("slots", len(r.queue)).Int("batch", a.spec.ReloadBatch).Msg("reload started")
	if first && s.opt.Lifecycle != nil {
		s.opt.Lifecycle.Reloading()
	}
	s.pumpReload(a)
}

// stoppedForGood tells a slot its restart policy stopped (a one-shot task
// that ended: a migration, a build step): a reload leaves it alone. Run
// again with the new code, it would do its work twice, and its clean exit
// before it ever said ready would fail the pass. An errored slot, by
// contrast, gets the new code: that may be its fix.
func stoppedForGood(sl *slot) bool {
	return sl.state == status.Stopped && sl.current == nil && sl.candidate == nil
}

// anyReloading tells whether a reload pass of some app is under way.
func (s *Supervisor) anyReloading() bool {
	for _, a := range s.apps {
		if a.reload.inProgress {
			return true
		}
	}
	return false
}

// pumpReload starts replacements until --reload-batch are under way, and
// ends the pass when none is left.
func (s *Supervisor) pumpReload(a *app) {
	r := &a.reload
	if !r.inProgress {
		return
	}
	for r.abandoned == "" && a.replacing(replaceReload) < a.spec.ReloadBatch && len(r.queue) > 0 {
		sl := r.queue[0]
		r.queue = r.queue[1:]
		switch {
		case sl.retiring, stoppedForGood(sl):
			// Gone, or ended since the pass began (a one-shot task).
		case a.spec.ExecMode == appspec.Fork && sl.current != nil:
			// Fork mode shares nothing: a new worker next to the old one
			// would find the app's own ports taken. Stop, then start.
			sl.replacing, sl.replaceAttempts, sl.restartAfterStop = replaceReload, 0, true
			s.stop(sl.current, "reload (fork mode: stopped, then started again)")
		case sl.candidate != nil:
			// A memory replacement's candidate runs the code from before
			// the pass: it gives way to one of the pass (the bloated
			// worker serves until that one is ready, then is replaced).
			s.stop(sl.candidate, "reload: a worker of the new code replaces it")
			sl.replaceAttempts = 0
			s.startReplacement(sl, replaceReload)
		case sl.restartAfterStop:
			// A fork-mode worker stopped for a memory restart: the worker
			// started once it is gone runs the new code, so the pass
			// takes the restart over.
			sl.replacing, sl.replaceAttempts = replaceReload, 0
		default:
			sl.replaceAttempts = 0
			s.startReplacement(sl, replaceReload)
		}
	}
	if a.replacing(replaceReload) == 0 && len(r.queue) == 0 {
		s.finishReload(a)
	}
}

// startReplacement starts a candidate for sl. A slot that has no worker
// (errored, backing off) simply gets one: new code deserves a new
// chance.
func (s *Supervisor) startReplacement(sl *slot, kind string) {
	if sl.state == status.Errored || sl.state == status.Stopped {
		sl.failures = 0
	}
	stopTimer(&sl.restart)
	stopTimer(&sl.replaceRetry)
	sl.replacing = kind
	w, err := s.startWorker(sl)
	if err != nil {
		s.log.Error().Err(err).Str("app", sl.app.name).Int("slot", sl.index).Msg("cannot start replacement worker")
		s.replacementFailed(sl, 0, "start failed: "+err.Error())
		return
	}
	sl.candidate = w
	if sl.current == nil {
		sl.state = status.Starting
	}
}

// promote makes the ready candidate the slot's serving worker and stops the
// old one.
func (s *Supervisor) promote(sl *slot) {
	w, old := sl.candidate, sl.current
	sl.candidate, sl.current = nil, w
	sl.state = status.Ready
	kind := sl.replacing
	sl.replacing, sl.replaceAttempts = "", 0
	if old != nil {
		s.stop(old, "replaced ("+kind+")")
	}
	s.replacementEnded(sl, kind, true)
}

// forkReloaded ends the reload or the memory restart of a fork-mode slot,
// whose new worker is its current one, not a candidate: w is ready (ok),
// or ended before (not replaced; a memory restart's worker that ends
// before it is ready is a crash, restarted with backoff), or could not
// start (w nil). A worker from before the pass (a cluster slot's old
// worker that was still starting when the pass reached it) ends no
// replacement, nor does any worker while a candidate is on its way.
func (s *Supervisor) forkReloaded(sl *slot, w *worker, ok bool) {
	if sl.restartAfterStop || sl.candidate != nil || w != nil && w.gen != sl.app.reload.generation {
		return
	}
	kind := sl.replacing
	sl.replacing = ""
	s.replacementEnded(sl, kind, ok)
}

// replacementEnded counts the end of a slot's replacement of kind kind,
// ok when the new worker took over, and moves a reload on to its next
// batch.
func (s *Supervisor) replacementEnded(sl *slot, kind string, ok bool) {
	switch kind {
	case replaceReload:
		if ok {
			sl.app.reload.replaced++
		} else {
			sl.app.reload.unreplaced++
		}
		s.pumpReload(sl.app)
	case replaceMemory:
		if ok {
			s.counters.MemoryRestarts++
			sl.memFailures = 0
		}
	}
}

// replacementFailed handles a candidate that exited, could not start, or
// timed out before it was ready: the old worker keeps serving; a reload
// retries with backoff and, after --max-restarts attempts, gives up the
// pass; a memory replacement waits for a later check.
func (s *Supervisor) replacementFailed(sl *slot, pid int, why string) {
	a := sl.app
	r := &a.reload
	kind := sl.replacing
	sl.replaceAttempts++
	sl.lastExit = why
	if kind == replaceReload {
		r.failures++
	}
	giveUp := func() {
		sl.replacing = ""
		if kind == replaceReload {
			r.unreplaced++
		}
	}
	switch {
	case s.down.active:
		giveUp()
		return
	case sl.current == nil:
		// The old worker is gone too (it crashed meanwhile): nothing keeps
		// serving, so the slot restarts at once, as after any crash, and
		// the pass goes on with the other slots.
		s.log.Warn().Str("app", a.name).Int("slot", sl.index).Func(withPid(pid)).Str("exit", why).Msg("replacement worker failed before ready and the old one is gone; restarting the slot")
		giveUp()
		s.afterExit(sl, nil, 1, why)
		s.pumpReload(a)
		return
	case kind == replaceMemory:
		giveUp()
		sl.memFailures++
		sl.memNotBefore = s.clock.Now().Add(s.opt.MemoryCheckInterval << min(sl.memFailures, 5))
		s.log.Warn().Str("app", a.name).Int("slot", sl.index).Func(withPid(pid)).Str("exit", why).Msg("memory replacement failed before ready; the old worker keeps serving")
		return
	case sl.replaceAttempts > a.spec.MaxRestarts:
		giveUp()
		r.abandoned = "slot " + strconv.Itoa(sl.index) + ": replacement never became ready (" + why + ")"
		r.queue = nil
		s.log.Error().Str("app", a.name).Int("slot", sl.index).Func(withPid(pid)).Int("attempts", sl.replaceAttempts).Str("last_exit", why).
			Msg("reload abandoned: the new version does not start; the old workers keep serving")
		s.pumpReload(a)
		return
	}
	d := backoff(sl.replaceAttempts)
	s.log.Warn().Str("app", a.name).Int("slot", sl.index).Func(withPid(pid)).Str("exit", why).Str("retry_in", dur(d)).Msg("replacement worker failed before ready; the old one keeps serving")
	sl.replaceRetry = s.clock.AfterFunc(d, func() { s.onReplaceRetry(sl) })
}

func (s *Supervisor) onReplaceRetry(sl *slot) {
	sl.replaceRetry = nil
	r := &sl.app.reload
	if sl.replacing != replaceReload {
		return
	}
	// A one-shot task that ended meanwhile is left alone, as by pumpReload.
	if r.inProgress && r.abandoned == "" && !s.down.active && sl.candidate == nil && !sl.retiring && !stoppedForGood(sl) {
		s.startReplacement(sl, replaceReload)
		return
	}
	sl.replacing = ""
	s.pumpReload(sl.app)
}

func (s *Supervisor) finishReload(a *app) {
	r := &a.reload
	if !r.inProgress {
		return
	}
	r.inProgress = false
	result := "ok"
	switch {
	case r.abandoned != "":
		result = "failed"
		r.lastResult = "failed: " + r.abandoned
	case r.unreplaced > 0:
		result = "failed"
		r.lastResult = "failed: " + strconv.Itoa(r.unreplaced) + " slot(s) not replaced"
	default:
		r.lastResult = "ok"
	}
	s.counters.Reloads[result]++
	ev := s.log.Info()
	switch {
	case s.down.active:
		// A reload the shutdown cut short was asked to end: no error.
		ev = s.log.Warn()
	case result != "ok":
		ev = s.log.Error()
	}
	ev.Str("app", a.name).Uint64("generation", r.generation).Str("result", r.lastResult).
		Str("duration", dur(s.clock.Now().Sub(r.started))).
		Int("replaced", r.replaced).Int("failures", r.failures).Int("not_replaced", r.unreplaced).Msg("reload finished")
	if s.passEnded != nil {
		s.passEnded(a)
	}
	s.reloadEnded(a, r.lastResult)
	if r.pending && !s.down.active {
		r.pending = false
		s.startReload(a, "pending request")
		return
	}
	r.pending = false
	if s.opt.Lifecycle != nil && !s.down.active && !s.anyReloading() {
		ready, total, _ := s.readyCounts()
		s.opt.Lifecycle.Ready(ready, total)
	}
}

// memoryLimited tells whether some app has --max-memory-restart.
func (s *Supervisor) memoryLimited() bool {
	for _, a := range s.apps {
		if a.spec.MaxMemory > 0 {
			return true
		}
	}
	return false
}

// onMemoryCheck measures the workers of every app with a memory limit and
// replaces, the reload way, those over it — at most --reload-batch of an
// app at a time, and never a slot being reloaded. A fork-mode worker is
// stopped, then started again: fork mode shares nothing, so a new worker
// next to the old one would find the app's own ports taken (or run a queue
// consumer twice).
//
// Backoff: a worker already over the limit at its first check (the limit is
// below what the app needs to run) is replaced after 2, 4, … 32 intervals
// instead of one, and the third in a row brings a warning. A worker is
// measured at every check, backoff or not, so that its first reading comes
// within one interval of its start: a fresh worker under the limit ends the
// backoff, and if it later grows past the limit it is replaced at the next
// check like any worker that grew.
func (s *Supervisor) onMemoryCheck() {
	if s.down.active {
		return
	}
	now := s.clock.Now()
	for _, a := range s.apps {
		limit := a.spec.MaxMemory
		if limit <= 0 || a.reload.inProgress {
			continue
		}
		busy := a.replacing(replaceMemory)
		for _, sl := range a.slots {
			if busy >= a.spec.ReloadBatch {
				break
			}
			w := sl.current
			if w == nil || w.state != status.Ready || sl.candidate != nil || sl.replacing != "" || sl.retiring {
				continue
			}
			rss, err := s.sys.Memory(w.proc)
			if err != nil {
				continue
			}
			if !w.measured {
				w.measured = true
				if rss <= limit {
					sl.memStreak, sl.memWarned, sl.memNotBefore = 0, false, time.Time{}
				} else {
					sl.memStreak++
				}
			}
			if rss <= limit || now.Before(sl.memNotBefore) {
				continue
			}
			// memStreak > 0: this worker was over the limit at its first
			// check, as the ones before it.
			if sl.memStreak >= 3 && !sl.memWarned {
				sl.memWarned = true
				s.log.Warn().Str("app", a.name).Int("slot", sl.index).Int64("rss_bytes", rss).Int64("limit_bytes", limit).
					Msg("worker is over --max-memory-restart right after it starts: the limit is below the app's baseline; raise it")
			}
			sl.memNotBefore = now.Add(s.opt.MemoryCheckInterval << min(sl.memStreak, 5))
			sl.replaceAttempts = 0
			busy++
			if a.spec.ExecMode == appspec.Fork {
				s.log.Warn().Str("app", a.name).Int("slot", sl.index).Int("pid", w.pid).Int64("rss_bytes", rss).Int64("limit_bytes", limit).
					Msg("worker over --max-memory-restart; restarting it (fork mode: stopped, then started again)")
				sl.replacing, sl.restartAfterStop = replaceMemory, true
				s.stop(w, "over --max-memory-restart (fork mode: stopped, then started again)")
				continue
			}
			s.log.Warn().Str("app", a.name).Int("slot", sl.index).Int("pid", w.pid).Int64("rss_bytes", rss).Int64("limit_bytes", limit).
				Msg("worker over --max-memory-restart; replacing it (new worker first, then the old one stops)")
			s.startReplacement(sl, replaceMemory)
		}
	}
}

// withPid adds the pid of the worker a line is about, when there is one: a
// replacement that could not even be started has none.
func withPid(pid int) func(*zerolog.Event) {
	return func(e *zerolog.Event) {
		if pid > 0 {
			e.Int("pid", pid)
		}
	}
}
