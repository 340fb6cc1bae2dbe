package spawn

import (
	"slices"
	"time"

	"github.com/gm2-init/gm2-init/internal/status"
)

// Backoff bounds: the first restart after 100 ms, doubling per failed start
// in a row, never more than 15 s apart.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 15 * time.Second
)

// backoff is the delay before restart number n (1-based) of a crash loop.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// dur renders a duration with its unit for a log field ("1.5s", "250ms").
func dur(d time.Duration) string { return d.Round(time.Millisecond).String() }

// noteFailure remembers the first non-zero exit, the exit status of
// gm2-init with --restart never|on-failure.
func (s *Supervisor) noteFailure(code int) {
	if code != 0 && s.firstFailure == 0 {
		s.firstFailure = code
	}
}

// afterExit decides what follows the end of a slot's serving worker w (nil
// when it could not even be started).
func (s *Supervisor) afterExit(sl *slot, w *worker, code int, desc string) {
	sl.lastExit = desc
	s.noteFailure(code)
	// A fork-mode slot's new worker ended before ready: its reload is told
	// once the slot's own fate is decided below, since the news may end the
	// pass and start the next one, which starts this slot again. (A start
	// that failed, w nil, ends nothing here: a failed backoff restart of a
	// slot whose replacement is retrying must not end it; a fork-mode
	// slot's failed start after its stop is told by onWorkerExit.)
	if w != nil {
		defer s.forkReloaded(sl, w, false)
	}
	if s.down.active || sl.retiring {
		if sl.retiring {
			sl.app.dropRetired()
		}
		return
	}
	a := sl.app.spec
	if !a.Restart.Restarts(code) || slices.Contains(a.StopExitCodes, code) {
		sl.state = status.Stopped
		s.log.Info().Str("app", sl.app.name).Int("slot", sl.index).Str("restart", string(a.Restart)).Int("code", code).Msg("slot stopped; not restarted")
		return
	}
	now := s.clock.Now()
	failed := a.MinUptime > 0 && (w == nil || w.readyAt.IsZero() || now.Sub(w.readyAt) < a.stablePeriod())
	if failed {
		sl.failures++
	} else {
		sl.failures = 0
	}
	if sl.failures > a.MaxRestarts {
		sl.state = status.Errored
		ev := s.log.Error().Str("app", sl.app.name).Int("slot", sl.index).Int("max_restarts", a.MaxRestarts).Str("last_exit", desc)
		switch {
		case code == 0:
			ev.Msg("worker keeps exiting with status 0 soon after it starts; slot errored and not restarted (a command meant to end needs --restart on-failure or never)")
		case s.siblingServes(sl):
			ev.Msg("worker keeps failing on start while the other workers serve; slot errored and not restarted. If it fails to bind a port the others hold (EADDRINUSE), name that port in --listen so that gm2-init binds it once for all")
		default:
			ev.Msg("worker keeps crashing on start; slot errored and not restarted")
		}
		return
	}
	d := max(a.RestartDelay, backoffMin)
	if sl.failures > 0 {
		d = max(a.RestartDelay, backoff(sl.failures))
	}
	sl.state = status.Backoff
	sl.restarts++
	s.counters.Restarts++
	ev := s.log.Info().Str("app", sl.app.name).Int("slot", sl.index).Str("delay", dur(d)).Int("failed_starts", sl.failures)
	if code == 0 {
		ev.Msg("worker exited normally; restarting it (--restart always)")
	} else {
		ev.Msg("restarting worker")
	}
	stopTimer(&sl.restart)
	sl.restart = s.clock.AfterFunc(d, func() { s.onRestartDue(sl) })
}

func (s *Supervisor) onRestartDue(sl *slot) {
	sl.restart = nil
	if sl.state == status.Backoff {
		s.startCurrent(sl)
	}
}

// siblingServes tells whether another slot of sl's app has a ready worker.
func (s *Supervisor) siblingServes(sl *slot) bool {
	if len(sl.app.spec.Listeners) > 0 {
		return false // the shared sockets are gm2-init's: no port clash
	}
	for _, o := range sl.app.slots {
		if o != sl && o.current != nil && o.current.state == status.Ready {
			return true
		}
	}
	return false
}

// cancelRestart drops sl's pending restart (the shutdown, a scale-down):
// a slot that was waiting out its backoff reads stopped from then on.
func cancelRestart(sl *slot) {
	if sl.state == status.Backoff {
		sl.state = status.Stopped
	}
	stopTimer(&sl.restart)
}

// stopTimer stops and forgets a pending timer.
func stopTimer(t *Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}
