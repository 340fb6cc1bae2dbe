package spawn

import (
	"errors"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/status"
)

// The shutdown (SIGTERM, SIGINT, SIGQUIT, or every slot errored):
//
//  1. /readyz fails at once; the workers keep serving for --shutdown-delay
//     (Kubernetes still routes to the pod for a few seconds);
//  2. every worker's tree gets its app's stop signal, and every other
//     process gm2-init is responsible for (orphans, double-forked daemons)
//     gets SIGTERM at the same moment, so that they share one deadline;
//  3. at the kill timeout, whatever is left gets SIGKILL, and gm2-init exits
//     once it has reaped it (or after reapGrace).
//
// So the worst case from SIGTERM to exit is what appspec.WorstCaseStop
// returns, the figure gm2-init logs at start for docker stop -t and
// terminationGracePeriodSeconds.

// reapGrace bounds the wait for processes to be reaped after the final
// SIGKILL: with the log's flush, the part of appspec.WorstCaseStop after
// the kill timeout.
const reapGrace = appspec.ReapGrace

type shutdownState struct {
	requested bool // a TERM/INT (or QUIT) asked for it
	active    bool // /readyz fails from now on
	stopping  bool // the stop signals have been sent
	delay     Timer
	kill      Timer     // the final SIGKILL of everything left
	deadline  time.Time // when kill fires
	killedAny bool      // some worker needed SIGKILL
	exitCode  int       // forced exit code (1 when every slot errored); -1 = none
	hupSaid   bool      // a SIGHUP during the shutdown was logged (once: a storm is one line)
}

// beginShutdown starts the graceful shutdown. code ≥ 0 forces the exit
// status (every slot errored); -1 means a requested shutdown.
func (s *Supervisor) beginShutdown(code int) {
	if s.down.active {
		if code < 0 {
			// A second TERM/INT: the operator is in a hurry; stop waiting.
			s.skipDelay()
		}
		return
	}
	s.down.active = true
	if s.opt.Lifecycle != nil {
		s.opt.Lifecycle.Stopping()
	}
	if code >= 0 {
		s.down.exitCode = code
	} else {
		s.down.requested = true
	}
	for _, a := range s.apps {
		r := &a.reload
		r.queue, r.pending = nil, false
		if r.inProgress {
			// The pass ends here; its replacements are stopped with the rest.
			r.abandoned = "interrupted by shutdown"
			for _, sl := range a.slots {
				sl.replacing = ""
			}
			s.finishReload(a)
		}
		for _, sl := range a.slots {
			cancelRestart(sl)
			stopTimer(&sl.replaceRetry)
			sl.replacing, sl.restartAfterStop = "", false
			if sl.candidate != nil {
				// New code that is not serving yet: no reason to let it
				// start serving during the shutdown delay.
				s.stop(sl.candidate, "shutdown")
			}
		}
	}
	// The passes ended above answered their waiters; a waiter for a pass
	// that was only queued gets no pass.
	for _, wt := range s.reloadWaiters {
		wt.done <- errors.New("gm2-init began to shut down before the reload ran")
	}
	s.reloadWaiters = nil
	stopTimer(&s.memTimer)
	if s.opt.ShutdownDelay > 0 && code < 0 && len(s.byPid) > 0 {
		s.log.Info().Str("shutdown_delay", dur(s.opt.ShutdownDelay)).Msg("not ready any more; workers keep serving until the shutdown delay ends")
		s.down.delay = s.clock.AfterFunc(s.opt.ShutdownDelay, s.stopAll)
		return
	}
	s.stopAll()
}

func (s *Supervisor) skipDelay() {
	if s.down.delay != nil && s.down.delay.Stop() {
		s.stopAll()
	}
}

func (s *Supervisor) stopAll() {
	if s.down.stopping {
		return
	}
	s.down.stopping = true
	s.down.delay = nil
	var kill time.Duration
	live := make([]Proc, 0, len(s.byPid))
	for _, w := range s.byPid {
		live = append(live, w.proc)
		kill = max(kill, w.slot.app.spec.KillTimeout)
		s.stop(w, "shutdown")
	}
	for _, r := range s.lingering {
		live = append(live, r.proc)
	}
	if s.sys.SignalOthers(unix.SIGTERM, live) {
		s.log.Info().Msg("stopping the other processes left in the container (orphans, daemons) along with the workers")
	}
	if kill == 0 {
		kill = s.maxKillTimeout()
	}
	s.down.deadline = s.clock.Now().Add(kill)
	s.down.kill = s.clock.AfterFunc(kill, s.onShutdownKill)
}

