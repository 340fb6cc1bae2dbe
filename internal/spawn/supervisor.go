// Package spawn starts the workers and owns the supervisor's state: which
// process serves which slot, which is starting, draining or backing off, and
// what happens on every exit, signal and readiness message.
//
// All of that state belongs to one goroutine, the loop in Run. Everything
// else — the reaper, the signal channel, timers, the notify socket, the
// per-worker readiness pipes — reaches the state only by sending the loop an
// event. There are no locks around the state and no decision is taken by a
// poller; the order of events is the order in which they are applied. The
// health endpoints read immutable status.Snapshots, which the loop builds
// when one is asked for and something changed (see Supervisor.Snapshot).
package spawn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/status"
)

// Options configures a Supervisor.
type Options struct {
	Path string   // the command, resolved through PATH
	Args []string // its argv; Args[0] as the user wrote it
	Env  []string // environment every worker inherits (os.Environ())
	Self string   // gm2-init's own executable, for the LISTEN_PID re-exec

	Instances int

	Listeners     []*os.File // passed as fds 3, 4, …
	ListenFDNames string     // LISTEN_FDNAMES
	ListenersDesc string     // GM2_LISTENERS, for the Node preload ("" when none)
	// PreloadEnv gives workers the Node preload (preload.Choice.WorkerEnv);
	// nil = preload off.
	PreloadEnv []string
	// PreloadListeners is how many of Listeners the Node preload can take
	// (every kind but unixgram, which Node cannot use): a worker whose
	// preload reports that many listening is ready.
	PreloadListeners int

	Notify *notify.Socket // NOTIFY_SOCKET for workers; nil = none

	// Foreground gives the terminal on stdin to the worker's process group,
	// as tini does, so that an interactive program (docker run -it … bash)
	// can read it and gets the terminal's Ctrl-C. Only for one worker.
	Foreground bool

	StopSignal    syscall.Signal
	KillTimeout   time.Duration
	MinUptime     time.Duration
	ListenTimeout time.Duration
	ShutdownDelay time.Duration
	Restart       appspec.RestartPolicy
	MaxRestarts   int
	WaitReady     bool
	ReloadBatch   int
	MinReady      int // 0 = every slot

	// Lifecycle, when set, is told of the supervisor's milestones (for
	// whatever started gm2-init: systemd's notify protocol).
	Lifecycle Lifecycle

	Version string
	Log     zerolog.Logger
}

// Lifecycle receives the supervisor's milestones. Calls are made from the
// supervisor's loop, in order, and must not block.
type Lifecycle interface {
	// Ready: the start has finished (every slot's first worker is ready,
	// or was given up on: errored, stopped, or past --listen-timeout), or
	// a reload pass has ended. ready/total are the ready workers and slots.
	Ready(ready, total int)
	// Reloading: a reload pass has begun.
	Reloading()
	// Stopping: the shutdown has begun.
	Stopping()
	// Status: the count of ready workers or of slots changed.
	Status(ready, total int)
}

// Supervisor runs the workers. Create it with New, run it with Run.
type Supervisor struct {
	opt    Options
	log    zerolog.Logger
	events chan func()
	done   chan struct{} // closed when Run returns
	snap   atomic.Pointer[status.Snapshot]
	// stale is set by the loop before it handles an event, cleared once
	// a snapshot is stored; asks carries round trips to the loop, which
	// publish a snapshot if stale (see Snapshot and Ping); stuck records
	// that the last round trip went unanswered.
	stale atomic.Bool
	stuck atomic.Bool
	asks  chan chan struct{}

	// Everything below is owned by the loop goroutine.
	baseEnv   []string
	startedAt time.Time
	slots     []*slot
	byPid     map[int]*worker
	lingering map[int]*group // process groups that outlived their worker
	reload    reloadState
	counters  status.Counters
	down      shutdownState
	finished  bool
	noFg      bool // the terminal could not be handed over once: stop trying
	// started is set once the start has finished (Lifecycle.Ready);
	// lastReady/lastTotal are the counts last given to Lifecycle.Status.
	started              bool
	lastReady, lastTotal int
	// firstFailure is the exit code of the first worker that failed, for
	// --restart never|on-failure.
	firstFailure int
}

