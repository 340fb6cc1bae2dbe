package spawn

import (
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/status"
)

// app is one app's runtime state.
type app struct {
	spec    *App
	name    string
	slots   []*slot
	baseEnv []string
	reload  reloadState
}

// instances is the wanted count: every slot not being removed.
func (a *app) instances() int {
	n := 0
	for _, sl := range a.slots {
		if !sl.retiring {
			n++
		}
	}
	return n
}

// logStart says, once, what a worker of this app will get.
func (a *app) logStart(s *Supervisor) {
	ev := s.log.Info().Str("app", a.name).Int("instances", len(a.slots)).Str("command", strings.Join(a.spec.Command, " "))
	if a.spec.ExecMode != "" {
		ev = ev.Str("exec_mode", string(a.spec.ExecMode))
	}
	ev.Msg("starting workers")
	if len(a.slots) > 1 && len(a.spec.Listeners) == 0 && a.spec.PreloadEnv == nil {
		s.log.Warn().Str("app", a.name).Int("instances", len(a.slots)).
			Msg("no --listen: each worker must bind its own ports; a port the app binds is taken by one worker and the others fail (name it in --listen so that gm2-init binds it once for all)")
	}
}

// slot is one of an app's instances; its index is GM2_INSTANCE.
type slot struct {
	app       *app
	index     int
	current   *worker   // serving or starting
	candidate *worker   // its replacement (reload, memory)
	draining  []*worker // stopped, not yet exited
	state     status.State
	restarts  int
	// failures counts failed starts in a row (see the package doc).
	failures int
	restart  Timer // pending restart (backoff)
	lastExit string
	retiring bool // being removed (scale down); gone once its workers are

	// The replacement under way, if any: why, how many attempts failed,
	// and the pending retry.
	replacing       string // "", replaceReload or replaceMemory
	replaceAttempts int
	replaceRetry    Timer
	// memory replacement back-off: the next check that may replace this
	// slot again, and how many replacements in a row found the new worker
	// over the limit at once.
	memNotBefore time.Time
	memStreak    int
	memWarned    bool
	memFailures  int // memory replacements in a row that died before ready

	// restartAfterStop: a fork-mode reload stopped the slot's worker and
	// starts the next one as soon as it has exited.
	restartAfterStop bool

	// expect names the listeners the slot's last ready worker listened
	// on: its replacement is ready once it listens on all of them.
	expect map[string]bool
}

const (
	replaceReload = "reload"
	replaceMemory = "memory"
)

// worker is one process.
type worker struct {
	slot    *slot
	proc    Proc
	pid     int
	gen     uint64
	started time.Time
	state   status.State // Starting, Ready or Draining
	alive   bool
	readyAt time.Time
	readyBy string
	// saidReady: the worker reported READY=1 or process.send('ready')
	// itself, as opposed to being declared ready by a timer.
	saidReady bool
	// overdue: --listen-timeout passed and the worker still could not be
	// taken for ready (it holds none of the passed sockets). The start is
	// over for its slot all the same: a parent waiting for READY=1 is
	// told, with the worker counted as not ready.
	overdue bool
	killed  bool      // SIGKILL sent
	stopAt  time.Time // when the stop signal was sent
	timers  []Timer
	// statusText is the last STATUS= it sent.
	statusText string
	// hello: its Node preload announced itself; listening: the listeners
	// (keys) its servers listen on.
	hello     bool
	listening map[string]bool
	// measured: its memory was checked at least once; portsLogged: what
	// CheckPorts found was logged.
	measured, portsLogged bool
}

// remains is what is left of a worker's tree after the worker exited: the
// app behind a wrapper that died of the stop signal first, children of a
// crashed worker, processes that left the group. gm2-init waits for them
// as for the worker, up to the kill timeout.
type remains struct {
	proc   Proc
	app    string
	slot   int
	timer  Timer
	killed bool
}

// startCurrent starts the serving worker of a slot that has none.
func (s *Supervisor) startCurrent(sl *slot) {
	if sl.current != nil || sl.candidate != nil || sl.retiring || s.down.active {
		return
	}
	w, err := s.startWorker(sl)
	if err != nil {
		s.log.Error().Err(err).Str("app", sl.app.name).Int("slot", sl.index).Msg("cannot start worker")
		s.afterExit(sl, nil, 1, "start failed: "+err.Error())
		return
	}
	sl.current = w
	if sl.state != status.Ready {
		sl.state = status.Starting
	}
}

