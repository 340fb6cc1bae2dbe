package spawn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/status"
)

// The unit tests drive the real supervisor code one event at a time, with a
// fake clock and fake processes: no goroutine, no sleep, no process. After
// every event the harness checks the invariants of the package doc.

// ---- fake clock ---------------------------------------------------------

type fakeClock struct {
	now    time.Time
	seq    int
	timers []*fakeTimer
	// fire runs a due timer's function as one supervisor event.
	fire func(func())
}

type fakeTimer struct {
	at   time.Time
	seq  int
	fn   func()
	done bool
}

func (t *fakeTimer) Stop() bool {
	if t.done {
		return false
	}
	t.done = true
	return true
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.seq++
	t := &fakeTimer{at: c.now.Add(max(d, 0)), seq: c.seq, fn: f}
	c.timers = append(c.timers, t)
	return t
}

// Every re-arms a fake timer at each expiry, before running f (as the
// real ticker's next expiry is already set when f runs).
func (c *fakeClock) Every(d time.Duration, f func()) Timer {
	e := &fakeEvery{}
	var arm func()
	arm = func() {
		e.t = c.AfterFunc(d, func() {
			arm()
			f()
		}).(*fakeTimer)
	}
	arm()
	return e
}

// fakeEvery is fakeClock's periodic timer: Stop stops the pending expiry.
type fakeEvery struct{ t *fakeTimer }

func (e *fakeEvery) Stop() bool { return e.t.Stop() }