type shutdownState struct {
	requested bool // a TERM/INT (or QUIT) asked for it
	active    bool // /readyz fails from now on
	stopping  bool // the stop signal has been sent
	delay     *time.Timer
	killedAny bool // some worker needed SIGKILL
	exitCode  int  // forced exit code (1 when every slot errored); -1 = none
}

// slot is one of the N instances; its index is GM2_INSTANCE.
type slot struct {
	index     int
	current   *worker   // serving or starting
	candidate *worker   // its replacement during a reload
	draining  []*worker // stopped, not yet exited
	state     status.State
	restarts  int
	// consecutive counts exits in a row that lived less than --min-uptime.
	consecutive int
	restart     *time.Timer // pending restart (backoff)
	lastExit    string
	retiring    bool // removed by TTOU; gone once its workers are
	// reloadAttempts counts failed replacements in the current reload pass.
	reloadAttempts int
	reloadRetry    *time.Timer
}

// worker is one process.
type worker struct {
	slot       *slot
	pid        int
	proc       *os.Process
	gen        uint64
	started    time.Time
	state      status.State // Starting, Ready or Draining
	alive      bool
	killed     bool      // we sent SIGKILL
	stopAt     time.Time // when the stop signal was sent
	timers     []*time.Timer
	statusText string
	// preload readiness
	hello     bool
	listening map[int]bool
	closers   []*os.File // our ends of the readiness channels
}

// group is a worker's process group whose leader exited while other
// members live on: the app behind a wrapper (npm start, sh -c) that died of
// the stop signal first, or children of a worker that crashed. gm2-init
// waits for them as for a worker, up to the kill timeout.
type group struct {
	pgid   int
	slot   int
	timer  *time.Timer
	killed bool
}

// New prepares a supervisor; nothing is started before Run.
func New(opt Options) *Supervisor {
	s := &Supervisor{
		opt:    opt,
		log:    opt.Log,
		events: make(chan func(), 64),
		done:   make(chan struct{}),
		byPid:  map[int]*worker{},

		asks: make(chan chan struct{}),
	}
	s.lingering = map[int]*group{}
	s.down.exitCode = -1
	s.counters.Reloads = map[string]uint64{"ok": 0, "failed": 0}
	s.baseEnv = workerBaseEnv(opt)
	s.startedAt = time.Now()
	for i := 0; i < opt.Instances; i++ {
		s.slots = append(s.slots, &slot{index: i, state: status.Starting})
	}
	s.publish()
	return s
}

// workerEnvKeys are the variables gm2-init sets per worker; inherited values
// of them (from a parent init, a shell) are dropped first.
var workerEnvKeys = []string{
	"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
	"GM2_INSTANCE", "GM2_INSTANCES", "NODE_APP_INSTANCE",
	"GM2_LISTENERS", "GM2_PRELOAD_FD", "GM2_PRELOAD_IMPORT", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE",
}

func workerBaseEnv(opt Options) []string {
	drop := map[string]bool{}
	for _, k := range workerEnvKeys {
		drop[k] = true
	}
	if opt.PreloadEnv != nil {
		drop["NODE_OPTIONS"] = true
	}
	var env []string
	for _, kv := range opt.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	if n := len(opt.Listeners); n > 0 {
		env = append(env, "LISTEN_FDS="+strconv.Itoa(n), "LISTEN_FDNAMES="+opt.ListenFDNames)
	}
	if opt.ListenersDesc != "" {
		env = append(env, "GM2_LISTENERS="+opt.ListenersDesc)
	}
	env = append(env, opt.PreloadEnv...)
	if opt.Notify != nil {
		env = append(env, "NOTIFY_SOCKET="+opt.Notify.Env())
	}
	return env
}

