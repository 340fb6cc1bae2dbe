package spawn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/status"
)

// Supervisor runs the workers. Create it with New, run it with Run.
type Supervisor struct {
	opt   Options
	log   zerolog.Logger
	sys   System
	clock Clock

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
	apps      []*app
	byPid     map[int]*worker
	lingering []*remains // trees that outlived their worker
	// recent holds the pids of workers reaped lately: a notify message
	// such a worker sent just before it exited (STOPPING=1) is processed
	// after its exit and is no spoofing.
	recent    map[int]time.Time
	counters  status.Counters
	down      shutdownState
	finished  bool
	startedAt time.Time
	memTimer  Timer
	// firstFailure is the exit code of the first worker that failed, for
	// --restart never|on-failure.
	firstFailure int
	// started is set once the start has finished (Lifecycle.Ready);
	// lastReady/lastTotal are the counts last given to Lifecycle.Status.
	started              bool
	lastReady, lastTotal int
	// reloadWaiters are the `gm2-init reload` commands waiting for passes.
	reloadWaiters []*reloadWaiter
	// spoofed rate-limits the warning about notify messages from
	// processes that are no workers; spoofTimer reports the count a
	// flood that stopped left held back.
	spoofed    *notify.Limiter
	spoofTimer Timer

	// afterEvent, when set (tests), runs after every event once the
	// supervisor has settled; passEnded, when each reload pass ends.
	afterEvent func()
	passEnded  func(*app)
	// snapshotWait is the constant of that name; the tests of a stuck
	// loop shorten it.
	snapshotWait time.Duration
}

// New prepares a supervisor; nothing is started before Run (or, in tests,
// Begin).
func New(opt Options) *Supervisor {
	s := &Supervisor{
		opt:    opt,
		log:    opt.Log,
		events: make(chan func(), 64),
		done:   make(chan struct{}),
		asks:   make(chan chan struct{}),
		byPid:  map[int]*worker{},
		recent: map[int]time.Time{},

		snapshotWait: snapshotWait,
	}
	s.sys = opt.System
	if s.sys == nil {
		self, err := SelfExecutable("/proc")
		if err != nil {
			self = "/proc/self/exe"
		}
		s.sys = NewSystem(self, "/proc")
	}
	s.clock = opt.Clock
	if s.clock == nil {
		s.clock = loopClock{post: s.post}
	}
	if s.opt.MemoryCheckInterval <= 0 {
		s.opt.MemoryCheckInterval = 30 * time.Second
	}
	s.spoofed = notify.NewLimiter(spoofInterval, 0)
	s.down.exitCode = -1
	s.counters.Reloads = map[string]uint64{"ok": 0, "failed": 0}
	s.startedAt = s.clock.Now()
	notifyEnv := ""
	if opt.Notify != nil {
		notifyEnv = opt.Notify.Env()
	}
	for i := range opt.Apps {
		a := &app{spec: &s.opt.Apps[i]}
		a.name = a.spec.Name
		a.baseEnv = appBaseEnv(opt.Env, a.spec, notifyEnv)
		for j := 0; j < a.spec.Count; j++ {
			a.slots = append(a.slots, &slot{app: a, index: j, state: status.Starting})
		}
		s.apps = append(s.apps, a)
	}
	s.publish()
	return s
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
		ctx, cancel := context.WithTimeout(context.Background(), s.snapshotWait)
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

// call runs fn in the loop and waits for it, bounded: the control commands
// (gm2-init reload|scale) use it.
func (s *Supervisor) call(fn func() error) error {
	res := make(chan error, 1)
	select {
	case s.events <- func() { res <- fn() }:
	case <-s.done:
		return errors.New("gm2-init is stopping")
	case <-time.After(5 * time.Second):
		return errors.New("the supervisor loop did not take the command within 5 s")
	}
	select {
	case err := <-res:
		return err
	case <-s.done:
		if err, ok := sentBefore(res); ok {
			return err
		}
		return errors.New("gm2-init is stopping")
	case <-time.After(5 * time.Second):
		return errors.New("the supervisor loop did not answer within 5 s")
	}
}

// Run starts the workers and supervises them until gm2-init must exit; it
// returns the exit status. sigs carries every signal gm2-init handles except
// SIGCHLD, which drives the reaper whose batches arrive on exits.
func (s *Supervisor) Run(sigs <-chan os.Signal, exits <-chan []reaper.Exit) int {
	defer close(s.done)
	if s.opt.Notify != nil {
		go s.readNotify()
	}
	s.Begin()
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
		s.settle()
	}
	s.publish()
	code := s.exitCode()
	s.sweep(exits)
	s.log.Info().Int("exit_code", code).Msg("gm2-init exiting")
	return code
}