// pending counts the timers that have neither fired nor been stopped.
func (c *fakeClock) pending() int {
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// next returns the earliest pending timer due at or before until.
func (c *fakeClock) next(until time.Time) *fakeTimer {
	var best *fakeTimer
	for _, t := range c.timers {
		if t.done || t.at.After(until) {
			continue
		}
		if best == nil || t.at.Before(best.at) || (t.at.Equal(best.at) && t.seq < best.seq) {
			best = t
		}
	}
	return best
}

// advance moves the clock forward by d, firing every timer that falls due,
// in order, each as one event.
func (c *fakeClock) advance(d time.Duration) {
	until := c.now.Add(d)
	for {
		t := c.next(until)
		if t == nil {
			break
		}
		t.done = true
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.fire(t.fn)
	}
	c.now = until
	live := c.timers[:0]
	for _, t := range c.timers {
		if !t.done {
			live = append(live, t)
		}
	}
	c.timers = live
}

// ---- fake system --------------------------------------------------------

type fakeProc struct {
	pid      int
	spec     *StartSpec
	signals  []syscall.Signal
	released bool
	exited   bool // exited, not reaped yet (Exited)
	remains  bool // its tree outlives it (Remains)
	node     bool // RunsNode
	memory   int64
	ports    PortCheck // what CheckPorts finds
}

func (p *fakeProc) Pid() int { return p.pid }

type fakeSystem struct {
	h       *harness
	nextPid int
	procs   map[int]*fakeProc
	order   []*fakeProc
	// failStarts makes the next n starts fail.
	failStarts int
	// ancestors maps a non-worker pid to the worker it descends from.
	ancestors map[int]int
	// others counts SignalOthers calls by signal; othersAlive is what it
	// reports.
	others      map[syscall.Signal]int
	othersAlive bool
	// all counts SignalAll calls by signal (0 included); allAlive is
	// whether any process is left for the sweep, until it gets allDieOn.
	all      map[syscall.Signal]int
	allAlive bool
	allDieOn syscall.Signal
	// onStart, when set, hears of every start (from the loop).
	onStart func(pid int)
	// node makes every new worker run node.
	node bool
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{nextPid: 100, procs: map[int]*fakeProc{}, ancestors: map[int]int{}, others: map[syscall.Signal]int{}, all: map[syscall.Signal]int{}}
}

func (f *fakeSystem) Start(spec *StartSpec) (Proc, error) {
	if f.h != nil && f.h.s != nil && f.h.s.down.active {
		f.h.t.Errorf("invariant 7: worker of %s[%d] started after the shutdown began", spec.App, spec.Slot)
	}
	if f.failStarts > 0 {
		f.failStarts--
		return nil, errors.New("fork/exec: resource temporarily unavailable")
	}
	f.nextPid++
	p := &fakeProc{pid: f.nextPid, spec: spec, node: f.node}
	f.procs[p.pid] = p
	f.order = append(f.order, p)
	if f.onStart != nil {
		f.onStart(p.pid)
	}
	return p, nil
}

func (f *fakeSystem) Signal(pr Proc, sig syscall.Signal) {
	p := pr.(*fakeProc)
	p.signals = append(p.signals, sig)
}
func (f *fakeSystem) Remains(pr Proc) bool { return pr.(*fakeProc).remains }
func (f *fakeSystem) Exited(pr Proc) bool  { return pr.(*fakeProc).exited }
func (f *fakeSystem) RunsNode(pr Proc) bool {
	return pr.(*fakeProc).node
}
func (f *fakeSystem) Release(pr Proc) { pr.(*fakeProc).released = true }
func (f *fakeSystem) WorkerOf(pid int, isWorker func(int) bool) (int, bool) {
	if isWorker(pid) {
		return pid, true
	}
	w, ok := f.ancestors[pid]
	return w, ok && isWorker(w)
}
func (f *fakeSystem) SignalOthers(sig syscall.Signal, exclude []Proc) bool {
	f.others[sig]++
	return f.othersAlive
}
func (f *fakeSystem) SignalAll(sig syscall.Signal) bool {
	f.all[sig]++
	alive := f.allAlive
	if sig != 0 && sig == f.allDieOn {
		f.allAlive = false
	}
	return alive
}
func (f *fakeSystem) Memory(pr Proc) (int64, error) { return pr.(*fakeProc).memory, nil }
func (f *fakeSystem) CheckPorts(pr Proc, passed []*sockets.Listener) PortCheck {
	return pr.(*fakeProc).ports
}

// ---- lifecycle recorder --------------------------------------------------

type lifecycleLog struct{ calls []string }

func (l *lifecycleLog) Ready(r, t int)  { l.calls = append(l.calls, fmt.Sprintf("ready %d/%d", r, t)) }
func (l *lifecycleLog) Reloading()      { l.calls = append(l.calls, "reloading") }
func (l *lifecycleLog) Stopping()       { l.calls = append(l.calls, "stopping") }
func (l *lifecycleLog) Status(r, t int) { l.calls = append(l.calls, fmt.Sprintf("status %d/%d", r, t)) }

// ---- harness ------------------------------------------------------------

type harness struct {
	t     *testing.T
	s     *Supervisor
	sys   *fakeSystem
	clk   *fakeClock
	life  *lifecycleLog
	logs  bytes.Buffer
	prev  map[*slot]slotView // the slots as of the previous event
	exits map[int]bool       // pids the test made exit in the current event
	// loopExits are the pids whose exit a loopRun test sent through Run's
	// channel: the batch is applied in an event of Run's, not the test's.
	loopExits map[int]bool
}

// slotView is what the invariant checks remember of a slot between events.
type slotView struct {
	current   *worker
	ready     bool
	saidReady bool
}

// testApp returns an app with the defaults of the command line.
func testApp(name string, n int) App {
	return App{
		App: appspec.App{
			Name: name, Command: []string{name}, Path: "/bin/" + name,
			ExecMode: appspec.Cluster, StopSignal: unix.SIGTERM, KillTimeout: 8 * time.Second,
			Restart: appspec.Always, MinUptime: time.Second, MaxRestarts: 16,
			ListenTimeout: 10 * time.Second, ReloadBatch: 1, MinReady: 1,
		},
		Count: n,
	}
}

// newHarness builds a supervisor over fakes and starts it (Begin).
func newHarness(t *testing.T, opt Options) *harness {
	t.Helper()
	h := buildHarness(t, opt)
	h.s.Begin()
	return h
}

// buildHarness builds a supervisor over fakes; nothing is started yet.
func buildHarness(t *testing.T, opt Options) *harness {
	t.Helper()
	h := &harness{t: t, sys: newFakeSystem(), life: &lifecycleLog{}, exits: map[int]bool{}, loopExits: map[int]bool{}}
	h.sys.h = h
	h.clk = &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	h.clk.fire = func(fn func()) { h.event(fn) }
	opt.System, opt.Clock = h.sys, h.clk
	if opt.Lifecycle == nil {
		opt.Lifecycle = h.life
	}
	opt.Log = zerolog.New(&h.logs)
	if opt.Env == nil {
		opt.Env = []string{"PATH=/bin", "GM2_INSTANCE=7", "LISTEN_FDS=9"}
	}
	h.s = New(opt)
	h.s.afterEvent = h.check
	h.s.passEnded = h.checkPass
	return h
}

// event runs fn as one supervisor event, then lets it settle.
func (h *harness) event(fn func()) {
	h.t.Helper()
	fn()
	h.s.settle()
	h.exits = map[int]bool{}
}

// reloadCommand sends `gm2-init reload` (every app) as one event and
// returns the channel its answer comes on.
func (h *harness) reloadCommand() chan error {
	h.t.Helper()
	done := make(chan error, 1)
	h.event(func() {
		if err := h.s.requestReload(h.s.apps, done); err != nil {
			h.t.Fatal(err)
		}
	})
	return done
}

// worker returns the live worker with pid.
func (h *harness) worker(pid int) *worker {
	h.t.Helper()
	w := h.s.byPid[pid]
	if w == nil {
		h.t.Fatalf("no live worker with pid %d", pid)
	}
	return w
}

// slotOf returns slot i of the first app (or the named one).
func (h *harness) slot(i int, app ...string) *slot {
	h.t.Helper()
	a := h.s.apps[0]
	if len(app) > 0 {
		as, err := h.s.appsNamed(app)
		if err != nil {
			h.t.Fatal(err)
		}
		a = as[0]
	}
	if i >= len(a.slots) {
		h.t.Fatalf("app %s has %d slots, no slot %d", a.name, len(a.slots), i)
	}
	return a.slots[i]
}

// pid of slot i's current (or candidate with cand) worker.
func (h *harness) pid(i int, app ...string) int {
	h.t.Helper()
	sl := h.slot(i, app...)
	if sl.current == nil {
		h.t.Fatalf("slot %d has no current worker (state %s)", i, sl.state)
	}
	return sl.current.pid
}

func (h *harness) candidatePid(i int, app ...string) int {
	h.t.Helper()
	sl := h.slot(i, app...)
	if sl.candidate == nil {
		h.t.Fatalf("slot %d has no candidate (state %s)", i, sl.state)
	}
	return sl.candidate.pid
}

// exit makes the processes exit with status code (≥ 0) or killed by the
// signal -code, reaped in one batch.
func (h *harness) exit(code int, pids ...int) {
	h.t.Helper()
	var batch []reaper.Exit
	for _, pid := range pids {
		ws := unix.WaitStatus(code << 8)
		if code < 0 {
			ws = unix.WaitStatus(-code)
		}
		batch = append(batch, reaper.Exit{Pid: pid, Status: ws})
		h.exits[pid] = true
		if p := h.sys.procs[pid]; p != nil {
			p.exited = true
		}
	}
	h.event(func() { h.s.onExits(batch) })
}

func (h *harness) signal(sig syscall.Signal) {
	h.t.Helper()
	h.event(func() { h.s.onSignal(sig) })
}

func (h *harness) notify(pid int, datagram string) {
	h.t.Helper()
	m := notify.Parse([]byte(datagram))
	m.Pid = pid
	h.event(func() { h.s.onNotify(m) })
}

func (h *harness) ready(pids ...int) {
	h.t.Helper()
	for _, pid := range pids {
		h.notify(pid, "READY=1")
	}
}

func (h *harness) preload(pid int, kind string, fd int) {
	h.t.Helper()
	w := h.worker(pid)
	h.event(func() { h.s.onPreload(w, preload.Event{Kind: kind, FD: fd, Pid: pid}) })
}

// shared is the preload's line for a server of pid listening on the
// socket shared on demand with registry id.
func (h *harness) shared(pid, id int) {
	h.t.Helper()
	w := h.worker(pid)
	h.event(func() { h.s.onPreload(w, preload.Event{Kind: preload.KindShared, ID: id, Pid: pid}) })
}

func (h *harness) nodeReady(pid int) {
	h.t.Helper()
	w := h.worker(pid)
	h.event(func() { h.s.onNodeReady(w) })
}

func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clk.advance(d)
}