// snapshotWait bounds how long Snapshot waits for the loop; a loop that
// does not answer in that time is stuck, which /livez reports, and the last
// snapshot is the best answer left (kubelet probes time out after 1 s).
const snapshotWait = 500 * time.Millisecond

// Snapshot returns the supervisor's state as of now; never nil.
//
// Snapshots are built on demand, not after every event: building one costs
// O(workers), and when N workers start, become ready or exit together,
// building one per event would cost O(N²) in time and garbage. Readers are
// probes and scrapes, a few per second at most. So the loop only marks the
// snapshot stale, and a reader that finds it stale asks the loop, which
// builds one for every reader waiting. If Run has returned or the loop does
// not answer within snapshotWait, the last snapshot is returned; while the
// loop is known to be stuck, at once.
func (s *Supervisor) Snapshot() *status.Snapshot {
	if s.stale.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
		_ = s.ask(ctx, s.stuck.Load())
		cancel()
	}
	return s.snap.Load()
}

// Ping makes a round trip through the loop: the liveness check that the
// supervisor still takes events. It also brings the snapshot up to date.
func (s *Supervisor) Ping(ctx context.Context) error {
	return s.ask(ctx, false)
}

// ask makes a round trip through the loop, which publishes a snapshot on the
// way if it is stale. With onlyIfFree it gives up at once unless the loop is
// waiting for work: how a stuck loop is checked without waiting on it again.
func (s *Supervisor) ask(ctx context.Context, onlyIfFree bool) error {
	reply := make(chan struct{})
	if onlyIfFree {
		select {
		case s.asks <- reply:
		default:
			return errors.New("supervisor loop busy")
		}
	} else {
		select {
		case s.asks <- reply:
		case <-ctx.Done():
			s.stuck.Store(true)
			return fmt.Errorf("supervisor loop busy: %w", ctx.Err())
		case <-s.done:
			return errors.New("supervisor stopped")
		}
	}
	select {
	case <-reply:
		s.stuck.Store(false)
		return nil
	case <-ctx.Done():
		s.stuck.Store(true)
		return fmt.Errorf("supervisor loop busy: %w", ctx.Err())
	case <-s.done:
		return errors.New("supervisor stopped")
	}
}

// post hands fn to the loop; it gives up once Run has returned.
func (s *Supervisor) post(fn func()) {
	select {
	case s.events <- fn:
	case <-s.done:
	}
}

// after runs fn in the loop after d.
func (s *Supervisor) after(d time.Duration, fn func()) *time.Timer {
	return time.AfterFunc(d, func() { s.post(fn) })
}

// Run starts the workers and supervises them until gm2-init must exit; it
// returns the exit status. sigs carries every signal gm2-init handles except
// SIGCHLD, which drives the reaper whose batches arrive on exits.
func (s *Supervisor) Run(sigs <-chan os.Signal, exits <-chan []reaper.Exit) int {
	defer close(s.done)
	if s.opt.Notify != nil {
		go s.readNotify()
	}
	s.log.Info().Int("instances", len(s.slots)).Str("command", strings.Join(s.opt.Args, " ")).Msg("starting workers")
	for _, sl := range s.slots {
		s.startCurrent(sl)
	}
	s.publish()
	for !s.finished {
		// Stale before the event is applied: a reader that sees its
		// effects (a log line, a signal, a new process) and asks for a
		// snapshot gets one built after it.
		select {
		case b := <-exits:
			s.stale.Store(true)
			s.onExits(b)
		case sig := <-sigs:
			s.stale.Store(true)
			s.onSignal(sig)
		case fn := <-s.events:
			s.stale.Store(true)
			fn()
		case reply := <-s.asks:
			if s.stale.Load() {
				s.publish()
			}
			close(reply)
			continue // nothing changed
		}
		s.checkEnd()
		s.tellLifecycle()
	}
	s.publish()
	code := s.exitCode()
	s.sweep(exits)
	s.log.Info().Int("exit_code", code).Msg("gm2-init exiting")
	return code
}