// Begin starts every slot's first worker. Run calls it; the unit tests call
// it directly and then feed events one by one.
func (s *Supervisor) Begin() {
	for _, a := range s.apps {
		a.logStart(s)
		for _, sl := range a.slots {
			s.startCurrent(sl)
		}
	}
	if s.memoryLimited() {
		s.memTimer = s.clock.Every(s.opt.MemoryCheckInterval, s.onMemoryCheck)
	}
	s.settle()
}

// settle runs after every event: it decides whether gm2-init is done and
// tells whoever started gm2-init what changed.
func (s *Supervisor) settle() {
	s.checkEnd()
	s.tellLifecycle()
	if s.afterEvent != nil {
		s.afterEvent()
	}
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

// spoofInterval is how often a sender that is no worker is warned about.
const spoofInterval = 10 * time.Second

func (s *Supervisor) onNotify(m notify.Message) {
	w := s.byPid[m.Pid]
	if w == nil {
		if pid, ok := s.sys.WorkerOf(m.Pid, func(p int) bool { return s.byPid[p] != nil }); ok {
			w = s.byPid[pid]
		}
	}
	if w == nil {
		if _, ok := s.recent[m.Pid]; ok {
			// A worker's last words (STOPPING=1), read after its exit.
			return
		}
		s.warnSpoof(m.Pid)
		return
	}
	if m.HasStatus {
		w.statusText = m.Status
	}
	if m.Stopping {
		s.log.Debug().Str("app", w.slot.app.name).Int("slot", w.slot.index).Int("pid", w.pid).Msg("worker reports STOPPING=1")
	}
	if m.Ready {
		w.saidReady = true
		s.markReady(w, "READY=1")
	}
}

// warnSpoof logs a dropped notify message: the first of a sender at once,
// then at most one line per spoofInterval with the count since (see
// notify.Limiter); a flood that stopped has its count logged at the end of
// its interval.
func (s *Supervisor) warnSpoof(pid int) {
	if r, ok := s.spoofed.Note(pid, s.clock.Now()); ok {
		s.logSpoof(r)
	}
	if due, ok := s.spoofed.Due(); ok && s.spoofTimer == nil {
		s.spoofTimer = s.clock.AfterFunc(due.Sub(s.clock.Now()), s.flushSpoof)
	}
}

func (s *Supervisor) flushSpoof() {
	s.spoofTimer = nil
	for _, r := range s.spoofed.Flush(s.clock.Now()) {
		s.logSpoof(r)
	}
	if due, ok := s.spoofed.Due(); ok {
		s.spoofTimer = s.clock.AfterFunc(due.Sub(s.clock.Now()), s.flushSpoof)
	}
}

func (s *Supervisor) logSpoof(r notify.Report) {
	s.log.Warn().Int("sender_pid", r.Sender).Uint64("datagrams", r.Count).
		Msg("notify message from a process that is not a worker nor a descendant of one; dropped")
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
		if s.down.active {
			if !s.down.hupSaid {
				s.down.hupSaid = true
				s.log.Warn().Msg("SIGHUP ignored: gm2-init is shutting down")
			}
			return
		}
		for _, a := range s.apps {
			s.startReload(a, "SIGHUP")
		}
	case unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH:
		s.forward(sig.(syscall.Signal))
	case unix.SIGTTIN, unix.SIGTTOU:
		a := s.signalApp()
		n := a.instances() + 1
		if sig == unix.SIGTTOU {
			n -= 2
		}
		if err := s.scale(a, n, unix.SignalName(sig.(syscall.Signal))); err != nil {
			s.log.Warn().Str("app", a.name).Msg(unix.SignalName(sig.(syscall.Signal)) + " ignored: " + err.Error())
		}
	}
}

// signalApp is the app TTIN and TTOU scale: the first in cluster mode.
func (s *Supervisor) signalApp() *app {
	for _, a := range s.apps {
		if a.spec.ExecMode != "fork" {
			return a
		}
	}
	return s.apps[0]
}

// forward sends sig to every live worker's tree.
func (s *Supervisor) forward(sig syscall.Signal) {
	for _, w := range s.byPid {
		s.sys.Signal(w.proc, sig)
	}
	s.log.Debug().Str("signal", unix.SignalName(sig)).Int("workers", len(s.byPid)).Msg("signal forwarded")
}

// Reload runs a rolling reload of the named apps (all when none is named),
// the same pass as SIGHUP: `gm2-init reload [APP…]`. It returns once the pass
// that includes this request has ended in every app (an error says which
// failed), or when ctx ends — which ends the wait, not the reload.
func (s *Supervisor) Reload(ctx context.Context, apps []string) error {
	done := make(chan error, 1)
	err := s.call(func() error { return s.reloadCommand(apps, done) })
	if err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the reload goes on; stopped waiting for it: %w", ctx.Err())
	case <-s.done:
		if err, ok := sentBefore(done); ok {
			return err
		}
		return errors.New("gm2-init stopped before the reload ended")
	}
}