// snapshot publishes and returns a snapshot (no loop runs in these tests).
func (h *harness) snapshot() *status.Snapshot {
	h.s.publish()
	return h.s.snap.Load()
}

// started returns the pids started so far, in order.
func (h *harness) started() []int {
	var out []int
	for _, p := range h.sys.order {
		out = append(out, p.pid)
	}
	return out
}

// lastStarted returns the pid of the most recent start.
func (h *harness) lastStarted() int {
	h.t.Helper()
	if len(h.sys.order) == 0 {
		h.t.Fatal("nothing started")
	}
	return h.sys.order[len(h.sys.order)-1].pid
}

// signals returns what the system was asked to send to pid.
func (h *harness) signals(pid int) []syscall.Signal { return h.sys.procs[pid].signals }

// lines returns the log lines with that message.
func (h *harness) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, raw := range bytes.Split(h.logs.Bytes(), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var l map[string]any
		if err := json.Unmarshal(raw, &l); err != nil {
			h.t.Fatalf("log line %q: %v", raw, err)
		}
		if l["message"] == msg {
			out = append(out, l)
		}
	}
	return out
}

func (h *harness) count(msg string) int { return len(h.lines(msg)) }

func (h *harness) wantState(i int, st status.State, app ...string) {
	h.t.Helper()
	if got := h.slot(i, app...).state; got != st {
		h.t.Fatalf("slot %d: state %s, want %s\n%s", i, got, st, h.logs.String())
	}
}