// onShutdownKill ends the shutdown's wait: SIGKILL to every worker tree and
// every other process still there.
func (s *Supervisor) onShutdownKill() {
	s.down.kill = nil
	for _, w := range s.byPid {
		s.onKillTimeout(w)
	}
	// A copy: onRemainsTimeout removes the trees that are gone.
	for _, r := range slices.Clone(s.lingering) {
		if !r.killed {
			s.onRemainsTimeout(r)
		}
	}
	s.sys.SignalOthers(unix.SIGKILL, nil)
}

// checkEnd decides whether gm2-init has nothing left to supervise.
func (s *Supervisor) checkEnd() {
	if s.down.stopping {
		s.finished = len(s.byPid) == 0 && len(s.lingering) == 0
		return
	}
	if s.down.active {
		return
	}
	pending, errored, total := false, 0, 0
	for _, a := range s.apps {
		for _, sl := range a.slots {
			total++
			switch {
			case sl.current != nil || sl.candidate != nil || len(sl.draining) > 0 || sl.restart != nil || sl.replaceRetry != nil:
				pending = true
			case sl.state == status.Errored:
				errored++
			}
		}
	}
	if pending {
		return
	}
	if errored > 0 && errored == total {
		s.log.Error().Msg("every slot has errored; shutting down")
		s.beginShutdown(1)
		s.finished = len(s.byPid) == 0 && len(s.lingering) == 0
		return
	}
	if len(s.lingering) > 0 {
		return // what the last workers left behind is still draining
	}
	// --restart never|on-failure: every slot ended; the exit status is
	// the first failure's, 1 if some slot errored without one.
	if errored > 0 && s.firstFailure == 0 {
		s.firstFailure = 1
	}
	s.finished = true
}

func (s *Supervisor) exitCode() int {
	switch {
	case s.down.exitCode >= 0:
		return s.down.exitCode
	case s.down.requested && s.down.killedAny:
		return 128 + int(unix.SIGKILL)
	case s.down.requested:
		return 0
	}
	return s.firstFailure
}

// sweep runs after the last worker is gone: every process left (double-
// forked daemons, orphans; as PID 1 every process of the namespace, else
// gm2-init's own descendants) is stopped and reaped, so that nothing is
// left to the kernel's SIGKILL when PID 1 exits. After a requested
// shutdown they got SIGTERM with the workers and share their deadline;
// after a natural end (--restart never) they get SIGTERM now and a short
// grace.
func (s *Supervisor) sweep(exits <-chan []reaper.Exit) {
	if !s.sys.SignalAll(0) {
		return
	}
	wait := min(s.maxKillTimeout(), 2*time.Second)
	if s.down.stopping {
		wait = s.down.deadline.Sub(s.clock.Now())
	} else {
		s.log.Info().Msg("stopping the processes left behind by the workers")
		s.sys.SignalAll(unix.SIGTERM)
	}
	if wait > 0 && s.waitEmpty(exits, wait) {
		return
	}
	s.log.Warn().Msg("processes left after the kill timeout; sending SIGKILL")
	s.sys.SignalAll(unix.SIGKILL)
	if !s.waitEmpty(exits, reapGrace) {
		s.log.Error().Msg("processes still present after SIGKILL")
	}
}

// stoppedIfEmpty marks a slot the shutdown left without a worker stopped,
// whichever way its last one ended (stopped, or exiting on its own); an
// errored slot stays errored.
func stoppedIfEmpty(sl *slot) {
	if sl.current == nil && sl.candidate == nil && len(sl.draining) == 0 && sl.state != status.Errored {
		sl.state = status.Stopped
	}
}

func (s *Supervisor) maxKillTimeout() time.Duration {
	var d time.Duration
	for _, a := range s.apps {
		d = max(d, a.spec.KillTimeout)
	}
	return d
}

// waitEmpty waits, reaping, until no process is left to stop or d has
// passed. Exits reach it through the reaper; the slow re-check covers
// processes that are not gm2-init's to reap (a `docker exec` session). Its
// timers are Go's, not the Clock's: the Clock runs its functions in the
// loop, which has ended.
func (s *Supervisor) waitEmpty(exits <-chan []reaper.Exit, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	recheck := time.NewTicker(100 * time.Millisecond)
	defer recheck.Stop()
	for s.sys.SignalAll(0) {
		select {
		case b := <-exits:
			s.counters.OrphansReaped += uint64(len(b))
		case <-recheck.C:
		case <-deadline.C:
			return !s.sys.SignalAll(0)
		}
	}
	return true
}