// sentBefore returns the answer the loop sent on ch (buffered) before it
// ended, if it sent one: a caller that sees the loop gone may have been
// answered just before, and that answer is then already there.
func sentBefore(ch chan error) (error, bool) {
	select {
	case err := <-ch:
		return err, true
	default:
		return nil, false
	}
}

// reloadCommand is Reload in the loop: the named apps (all when none is
// named) start or queue a pass, whose end is told on done.
func (s *Supervisor) reloadCommand(names []string, done chan error) error {
	targets, err := s.appsNamed(names)
	if err != nil {
		return err
	}
	return s.requestReload(targets, done)
}

// requestReload starts (or queues) a pass of each target for `gm2-init
// reload`, whose answer goes to done once every one of them ended. The
// waiter is in place before the passes start: a pass can end within
// startReload (every start failing at once).
func (s *Supervisor) requestReload(targets []*app, done chan error) error {
	if s.down.active {
		return errors.New("gm2-init is shutting down")
	}
	wt := &reloadWaiter{want: map[*app]uint64{}, done: done}
	for _, a := range targets {
		// The pass that serves this request: the next one, whether it
		// starts now or follows the pass under way.
		wt.want[a] = a.reload.generation + 1
	}
	s.reloadWaiters = append(s.reloadWaiters, wt)
	for _, a := range targets {
		s.startReload(a, "gm2-init reload")
	}
	return nil
}

// reloadWaiter is a `gm2-init reload` waiting for its passes to end.
type reloadWaiter struct {
	want   map[*app]uint64 // the generation of the pass that serves it
	failed []string
	done   chan error
}

// reloadEnded tells the waiters of app a that its pass ended with result.
func (s *Supervisor) reloadEnded(a *app, result string) {
	out := s.reloadWaiters[:0]
	for _, wt := range s.reloadWaiters {
		if gen, ok := wt.want[a]; ok && a.reload.generation >= gen {
			delete(wt.want, a)
			if result != "ok" {
				wt.failed = append(wt.failed, a.name+": "+result)
			}
		}
		if len(wt.want) > 0 {
			out = append(out, wt)
			continue
		}
		if len(wt.failed) > 0 {
			// "api: failed: …; web: failed: …": the caller says it
			// was a reload (gm2-init reload: …).
			wt.done <- errors.New(strings.Join(wt.failed, "; "))
		} else {
			wt.done <- nil
		}
	}
	s.reloadWaiters = out
}

// Scale sets the number of instances of an app (`gm2-init scale APP N`), or
// changes it by n when delta is set (`+N` / `-N`). The count is computed in
// the loop, so that two commands at once add up. It returns the count
// before and after, once the change is under way.
func (s *Supervisor) Scale(_ context.Context, name string, n int, delta bool) (int, int, error) {
	res := make(chan [2]int, 1)
	err := s.call(func() error {
		from, to, err := s.scaleCommand(name, n, delta)
		res <- [2]int{from, to}
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	r := <-res
	return r[0], r[1], nil
}

// scaleCommand is Scale in the loop.
func (s *Supervisor) scaleCommand(name string, n int, delta bool) (from, to int, err error) {
	targets, err := s.appsNamed([]string{name})
	if err != nil {
		return 0, 0, err
	}
	a := targets[0]
	from, to = a.instances(), n
	if delta {
		// A raw request may carry any int: from + n must not wrap (a
		// delta past the range is said as the first count past it).
		to = from + min(max(n, -appspec.MaxWorkers-1), appspec.MaxWorkers+1)
	}
	if to < 1 || to > appspec.MaxWorkers {
		return from, to, fmt.Errorf("%d instances is out of range (1 to %d; it has %d)", to, appspec.MaxWorkers, from)
	}
	return from, to, s.scale(a, to, "gm2-init scale")
}

// appsNamed returns the apps with the given names, or every app.
func (s *Supervisor) appsNamed(names []string) ([]*app, error) {
	if len(names) == 0 {
		return s.apps, nil
	}
	var out []*app
	for _, n := range names {
		found := false
		for _, a := range s.apps {
			if a.name == n {
				out, found = append(out, a), true
			}
		}
		if !found {
			known := make([]string, len(s.apps))
			for i, a := range s.apps {
				known[i] = a.name
			}
			return nil, fmt.Errorf("no app named %q (apps: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// totalInstances is the wanted worker count over every app.
func (s *Supervisor) totalInstances() int {
	n := 0
	for _, a := range s.apps {
		n += a.instances()
	}
	return n
}
