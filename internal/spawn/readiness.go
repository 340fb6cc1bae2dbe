package spawn

import (
	"strconv"
	"strings"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/status"
)

// A worker becomes ready in one of these ways, the first that applies:
//
//   - with --wait-ready, when it says so: READY=1 on NOTIFY_SOCKET or
//     process.send('ready') on the Node IPC channel;
//   - with the Node preload (and without --wait-ready), when its servers
//     listen on every socket it is expected to: the ones its slot's last
//     ready worker listened on, else every passed listener Node can use,
//     else the first one it listens on;
//   - otherwise (a program that cannot tell) after --min-uptime, or sooner
//     if it says READY=1 or process.send('ready') unasked: what a worker
//     says of itself is taken also without --wait-ready, which only makes
//     gm2-init wait for it;
//   - and, with a warning, after --listen-timeout when it is alive but
//     silent — except that under --wait-ready a replacement that never
//     said READY does not replace a worker that did.

// armReadiness sets the timers that make a worker ready when it says
// nothing.
func (s *Supervisor) armReadiness(w *worker) {
	a := w.slot.app.spec
	if !a.WaitReady {
		w.timers = append(w.timers, s.clock.AfterFunc(a.MinUptime, func() { s.onMinUptime(w) }))
	}
	if a.WaitReady || a.PreloadEnv != nil {
		w.timers = append(w.timers, s.clock.AfterFunc(a.ListenTimeout, func() { s.onListenTimeout(w) }))
	}
}

func (s *Supervisor) onMinUptime(w *worker) {
	a := w.slot.app.spec
	if !w.alive || w.state != status.Starting {
		return
	}
	if a.ExecMode == appspec.Fork {
		// Fork mode shares nothing: a Node worker is not waited for
		// until it listens (a queue consumer never does).
		s.markReady(w, "min-uptime")
		return
	}
	if w.hello {
		// A worker whose preload announced itself becomes ready when its
		// servers listen, not by the clock.
		return
	}
	if a.PreloadEnv != nil && s.sys.RunsNode(w.proc) {
		// So does a Node worker whose preload has not spoken yet: a cold
		// or throttled node can take more than --min-uptime to load, and
		// calling it ready before it listens would stop the old worker of
		// a reload too early. --listen-timeout still bounds the wait.
		s.log.Debug().Str("app", w.slot.app.name).Int("slot", w.slot.index).Int("pid", w.pid).Msg("node worker: ready when its servers listen")
		return
	}
	s.markReady(w, "min-uptime")
}

func (s *Supervisor) onListenTimeout(w *worker) {
	if !w.alive || w.state != status.Starting {
		return
	}
	sl := w.slot
	a := sl.app.spec
	if a.WaitReady && sl.candidate == w && sl.current != nil && sl.current.saidReady {
		s.log.Warn().Str("app", sl.app.name).Int("slot", sl.index).Int("pid", w.pid).Str("listen_timeout", dur(a.ListenTimeout)).
			Msg("replacement worker did not report ready in time; the old worker keeps serving")
		s.stop(w, "not ready within --listen-timeout")
		s.replacementFailed(sl, w.pid, "not ready within --listen-timeout")
		return
	}
	if s.markReady(w, "listen-timeout") {
		s.log.Warn().Str("app", sl.app.name).Int("slot", sl.index).Int("pid", w.pid).Str("listen_timeout", dur(a.ListenTimeout)).
			Msg("worker did not report ready in time; treating it as ready")
		return
	}
	w.overdue = true
	if sl.candidate == w && s.sys.CheckPorts(w.proc, a.Listeners).HoldsNone {
		// It will not serve the passed sockets: the replacement failed.
		s.stop(w, "holds none of the passed sockets")
		s.replacementFailed(sl, w.pid, "holds none of the passed sockets")
	}
}

func (s *Supervisor) onNodeReady(w *worker) {
	if !w.alive {
		return
	}
	w.saidReady = true
	s.markReady(w, "process.send('ready')")
}