// startWorker starts one process for sl.
func (s *Supervisor) startWorker(sl *slot) (*worker, error) {
	a := sl.app
	// The Node IPC channel carries process.send('ready') (--wait-ready) and
	// the cluster protocol the preload speaks to share ports on demand.
	layout := NewLayout(listenerFiles(a.spec), a.spec.PreloadEnv != nil, a.spec.PreloadEnv != nil || a.spec.WaitReady)
	w := &worker{slot: sl, gen: a.reload.generation, started: s.clock.Now(), state: status.Starting, listening: map[string]bool{}}
	spec := &StartSpec{
		App: a.name, Slot: sl.index,
		Path: a.spec.Path, Argv: a.spec.Command, Dir: a.spec.Dir,
		Env:        workerEnv(a.baseEnv, a.spec, sl.index, a.instances(), int(s.counters.WorkersStarted)+1, layout),
		Layout:     layout,
		Foreground: s.opt.Foreground && s.totalInstances() == 1,
		Events: WorkerEvents{
			Preload:   func(ev preload.Event) { s.post(func() { s.onPreload(w, ev) }) },
			NodeReady: func() { s.post(func() { s.onNodeReady(w) }) },
			Query:     s.shareQuery(a, sl.index),
		},
	}
	if reg := s.opt.Shared; reg != nil {
		spec.Events.Held, spec.Events.Released = reg.Hold, reg.Release
	}
	proc, err := s.sys.Start(spec)
	if err != nil {
		return nil, err
	}
	w.proc, w.pid, w.alive = proc, proc.Pid(), true
	s.byPid[w.pid] = w
	s.counters.WorkersStarted++
	s.log.Info().Str("app", a.name).Int("slot", sl.index).Int("pid", w.pid).Uint64("generation", w.gen).Msg("worker started")
	s.armReadiness(w)
	return w, nil
}

// stop asks a worker to exit: the stop signal to its tree now, SIGKILL to
// the tree after the kill timeout.
func (s *Supervisor) stop(w *worker, why string) {
	if !w.alive || w.state == status.Draining {
		return
	}
	sl := w.slot
	w.state = status.Draining
	if sl.current == w {
		sl.current = nil
	}
	if sl.candidate == w {
		sl.candidate = nil
	}
	sl.draining = append(sl.draining, w)
	w.stopAt = s.clock.Now()
	sig := sl.app.spec.StopSignal
	s.sys.Signal(w.proc, sig)
	s.log.Info().Str("app", sl.app.name).Int("slot", sl.index).Int("pid", w.pid).Str("signal", unix.SignalName(sig)).Str("why", why).Msg("stopping worker")
	w.timers = append(w.timers, s.clock.AfterFunc(sl.app.spec.KillTimeout, func() { s.onKillTimeout(w) }))
}

func (s *Supervisor) onKillTimeout(w *worker) {
	if !w.alive || w.killed {
		return
	}
	s.log.Warn().Str("app", w.slot.app.name).Int("slot", w.slot.index).Int("pid", w.pid).Str("kill_timeout", dur(w.slot.app.spec.KillTimeout)).
		Msg("worker still running after the kill timeout; sending SIGKILL")
	w.killed = true
	if s.down.active {
		s.down.killedAny = true
	}
	s.sys.Signal(w.proc, unix.SIGKILL)
}

func (s *Supervisor) onExits(batch []reaper.Exit) {
	now := s.clock.Now()
	for pid, at := range s.recent {
		if now.Sub(at) > 10*time.Second {
			delete(s.recent, pid)
		}
	}
	for _, e := range batch {
		w := s.byPid[e.Pid]
		if w == nil {
			s.counters.OrphansReaped++
			continue
		}
		s.onWorkerExit(w, e)
		if s.down.active {
			stoppedIfEmpty(w.slot)
		}
	}
	s.recheckRemains()
}

// stopTimers stops what is pending for w: its readiness timers, or its
// stop's --kill-timeout.
func stopTimers(w *worker) {
	for _, t := range w.timers {
		t.Stop()
	}
	w.timers = nil
}

func (s *Supervisor) onWorkerExit(w *worker, e reaper.Exit) {
	delete(s.byPid, w.pid)
	s.recent[w.pid] = s.clock.Now()
	w.alive = false
	stopTimers(w)
	sl := w.slot
	lived := s.clock.Now().Sub(w.started)
	code := e.Code()
	ev := s.log.Info()
	if code != 0 && w.state != status.Draining {
		ev = s.log.Warn()
	}
	ev.Str("app", sl.app.name).Int("slot", sl.index).Int("pid", w.pid).Str("status", e.String()).Int("code", code).
		Str("state", string(w.state)).Str("lived", lived.Round(time.Millisecond).String()).Msg("worker exited")
	if !s.keepRemains(w) {
		// Nothing of its tree is left: its channels can go. Otherwise
		// they stay open until the tree is gone (releaseRemains): a Node
		// app behind a wrapper (sh -c, npm start) holds the cluster
		// channel, and a Node cluster worker exits the moment its
		// channel closes — in the middle of its graceful stop.
		s.sys.Release(w.proc)
	}

	switch {
	case w.state == status.Draining:
		sl.draining = removeWorker(sl.draining, w)
		if sl.retiring {
			sl.app.dropRetired()
		}
		if sl.restartAfterStop && sl.current == nil && len(sl.draining) == 0 {
			sl.restartAfterStop = false
			if s.down.active {
				sl.replacing = ""
				return
			}
			s.startCurrent(sl)
			if sl.current == nil { // could not even start
				s.forkReloaded(sl, nil, false)
			}
		}
	case sl.candidate == w:
		sl.candidate = nil
		s.replacementFailed(sl, w.pid, e.String())
	case sl.current == w:
		sl.current = nil
		if sl.candidate != nil {
			// Its replacement is on the way and takes over when ready.
			sl.state = status.Starting
			sl.lastExit = e.String()
			s.noteFailure(code)
			s.log.Warn().Str("app", sl.app.name).Int("slot", sl.index).Int("candidate", sl.candidate.pid).
				Msg("worker exited during its replacement; the new one takes over when ready")
			return
		}
		s.afterExit(sl, w, code, e.String())
	}
}