// readNotify forwards NOTIFY_SOCKET datagrams to the loop. It ends when the
// socket is closed (by main, after Run).
func (s *Supervisor) readNotify() {
	for {
		m, err := s.opt.Notify.Receive()
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			// A transient failure (a truncated datagram, ENOBUFS) must not
			// end readiness for good; the next datagram may be fine.
			s.log.Debug().Err(err).Msg("notify socket")
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		s.post(func() { s.onNotify(m) })
	}
}

func (s *Supervisor) onNotify(m notify.Message) {
	w := s.byPid[m.Pid]
	if w == nil {
		if pid, ok := procfs.FindAncestor("/proc", m.Pid, func(p int) bool { return s.byPid[p] != nil }); ok {
			w = s.byPid[pid]
		}
	}
	if w == nil {
		s.log.Warn().Int("sender_pid", m.Pid).Msg("notify message from a process that is not a worker nor a descendant of one; dropped")
		return
	}
	if m.HasStatus {
		w.statusText = m.Status
	}
	if m.Stopping {
		s.log.Debug().Int("slot", w.slot.index).Int("pid", w.pid).Msg("worker reports STOPPING=1")
	}
	if m.Ready {
		s.markReady(w, "READY=1")
	}
}

// instances is the wanted count: every slot not being removed.
func (s *Supervisor) instances() int {
	n := 0
	for _, sl := range s.slots {
		if !sl.retiring {
			n++
		}
	}
	return n
}

func (s *Supervisor) onSignal(sig os.Signal) {
	switch sig {
	case unix.SIGTERM, unix.SIGINT:
		s.log.Info().Str("signal", unix.SignalName(sig.(syscall.Signal))).Msg("shutdown requested")
		s.beginShutdown(-1)
	case unix.SIGQUIT:
		s.forward(unix.SIGQUIT)
		s.log.Info().Msg("SIGQUIT forwarded; shutting down")
		s.beginShutdown(-1)
		s.skipDelay()
	case unix.SIGHUP:
		s.startReload()
	case unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH:
		s.forward(sig.(syscall.Signal))
	case unix.SIGTTIN:
		s.scaleUp()
	case unix.SIGTTOU:
		s.scaleDown()
	}
}

// forward sends sig to every live worker's process group.
func (s *Supervisor) forward(sig syscall.Signal) {
	for _, w := range s.byPid {
		unix.Kill(-w.pid, sig)
	}
	s.log.Debug().Str("signal", unix.SignalName(sig)).Int("workers", len(s.byPid)).Msg("signal forwarded")
}

// startCurrent starts the serving worker of a slot that has none.
func (s *Supervisor) startCurrent(sl *slot) {
	if sl.current != nil || sl.candidate != nil || sl.retiring || s.down.active {
		return
	}
	w, err := s.startWorker(sl)
	if err != nil {
		s.log.Error().Err(err).Int("slot", sl.index).Msg("cannot start worker")
		s.afterExit(sl, 1, "start failed: "+err.Error(), 0)
		return
	}
	sl.current = w
}