// readyPids returns the pids of ready current workers, sorted.
func (h *harness) readyPids() []int {
	var out []int
	for _, a := range h.s.apps {
		for _, sl := range a.slots {
			if sl.current != nil && sl.current.state == status.Ready {
				out = append(out, sl.current.pid)
			}
		}
	}
	sort.Ints(out)
	return out
}

// startAll readies every slot of a wait-ready app, or lets --min-uptime pass.
func (h *harness) startAll() {
	h.t.Helper()
	for _, a := range h.s.apps {
		for _, sl := range a.slots {
			if sl.current != nil && a.spec.WaitReady {
				h.ready(sl.current.pid)
			}
		}
	}
	h.advance(2 * time.Second)
	for _, a := range h.s.apps {
		for _, sl := range a.slots {
			if sl.current == nil || sl.current.state != status.Ready {
				h.t.Fatalf("after start: %s slot %d not ready (%s)", a.name, sl.index, sl.state)
			}
		}
	}
}

// ---- invariants ---------------------------------------------------------

// check verifies the package doc's invariants after an event.
func (h *harness) check() {
	t := h.t
	t.Helper()
	s := h.s
	seen := map[*worker]string{}
	place := func(w *worker, where string) {
		if prev, dup := seen[w]; dup {
			t.Errorf("invariant 1: worker %d is both %s and %s", w.pid, prev, where)
		}
		seen[w] = where
		if !w.alive {
			t.Errorf("invariant 1: %s worker %d is not alive", where, w.pid)
		}
		if s.byPid[w.pid] != w {
			t.Errorf("invariant 1: %s worker %d is not in byPid", where, w.pid)
		}
	}
	next := map[*slot]slotView{}
	for _, a := range s.apps {
		for _, sl := range a.slots {
			where := fmt.Sprintf("%s[%d]", a.name, sl.index)
			if w := sl.current; w != nil {
				place(w, where+".current")
				if w.state == status.Draining {
					t.Errorf("invariant 2: %s current worker %d is draining", where, w.pid)
				}
			}
			if w := sl.candidate; w != nil {
				place(w, where+".candidate")
				if w.state == status.Draining {
					t.Errorf("invariant 2: %s candidate %d is draining", where, w.pid)
				}
				if sl.replacing == "" {
					t.Errorf("invariant 3: %s has candidate %d but no replacement under way", where, w.pid)
				}
				if s.down.active {
					t.Errorf("invariant 3: %s has candidate %d after the shutdown began", where, w.pid)
				}
			}
			for _, w := range sl.draining {
				place(w, where+".draining")
				if w.state != status.Draining {
					t.Errorf("invariant 2: %s draining worker %d is %s", where, w.pid, w.state)
				}
			}
			switch sl.state {
			case status.Backoff:
				if sl.restart == nil || sl.current != nil {
					t.Errorf("invariant 6: %s in backoff with restart=%v current=%v", where, sl.restart != nil, sl.current != nil)
				}
			case status.Errored, status.Stopped:
				if sl.current != nil || sl.restart != nil {
					t.Errorf("invariant 6: %s %s with a worker or a pending restart", where, sl.state)
				}
			}
			// Invariants 4 and 5: a ready current worker leaves its slot
			// only by exiting on its own, for a ready replacement (one that
			// said READY if it did, under --wait-ready), or when the slot
			// is removed or the shutdown began.
			view := slotView{current: sl.current}
			if sl.current != nil {
				view.ready, view.saidReady = sl.current.state == status.Ready, sl.current.saidReady
			}
			next[sl] = view
			// (A fork-mode app shares nothing: its reload stops the worker
			// before it starts the next one, as PM2's fork mode does.)
			if old, ok := h.prev[sl]; ok && old.ready && old.current != sl.current && !s.down.active && !sl.retiring && !h.exited(old.current.pid) && a.spec.ExecMode != appspec.Fork {
				switch nw := sl.current; {
				case nw == nil || nw.state != status.Ready:
					t.Errorf("invariant 4: %s lost its ready worker %d without a ready replacement", where, old.current.pid)
				case a.spec.WaitReady && old.saidReady && !nw.saidReady:
					t.Errorf("invariant 5: %s: worker %d that said READY replaced by %d that did not", where, old.current.pid, nw.pid)
				}
			}
		}
	}
	for pid, w := range s.byPid {
		if _, ok := seen[w]; !ok {
			t.Errorf("invariant 1: live worker %d is in no slot", pid)
		}
	}
	h.prev = next
}