func (s *Supervisor) onPreload(w *worker, ev preload.Event) {
	if !w.alive {
		return
	}
	switch ev.Kind {
	case preload.KindHello:
		w.hello = true
	case preload.KindListening, preload.KindShared:
		w.hello = true
		key := passedKey(ev.FD)
		if ev.Kind == preload.KindShared {
			key = sharedKey(ev.ID)
		}
		w.listening[key] = true
		sl := w.slot
		if w.state == status.Ready && sl.current == w {
			if sl.expect == nil {
				sl.expect = map[string]bool{}
			}
			sl.expect[key] = true
		}
		if !sl.app.spec.WaitReady && s.listensOnAll(w) {
			s.markReady(w, "preload: listening")
		}
	}
}

// passedKey names a passed listener by its fd number in the worker.
func passedKey(fd int) string { return "fd:" + strconv.Itoa(fd) }

// sharedKey names a socket shared on demand by its registry id.
func sharedKey(id int) string { return "shared:" + strconv.Itoa(id) }

// listensOnAll tells whether w listens on every socket it is expected to
// (see the rules at the top of this file).
func (s *Supervisor) listensOnAll(w *worker) bool {
	if len(w.listening) == 0 {
		return false
	}
	if exp := w.slot.expect; len(exp) > 0 {
		for k := range exp {
			if !w.listening[k] {
				return false
			}
		}
		return true
	}
	for i, l := range w.slot.app.spec.Listeners {
		if l.Spec.Network != sockets.Unixgram && !w.listening[passedKey(3+i)] {
			return false
		}
	}
	return true
}

// markReady makes w ready, unless it cannot be: it exited already, or it
// holds none of the sockets gm2-init passed (a server that closed them and
// bound a port of its own). It reports whether w is ready now.
func (s *Supervisor) markReady(w *worker, how string) bool {
	if !w.alive || w.state != status.Starting {
		return w.alive && w.state == status.Ready
	}
	if s.sys.Exited(w.proc) {
		// Its exit is queued behind this event: promoting it would stop
		// the old worker for a replacement that is already dead.
		return false
	}
	if !s.portsCheckOut(w, how) {
		return false
	}
	w.state = status.Ready
	w.readyAt, w.readyBy = s.clock.Now(), how
	// --min-uptime's and --listen-timeout's timers have nothing left to
	// decide. Left pending, each would wake an idle gm2-init up once, 10 s
	// after every start (bench/analysis.md, "Idle wakeups").
	stopTimers(w)
	sl := w.slot
	if len(w.listening) > 0 {
		sl.expect = make(map[string]bool, len(w.listening))
		for k := range w.listening {
			sl.expect[k] = true
		}
	}
	s.log.Info().Str("app", sl.app.name).Int("slot", sl.index).Int("pid", w.pid).Str("by", how).
		Str("after", dur(w.readyAt.Sub(w.started))).Msg("worker ready")
	switch {
	case sl.candidate == w:
		s.promote(sl)
	case sl.current == w:
		sl.state = status.Ready
		s.forkReloaded(sl, w, true)
	}
	return true
}

// portsCheckOut checks, when a worker that was passed listeners says it is
// ready (or is declared so by a timer), that its process tree holds them,
// and says what is wrong, once per worker. The Node preload's readiness
// needs no check: it reports the passed sockets its servers listen on.
func (s *Supervisor) portsCheckOut(w *worker, how string) bool {
	a := w.slot.app
	if len(a.spec.Listeners) == 0 || strings.HasPrefix(how, "preload") {
		return true
	}
	r := s.sys.CheckPorts(w.proc, a.spec.Listeners)
	if !r.Checked {
		return true
	}
	if !w.portsLogged && (r.Wrong || r.Odd) {
		w.portsLogged = true
		ev := s.log.Info()
		if r.Wrong {
			ev = s.log.Warn()
		}
		ev.Str("app", a.name).Int("slot", w.slot.index).Int("pid", w.pid).Str("server", r.Server).Bool("ready", !r.HoldsNone).Msg(r.Message)
	}
	return !r.HoldsNone
}