// startWorker forks one process for sl.
func (s *Supervisor) startWorker(sl *slot) (*worker, error) {
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	files = append(files, s.opt.Listeners...)
	env := append(s.baseEnv[:len(s.baseEnv):len(s.baseEnv)],
		"GM2_INSTANCE="+strconv.Itoa(sl.index),
		"NODE_APP_INSTANCE="+strconv.Itoa(sl.index),
		"GM2_INSTANCES="+strconv.Itoa(s.instances()),
	)
	var mine, theirs []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	if s.opt.PreloadEnv != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("preload pipe: %w", err)
		}
		env = append(env, "GM2_PRELOAD_FD="+strconv.Itoa(len(files)))
		files = append(files, w)
		mine, theirs = append(mine, r), append(theirs, w)
	}
	if s.opt.WaitReady {
		parent, child, err := notify.NodeChannel()
		if err != nil {
			closeAll(mine)
			closeAll(theirs)
			return nil, fmt.Errorf("node IPC channel: %w", err)
		}
		env = append(env, "NODE_CHANNEL_FD="+strconv.Itoa(len(files)), "NODE_CHANNEL_SERIALIZATION_MODE=json")
		files = append(files, child)
		mine, theirs = append(mine, parent), append(theirs, child)
	}
	argv := append([]string{s.opt.Args[0], ExecArg, s.opt.Path}, s.opt.Args...)
	// Its own process group, so that the stop signal reaches what a
	// wrapper (sh -c, npm start) started too.
	sys := &syscall.SysProcAttr{Setpgid: true}
	if s.opt.Foreground && !s.noFg {
		sys.Foreground, sys.Ctty = true, 0
	}
	attr := &os.ProcAttr{Env: env, Files: files, Sys: sys}
	proc, err := os.StartProcess(s.opt.Self, argv, attr)
	if err != nil && sys.Foreground {
		s.noFg = true
		s.log.Warn().Err(err).Msg("cannot give the terminal to the worker; it runs in the background")
		sys.Foreground = false
		proc, err = os.StartProcess(s.opt.Self, argv, attr)
	}
	closeAll(theirs)
	if err != nil {
		closeAll(mine)
		return nil, fmt.Errorf("start %s: %w", s.opt.Path, err)
	}
	w := &worker{
		slot: sl, pid: proc.Pid, proc: proc, gen: s.reload.generation,
		started: time.Now(), state: status.Starting, alive: true,
		listening: map[int]bool{}, closers: mine,
	}
	s.byPid[w.pid] = w
	s.counters.WorkersStarted++
	s.log.Info().Int("slot", sl.index).Int("pid", w.pid).Uint64("generation", w.gen).Msg("worker started")
	if s.opt.PreloadEnv != nil {
		go s.readPreload(w, mine[0])
	}
	if s.opt.WaitReady {
		go s.readNodeIPC(w, mine[len(mine)-1])
	}
	s.armReadiness(w)
	return w, nil
}

// armReadiness sets the timers that make a worker ready when it says
// nothing: after --min-uptime for apps that have no way to say it, and after
// --listen-timeout (with a warning) for apps that should have said it.
func (s *Supervisor) armReadiness(w *worker) {
	if !s.opt.WaitReady {
		w.timers = append(w.timers, s.after(s.opt.MinUptime, func() {
			// A worker whose preload announced itself becomes ready when its
			// servers listen, not by the clock. So does a Node worker whose
			// preload has not spoken yet: a cold or throttled node can take
			// more than --min-uptime to load, and calling it ready before it
			// listens would stop the old worker of a reload too early.
			// --listen-timeout still bounds the wait.
			if w.hello || !w.alive || w.state != status.Starting {
				return
			}
			if s.opt.PreloadEnv != nil && groupRunsNode(w.pid) {
				s.log.Debug().Int("slot", w.slot.index).Int("pid", w.pid).Msg("node worker: ready when its servers listen")
				return
			}
			s.markReady(w, "min-uptime")
		}))
	}
	if s.opt.WaitReady || s.opt.PreloadEnv != nil {
		w.timers = append(w.timers, s.after(s.opt.ListenTimeout, func() {
			if w.alive && w.state == status.Starting {
				s.log.Warn().Int("slot", w.slot.index).Int("pid", w.pid).Dur("listen_timeout", s.opt.ListenTimeout).
					Msg("worker did not report ready in time; treating it as ready")
				s.markReady(w, "listen-timeout")
			}
		}))
	}
}

func (s *Supervisor) markReady(w *worker, how string) {
	if !w.alive || w.state != status.Starting {
		return
	}
	if exited(w.pid) {
		// Its exit is queued behind this event: promoting it would stop
		// the old worker for a replacement that is already dead.
		return
	}
	w.state = status.Ready
	sl := w.slot
	s.log.Info().Int("slot", sl.index).Int("pid", w.pid).Str("by", how).Dur("after", time.Since(w.started)).Msg("worker ready")
	if sl.candidate == w {
		s.promote(sl)
	}
}