// checkPass verifies invariant 8 as each reload pass ends: one that ends ok
// leaves every slot's current worker on its code.
func (h *harness) checkPass(a *app) {
	r := &a.reload
	if r.lastResult != "ok" || h.s.down.active {
		return
	}
	for _, sl := range a.slots {
		if w := sl.current; w != nil && !sl.retiring && w.gen != r.generation {
			h.t.Errorf("invariant 8: %s's pass %d ended ok with %s[%d] running worker %d of generation %d", a.name, r.generation, a.name, sl.index, w.pid, w.gen)
		}
	}
}

// exited tells whether pid exited in the current event (harness.exit), or
// in a batch sent through Run's channel (loopRun).
func (h *harness) exited(pid int) bool { return h.exits[pid] || h.loopExits[pid] }

// env returns the value of key in a started worker's environment.
func envOf(spec *StartSpec, key string) (string, bool) {
	v, ok := "", false
	for _, kv := range spec.Env {
		if k, val, _ := strings.Cut(kv, "="); k == key {
			v, ok = val, true
		}
	}
	return v, ok
}

// listener returns a Listener value for tests (no real socket).
func testListener(name string, network sockets.Network, addr string) *sockets.Listener {
	return &sockets.Listener{Spec: sockets.Spec{Name: name, Network: network, Addr: addr}, Bound: addr}
}

func itoa(i int) string { return strconv.Itoa(i) }

const (
	sigTERM = unix.SIGTERM
	sigKILL = unix.SIGKILL
	sigHUP  = unix.SIGHUP
	sigTTIN = unix.SIGTTIN
	sigTTOU = unix.SIGTTOU
)