// keepRemains deals with what is left of a worker's tree once the worker is
// gone. After a stop, the rest of the tree got the stop signal too and is
// draining (the app behind npm or sh -c): gm2-init waits for it, up to the
// kill timeout counted from the stop signal. After a crash, the leftovers
// would go on serving the old code next to the replacement: they get the
// stop signal now. Either way they are SIGKILLed when their time is up, and
// the shutdown waits for them as for a worker. It reports whether any
// remain.
func (s *Supervisor) keepRemains(w *worker) bool {
	if !s.sys.Remains(w.proc) {
		return false
	}
	a := w.slot.app
	deadline := s.clock.Now().Add(a.spec.KillTimeout)
	if w.state == status.Draining {
		deadline = w.stopAt.Add(a.spec.KillTimeout)
		s.log.Debug().Str("app", a.name).Int("slot", w.slot.index).Int("pid", w.pid).Msg("the worker's process tree drains on after the worker exited")
	} else {
		s.log.Warn().Str("app", a.name).Int("slot", w.slot.index).Int("pid", w.pid).Msg("processes left by the exited worker; stopping them")
		s.sys.Signal(w.proc, a.spec.StopSignal)
	}
	r := &remains{proc: w.proc, app: a.name, slot: w.slot.index}
	if w.killed {
		r.killed = true
		deadline = s.clock.Now().Add(time.Second)
	}
	s.lingering = append(s.lingering, r)
	r.timer = s.clock.AfterFunc(deadline.Sub(s.clock.Now()), func() { s.onRemainsTimeout(r) })
	return true
}

// onRemainsTimeout SIGKILLs remains whose time is up, and forgets them one
// second after the SIGKILL (which cannot be ignored: whatever is left is
// about to be reaped, or stuck in the kernel where nothing helps).
func (s *Supervisor) onRemainsTimeout(r *remains) {
	i := indexOf(s.lingering, r)
	if i < 0 {
		return
	}
	if r.killed || !s.sys.Remains(r.proc) {
		s.lingering = append(s.lingering[:i], s.lingering[i+1:]...)
		s.sys.Release(r.proc)
		return
	}
	s.log.Warn().Str("app", r.app).Int("slot", r.slot).Int("pid", r.proc.Pid()).
		Msg("processes of a stopped worker's tree still running after the kill timeout; sending SIGKILL")
	s.sys.Signal(r.proc, unix.SIGKILL)
	r.killed = true
	if s.down.active {
		s.down.killedAny = true
	}
	r.timer.Stop() // when called before its deadline (the shutdown's kill)
	r.timer = s.clock.AfterFunc(time.Second, func() { s.onRemainsTimeout(r) })
}

// recheckRemains forgets the trees whose last process has been reaped.
func (s *Supervisor) recheckRemains() {
	out := s.lingering[:0]
	for _, r := range s.lingering {
		if s.sys.Remains(r.proc) {
			out = append(out, r)
		} else {
			r.timer.Stop()
			s.sys.Release(r.proc)
		}
	}
	s.lingering = out
}

func indexOf(rs []*remains, r *remains) int {
	for i, x := range rs {
		if x == r {
			return i
		}
	}
	return -1
}

func removeWorker(ws []*worker, w *worker) []*worker {
	out := ws[:0]
	for _, x := range ws {
		if x != w {
			out = append(out, x)
		}
	}
	return out
}

func listenerFiles(a *App) []*os.File {
	fs := make([]*os.File, len(a.Listeners))
	for i, l := range a.Listeners {
		fs[i] = l.File
	}
	return fs
}

// shareQuery answers a worker's listen() for a port nobody bound with a
// socket of the registry, bound on the first request and shared by every
// worker of the app (see internal/nodeipc). It runs on the worker's channel
// goroutine; a new socket is announced to the loop, which shows it in
// /status.
func (s *Supervisor) shareQuery(a *app, slot int) func(nodeipc.Query) nodeipc.Reply {
	reg := s.opt.Shared
	if reg == nil || a.spec.ExecMode == appspec.Fork {
		return nil // refused with EADDRNOTAVAIL: nothing is shared
	}
	share := nodeipc.Share(reg, a.name, s.log.With().Str("app", a.name).Int("slot", slot).Logger())
	return func(q nodeipc.Query) nodeipc.Reply {
		r := share(q)
		if r.Created {
			s.post(func() {}) // an event: the next snapshot shows it
		}
		return r
	}
}