// exited tells, without reaping it, whether the child pid has exited.
func exited(pid int) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo != 0
}

// groupRunsNode tells whether a process of the worker's group runs node
// (the app itself, or npm/yarn, which are node too).
func groupRunsNode(pgid int) bool {
	for _, p := range procfs.GroupMembers("/proc", pgid) {
		if strings.HasPrefix(procfs.ExeName("/proc", p), "node") {
			return true
		}
	}
	return false
}

// stop asks a worker to exit: the stop signal to its process group, SIGKILL
// to the group after the kill timeout.
func (s *Supervisor) stop(w *worker, why string) {
	if !w.alive || w.state == status.Draining {
		return
	}
	w.state = status.Draining
	sl := w.slot
	if sl.current == w {
		sl.current = nil
	}
	if sl.candidate == w {
		sl.candidate = nil
	}
	sl.draining = append(sl.draining, w)
	w.stopAt = time.Now()
	unix.Kill(-w.pid, s.opt.StopSignal)
	s.log.Info().Int("slot", sl.index).Int("pid", w.pid).Str("signal", unix.SignalName(s.opt.StopSignal)).Str("why", why).Msg("stopping worker")
	w.timers = append(w.timers, s.after(s.opt.KillTimeout, func() {
		if w.alive {
			s.log.Warn().Int("slot", sl.index).Int("pid", w.pid).Dur("kill_timeout", s.opt.KillTimeout).Msg("worker still running after the kill timeout; sending SIGKILL")
			w.killed = true
			if s.down.active {
				s.down.killedAny = true
			}
			unix.Kill(-w.pid, unix.SIGKILL)
		}
	}))
}

func (s *Supervisor) onExits(batch []reaper.Exit) {
	for _, e := range batch {
		w := s.byPid[e.Pid]
		if w == nil {
			s.counters.OrphansReaped++
			continue
		}
		s.onWorkerExit(w, e)
	}
	s.recheckLingering()
}

func (s *Supervisor) onWorkerExit(w *worker, e reaper.Exit) {
	delete(s.byPid, w.pid)
	w.alive = false
	for _, t := range w.timers {
		t.Stop()
	}
	for _, f := range w.closers {
		f.Close()
	}
	w.proc.Release()
	sl := w.slot
	lived := time.Since(w.started)
	code := e.Code()
	ev := s.log.Info()
	if code != 0 && w.state != status.Draining {
		ev = s.log.Warn()
	}
	ev.Int("slot", sl.index).Int("pid", w.pid).Str("status", e.String()).Int("code", code).Dur("lived", lived).Msg("worker exited")
	s.stopGroupRemains(w)

	switch {
	case w.state == status.Draining:
		sl.draining = removeWorker(sl.draining, w)
		if sl.retiring && sl.current == nil && sl.candidate == nil && len(sl.draining) == 0 {
			s.removeSlot(sl)
		}
	case sl.candidate == w:
		sl.candidate = nil
		s.candidateFailed(sl, e.String())
	case sl.current == w:
		sl.current = nil
		if sl.candidate != nil {
			// Its replacement is on the way and takes over when ready.
			sl.lastExit = e.String()
			if code != 0 && s.firstFailure == 0 {
				s.firstFailure = code
			}
			s.log.Warn().Int("slot", sl.index).Int("candidate", sl.candidate.pid).Msg("worker exited during its replacement; the new one takes over when ready")
			return
		}
		s.afterExit(sl, code, e.String(), lived)
	}
}

// stopGroupRemains deals with what is left of a worker's process group once
// its leader is gone. After a stop, the rest of the group got the stop
// signal too and is draining (the app behind npm or sh -c): gm2-init waits
// for it, up to the kill timeout counted from the stop signal. After a crash,
// the leftovers would go on serving the old code next to the replacement:
// they get the stop signal now. Either way the group is SIGKILLed when its
// time is up, and shutdown waits for it as for a worker.
func (s *Supervisor) stopGroupRemains(w *worker) {
	pgid := w.pid
	if unix.Kill(-pgid, 0) == unix.ESRCH {
		return
	}
	deadline := time.Now().Add(s.opt.KillTimeout)
	if w.state == status.Draining {
		deadline = w.stopAt.Add(s.opt.KillTimeout)
		s.log.Debug().Int("slot", w.slot.index).Int("pgid", pgid).Msg("the worker's group drains on after its leader exited")
	} else {
		s.log.Warn().Int("slot", w.slot.index).Int("pgid", pgid).Msg("processes left in the exited worker's group; stopping them")
		unix.Kill(-pgid, s.opt.StopSignal)
	}
	g := &group{pgid: pgid, slot: w.slot.index}
	s.lingering[pgid] = g
	g.timer = s.after(time.Until(deadline), func() { s.killGroup(g) })
}

// killGroup SIGKILLs a lingering group whose time is up.
func (s *Supervisor) killGroup(g *group) {
	if s.lingering[g.pgid] != g {
		return
	}
	if unix.Kill(-g.pgid, 0) == unix.ESRCH {
		delete(s.lingering, g.pgid)
		return
	}
	if g.killed {
		// SIGKILL cannot be ignored; the members are gone or about to be
		// reaped. Stop waiting for them.
		delete(s.lingering, g.pgid)
		return
	}
	s.log.Warn().Int("slot", g.slot).Int("pgid", g.pgid).Dur("kill_timeout", s.opt.KillTimeout).
		Msg("processes of a stopped worker's group still running after the kill timeout; sending SIGKILL")
	unix.Kill(-g.pgid, unix.SIGKILL)
	g.killed = true
	if s.down.active {
		s.down.killedAny = true
	}
	g.timer = s.after(time.Second, func() { s.killGroup(g) })
}

// recheckLingering forgets the groups whose last member has been reaped.
func (s *Supervisor) recheckLingering() {
	for pgid, g := range s.lingering {
		if unix.Kill(-pgid, 0) == unix.ESRCH {
			g.timer.Stop()
			delete(s.lingering, pgid)
		}
	}
}

// afterExit decides what follows the exit of a slot's serving worker.
func (s *Supervisor) afterExit(sl *slot, code int, desc string, lived time.Duration) {
	sl.lastExit = desc
	if code != 0 && s.firstFailure == 0 {
		s.firstFailure = code
	}
	if s.down.active || sl.retiring {
		if sl.retiring && len(sl.draining) == 0 {
			s.removeSlot(sl)
		}
		return
	}
	if !s.opt.Restart.Restarts(code) {
		sl.state = status.Stopped
		s.log.Info().Int("slot", sl.index).Str("restart", string(s.opt.Restart)).Msg("slot stopped; not restarted")
		return
	}
	if lived < s.opt.MinUptime {
		sl.consecutive++
	} else {
		sl.consecutive = 0
	}
	if sl.consecutive > s.opt.MaxRestarts {
		sl.state = status.Errored
		s.log.Error().Int("slot", sl.index).Int("max_restarts", s.opt.MaxRestarts).Str("last_exit", desc).
			Msg("worker keeps crashing on start; slot errored and not restarted")
		return
	}
	d := backoff(max(1, sl.consecutive))
	sl.state = status.Backoff
	sl.restarts++
	s.counters.Restarts++
	s.log.Info().Int("slot", sl.index).Dur("delay", d).Int("consecutive", sl.consecutive).Msg("restarting worker")
	if sl.restart != nil {
		sl.restart.Stop()
	}
	sl.restart = s.after(d, func() {
		sl.restart = nil
		if sl.state == status.Backoff {
			sl.state = status.Starting
			s.startCurrent(sl)
		}
	})
}

// tellLifecycle reports the start's end and changes of the ready count.
func (s *Supervisor) tellLifecycle() {
	lc := s.opt.Lifecycle
	if lc == nil || s.down.active {
		return
	}
	ready, total, settled := 0, 0, true
	for _, sl := range s.slots {
		if sl.retiring {
			continue
		}
		total++
		switch {
		case sl.current != nil && sl.current.state == status.Ready:
			ready++
		case sl.state == status.Errored || sl.state == status.Stopped:
		default:
			settled = false
		}
	}
	if ready != s.lastReady || total != s.lastTotal {
		s.lastReady, s.lastTotal = ready, total
		lc.Status(ready, total)
	}
	if !s.started && settled {
		s.started = true
		lc.Ready(ready, total)
	}
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
	pending, errored := false, 0
	for _, sl := range s.slots {
		switch {
		case sl.current != nil || sl.candidate != nil || len(sl.draining) > 0 || sl.restart != nil || sl.reloadRetry != nil:
			pending = true
		case sl.state == status.Errored:
			errored++
		}
	}
	if pending {
		return
	}
	if errored > 0 && errored == len(s.slots) {
		s.log.Error().Msg("every slot has errored; shutting down")
		s.beginShutdown(1)
		s.finished = len(s.byPid) == 0 && len(s.lingering) == 0
		return
	}
	if len(s.lingering) > 0 {
		return // what the last workers left behind is still draining
	}
	if errored == 0 || s.opt.Restart != appspec.Always {
		// --restart never|on-failure: every slot ended; the exit status is
		// the first failure's (exitCode).
		s.finished = true
	}
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
	s.reload.queue, s.reload.pending = nil, false
	if s.reload.inProgress {
		// The pass ends here; its replacements are stopped with the rest.
		s.reload.failed = "interrupted by shutdown"
		s.reload.active = 0
		s.finishReload()
	}
	for _, sl := range s.slots {
		if sl.restart != nil {
			sl.restart.Stop()
			sl.restart = nil
		}
		if sl.reloadRetry != nil {
			sl.reloadRetry.Stop()
			sl.reloadRetry = nil
		}
	}
	if s.opt.ShutdownDelay > 0 && code < 0 && len(s.byPid) > 0 {
		s.log.Info().Dur("shutdown_delay", s.opt.ShutdownDelay).Msg("not ready any more; workers keep serving until the shutdown delay ends")
		s.down.delay = s.after(s.opt.ShutdownDelay, s.stopAll)
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
	for _, w := range s.byPid {
		s.stop(w, "shutdown")
	}
}

// sweep runs after the last worker is gone: with PID 1, every process left in
// the namespace (double-forked daemons, orphans) gets SIGTERM, a short grace,
// then SIGKILL, and is reaped, so that nothing is left to the kernel's
// SIGKILL when PID 1 exits. Without PID 1 the same is done to gm2-init's
// direct children (it is their subreaper).
func (s *Supervisor) sweep(exits <-chan []reaper.Exit) {
	if !reaper.SignalAll(unix.SIGTERM) {
		return
	}
	s.log.Info().Msg("stopping the processes left behind by the workers")
	grace := min(s.opt.KillTimeout, 2*time.Second)
	if s.waitEmpty(exits, grace) {
		return
	}
	s.log.Warn().Msg("processes left after the grace period; sending SIGKILL")
	reaper.SignalAll(unix.SIGKILL)
	if !s.waitEmpty(exits, 5*time.Second) {
		s.log.Error().Msg("processes still present after SIGKILL")
	}
}

// waitEmpty waits, reaping, until no process is left to stop or d has
// passed. Exits reach it through the reaper; the slow re-check covers
// processes that are not gm2-init's to reap (a `docker exec` session).
func (s *Supervisor) waitEmpty(exits <-chan []reaper.Exit, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	recheck := time.NewTicker(250 * time.Millisecond)
	defer recheck.Stop()
	for reaper.SignalAll(0) {
		select {
		case b := <-exits:
			s.counters.OrphansReaped += uint64(len(b))
		case <-recheck.C:
		case <-deadline.C:
			return !reaper.SignalAll(0)
		}
	}
	return true
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
