package spawn

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/status"
)

// These tests run the real Run loop in its goroutine, over the fakes: what
// the harness tests call directly (onSignal, onExits, the timers) arrives
// here through Run's channels and the public methods, concurrently, as in
// production (run them with -race). No process is started.

// loopRun is a Supervisor over the fakes whose Run loop is running.
type loopRun struct {
	t      *testing.T
	h      *harness
	s      *Supervisor
	sigs   chan os.Signal
	exits  chan []reaper.Exit
	result chan int
	// until, when set, is evaluated in the loop after every event; met is
	// closed once it holds (eventually). Both belong to the loop.
	until func() bool
	met   chan struct{}
}

func startLoop(t *testing.T, opt Options, setup ...func(*Supervisor)) *loopRun {
	t.Helper()
	h := buildHarness(t, opt)
	for _, f := range setup {
		f(h.s) // before Run: nothing else touches the Supervisor yet
	}
	r := &loopRun{t: t, h: h, s: h.s, sigs: make(chan os.Signal, 4), exits: make(chan []reaper.Exit, 4), result: make(chan int, 1)}
	check := h.s.afterEvent
	h.s.afterEvent = func() {
		check()
		if until := r.until; until != nil {
			r.until = nil // cond's own events do not evaluate it again
			if until() {
				close(r.met)
			} else {
				r.until = until
			}
		}
	}
	go func() { r.result <- h.s.Run(r.sigs, r.exits) }()
	t.Cleanup(func() {
		select {
		case <-h.s.done:
			return
		default:
		}
		// Stop it the way the tests do: TERM, then every worker exits.
		r.sigs <- unix.SIGTERM
		r.eventually("the shutdown stops every worker", func() bool { return h.s.down.stopping })
		r.do(func() {
			var pids []int
			for pid := range h.s.byPid {
				pids = append(pids, pid)
			}
			r.exitInLoop(0, pids...)
		})
		r.wait()
	})
	return r
}

// do runs fn in the loop, as one event, and returns once it ran. fn may use
// the harness's helpers; the fakes are only touched from the loop.
func (r *loopRun) do(fn func()) {
	r.t.Helper()
	if err := r.s.call(func() error { r.h.event(fn); return nil }); err != nil {
		r.t.Fatalf("loop: %v", err)
	}
}

// eventually waits, for at most 20 s, until cond holds in the loop: it is
// evaluated now and after every event the loop applies. What it waits for
// may have to pass through another goroutine first (Run's notify reader)
// or sit in Run's channels, which Run picks from at random.
func (r *loopRun) eventually(what string, cond func() bool) {
	r.t.Helper()
	met := make(chan struct{})
	r.do(func() {
		if cond() {
			close(met)
			return
		}
		r.until, r.met = cond, met
	})
	select {
	case <-met:
	case <-time.After(20 * time.Second):
		r.t.Fatalf("%s: not within 20 s", what)
	}
}

// exitInLoop is harness.exit (code < 0: killed by signal -code) for a
// batch that arrives through Run's exits channel instead: the fakes learn
// of it in the loop, the batch is sent from there (the channel is
// buffered).
func (r *loopRun) exitInLoop(code int, pids ...int) {
	var batch []reaper.Exit
	for _, pid := range pids {
		ws := unix.WaitStatus(code << 8)
		if code < 0 {
			ws = unix.WaitStatus(-code) // killed by that signal
		}
		batch = append(batch, reaper.Exit{Pid: pid, Status: ws})
		if p := r.h.sys.procs[pid]; p != nil {
			p.exited = true
		}
		r.h.loopExits[pid] = true
	}
	r.exits <- batch
}

// wait returns Run's exit status.
func (r *loopRun) wait() int {
	r.t.Helper()
	select {
	case code := <-r.result:
		return code
	case <-time.After(20 * time.Second):
		r.t.Fatal("Run did not return within 20 s")
		return -1
	}
}

// pids returns the current workers of the first app, by slot.
func (r *loopRun) pids() []int {
	var out []int
	r.do(func() {
		for _, sl := range r.s.apps[0].slots {
			if sl.current != nil {
				out = append(out, sl.current.pid)
			}
		}
	})
	return out
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSnapshotIsCurrent: snapshots are built on demand, yet a reader that
// saw an event's effect never gets a snapshot from before it, while other
// readers hammer Snapshot concurrently.
func TestSnapshotIsCurrent(t *testing.T) {
	// A reader whose round trip timed out under load would mark the loop
	// stuck and get the last snapshot: not what this test is about.
	r := startLoop(t, Options{Apps: []App{testApp("web", 2)}}, func(s *Supervisor) { s.snapshotWait = 20 * time.Second })
	started := make(chan int, 16)
	r.do(func() {
		r.h.sys.onStart = func(pid int) { started <- pid }
		r.h.startAll()
	})
	stopReaders := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				if r.s.Snapshot() == nil {
					t.Error("nil snapshot")
					return
				}
			}
		}()
	}
	defer func() { close(stopReaders); readers.Wait() }()

	if n := r.s.Snapshot().ReadyWorkers(); n != 2 {
		t.Fatalf("%d workers ready after the start, want 2", n)
	}
	for want := 3; want <= 5; want++ {
		r.sigs <- unix.SIGTTIN
		// The new slot's worker starting is the effect the test sees,
		// without a round trip through the loop.
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("SIGTTIN started no worker within 20 s")
		}
		if snap := r.s.Snapshot(); snap.Instances != want || len(snap.Slots) != want {
			t.Fatalf("after SIGTTIN: %d instances, %d slots; want %d", snap.Instances, len(snap.Slots), want)
		}
	}
	// A crash, and the restart after its backoff.
	victim := r.pids()[0]
	r.do(func() { r.exitInLoop(1, victim) })
	r.eventually("the crash is handled", func() bool { return r.s.byPid[victim] == nil })
	r.do(func() { r.h.advance(backoffMin) })
	snap := r.s.Snapshot()
	if snap.Counters.Restarts != 1 || snap.Slots[0].Pid == victim {
		t.Fatalf("after the crash of %d: %d restarts, slot 0 runs %d", victim, snap.Counters.Restarts, snap.Slots[0].Pid)
	}
	// Nothing changed: the same snapshot, not a new one.
	if r.s.Snapshot() != snap {
		t.Error("a snapshot was rebuilt with nothing changed")
	}
}

// TestSnapshotStuckLoop: a reader of a stuck loop gets the last snapshot
// instead of hanging, later readers do not queue behind the stuck loop (nor
// does /livez's Ping, bounded by its context), and the first round trip
// after the loop recovers brings the snapshot up to date again.
func TestSnapshotStuckLoop(t *testing.T) {
	r := startLoop(t, Options{Apps: []App{testApp("web", 1)}}, func(s *Supervisor) { s.snapshotWait = 10 * time.Millisecond })
	r.do(func() { r.h.startAll() })

	block, entered := make(chan struct{}), make(chan struct{})
	r.s.post(func() { close(entered); <-block }) // the loop is stuck in this event
	<-entered
	r.sigs <- unix.SIGTTIN // applied only after it
	unblock := sync.OnceFunc(func() { close(block) })
	defer unblock()

	if snap := r.s.Snapshot(); snap.Instances != 1 {
		t.Errorf("snapshot of a stuck loop shows %d instances, want the last one (1)", snap.Instances)
	}
	if !r.s.stuck.Load() {
		t.Error("an unanswered round trip did not mark the loop stuck")
	}
	// Known stuck: the next reader does not wait at all.
	if err := r.s.ask(context.Background(), true); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("a round trip to a loop known to be stuck: %v, want busy at once", err)
	}
	if snap := r.s.Snapshot(); snap.Instances != 1 {
		t.Errorf("second snapshot of a stuck loop shows %d instances", snap.Instances)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	err := r.s.Ping(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping of a stuck loop: %v, want the context's deadline", err)
	}

	unblock()
	if err := r.s.Ping(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if r.s.stuck.Load() {
		t.Error("still marked stuck after an answered ping")
	}
	r.eventually("the SIGTTIN sent while stuck is applied", func() bool { return r.s.apps[0].instances() == 2 })
	if snap := r.s.Snapshot(); snap.Instances != 2 {
		t.Errorf("after the loop recovered: %d instances, want 2", snap.Instances)
	}
}

// TestControlCommandsThroughTheLoop: gm2-init scale and reload go through
// the loop and wait for its answer; reload returns once its pass ended, or
// when its context ends (the pass goes on).
func TestControlCommandsThroughTheLoop(t *testing.T) {
	r := startLoop(t, Options{Apps: []App{testApp("web", 1)}})
	r.do(func() { r.h.startAll() })
	ctx := bounded(t)

	from, to, err := r.s.Scale(ctx, "web", 2, false)
	if err != nil || from != 1 || to != 2 {
		t.Fatalf("scale web 2: %d → %d, %v", from, to, err)
	}
	if from, to, err = r.s.Scale(ctx, "web", 1, true); err != nil || from != 2 || to != 3 {
		t.Fatalf("scale web +1: %d → %d, %v", from, to, err)
	}
	if _, _, err := r.s.Scale(ctx, "web", 0, false); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("scale web 0: %v", err)
	}
	if _, _, err := r.s.Scale(ctx, "nope", 2, false); err == nil || !strings.Contains(err.Error(), `no app named "nope"`) {
		t.Errorf("scale of an unknown app: %v", err)
	}
	r.do(func() { r.h.advance(2 * time.Second) })
	if n := r.s.Snapshot().ReadyWorkers(); n != 3 {
		t.Fatalf("%d workers ready after scale +1, want 3", n)
	}

	done := make(chan error, 1)
	go func() { done <- r.s.Reload(ctx, nil) }()
	r.drivePass(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if snap := r.s.Snapshot(); snap.Reload.LastResult != "ok" || snap.Reload.Generation != 1 || snap.ReadyWorkers() != 3 {
		t.Fatalf("after gm2-init reload: %+v, %d ready", snap.Reload, snap.ReadyWorkers())
	}
	if err := r.s.Reload(ctx, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "no app named") {
		t.Errorf("reload of an unknown app: %v", err)
	}

	// A caller that stops waiting does not stop the pass.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.s.Reload(gone, []string{"web"}); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "the reload goes on") {
		t.Errorf("reload with an ended context: %v", err)
	}
	r.drivePass(2) // the abandoned caller's pass ends all the same
}

// drivePass drives the first app's reload pass gen to its end, one step
// per round trip through the loop: the workers it stopped exit, and the
// clock lets its replacements pass --min-uptime.
func (r *loopRun) drivePass(gen uint64) {
	r.t.Helper()
	ended := false
	for step := 0; !ended; step++ {
		if step == 1000 {
			r.t.Fatalf("reload pass %d did not end after 1000 steps", gen)
		}
		r.do(func() {
			rl := &r.s.apps[0].reload
			if ended = rl.generation >= gen && !rl.inProgress; ended {
				return
			}
			var pids []int
			for _, sl := range r.s.apps[0].slots {
				for _, w := range sl.draining {
					pids = append(pids, w.pid)
				}
			}
			if len(pids) > 0 {
				r.h.exit(0, pids...)
			}
			r.h.advance(2 * time.Second)
		})
	}
}

// TestRunEndsOnTERM: TERM stops the workers with their stop signal, Run
// returns 0 once they exited, and afterwards every public method answers
// at once instead of waiting for a loop that is gone.
func TestRunEndsOnTERM(t *testing.T) {
	r := startLoop(t, Options{Apps: []App{testApp("web", 2)}})
	r.do(func() { r.h.startAll() })
	pids := r.pids()
	r.sigs <- unix.SIGTERM
	r.eventually("the workers get their stop signal", func() bool {
		return len(r.h.signals(pids[0])) > 0 && len(r.h.signals(pids[1])) > 0
	})
	if !r.s.Snapshot().ShuttingDown {
		t.Error("the snapshot does not say the shutdown began")
	}
	r.do(func() { r.exitInLoop(0, pids...) })
	if code := r.wait(); code != 0 {
		t.Errorf("Run returned %d after a TERM and clean exits, want 0", code)
	}
	for _, pid := range pids {
		if got := r.h.signals(pid); len(got) != 1 || got[0] != unix.SIGTERM {
			t.Errorf("worker %d got %v, want [SIGTERM]", pid, got)
		}
	}
	if r.h.sys.all[0] != 1 || len(r.h.sys.all) != 1 {
		t.Errorf("sweep: SignalAll calls %v, want one probe (nothing was left)", r.h.sys.all)
	}

	ctx := bounded(t)
	if snap := r.s.Snapshot(); snap.ReadyWorkers() != 0 || len(snap.Slots[0].Workers) != 0 {
		t.Errorf("final snapshot still shows workers: %+v", snap.Slots)
	}
	if err := r.s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Ping after Run returned: %v", err)
	}
	if err := r.s.Reload(ctx, nil); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Reload after Run returned: %v", err)
	}
	if _, _, err := r.s.Scale(ctx, "web", 3, false); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Scale after Run returned: %v", err)
	}
	r.s.post(func() { t.Error("an event posted after Run returned ran") }) // returns: nobody takes it
}

// TestRunSweepsWhatIsLeft: after the last worker ended by itself (--restart
// never), what it left behind gets SIGTERM, then SIGKILL if it outlives the
// kill timeout; Run returns the worker's exit status either way.
func TestRunSweepsWhatIsLeft(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dieOn    syscall.Signal
		wantKill int
	}{
		{"leaves on TERM", unix.SIGTERM, 0},
		{"needs KILL", unix.SIGKILL, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testApp("job", 1)
			a.Restart = "never"
			a.KillTimeout = 20 * time.Millisecond // the sweep's wait: real time, after the loop
			r := startLoop(t, Options{Apps: []App{a}})
			pid := r.pids()[0]
			r.do(func() { r.h.sys.allAlive, r.h.sys.allDieOn = true, tc.dieOn })
			r.do(func() { r.exitInLoop(3, pid) })
			if code := r.wait(); code != 3 {
				t.Errorf("Run returned %d, want the job's 3", code)
			}
			all := r.h.sys.all
			if all[unix.SIGTERM] != 1 || all[unix.SIGKILL] != tc.wantKill {
				t.Errorf("sweep sent TERM %d times, KILL %d times; want 1 and %d", all[unix.SIGTERM], all[unix.SIGKILL], tc.wantKill)
			}
			if r.h.sys.allAlive {
				t.Error("the sweep ended with processes left")
			}
		})
	}
}

// TestRunSweepAfterTheKillTimeout: after a requested shutdown the other
// processes share the workers' deadline (they got SIGTERM with them): once
// it has passed, what is left gets SIGKILL at once, with no second grace.
func TestRunSweepAfterTheKillTimeout(t *testing.T) {
	a := testApp("web", 1)
	a.KillTimeout = 2 * time.Second
	r := startLoop(t, Options{Apps: []App{a}})
	r.do(func() { r.h.startAll() })
	pid := r.pids()[0]
	r.do(func() { r.h.sys.allAlive, r.h.sys.allDieOn = true, unix.SIGKILL })
	r.sigs <- unix.SIGTERM
	r.eventually("the worker gets its stop signal", func() bool { return len(r.h.signals(pid)) == 1 })
	r.do(func() { r.h.advance(3 * time.Second) }) // past the deadline: SIGKILL to the worker's tree
	r.do(func() { r.exitInLoop(-int(unix.SIGKILL), pid) })
	if code := r.wait(); code != 137 {
		t.Errorf("Run returned %d after a SIGKILLed worker, want 137", code)
	}
	if all := r.h.sys.all; all[unix.SIGTERM] != 0 || all[unix.SIGKILL] != 1 {
		t.Errorf("sweep sent TERM %d times, KILL %d times; want 0 and 1 (TERM went with the workers)", all[unix.SIGTERM], all[unix.SIGKILL])
	}
}

// TestNotifySocketReachesTheLoop: a NOTIFY_SOCKET datagram is read by
// Run's reader and applied in the loop, attributed by the sender's
// credentials to the worker it descends from (here the test process
// itself, once the fake says so); before that it is a stray and dropped.
func TestNotifySocketReachesTheLoop(t *testing.T) {
	sock, err := notify.Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := testApp("web", 1)
	a.WaitReady = true
	r := startLoop(t, Options{Apps: []App{a}, Notify: sock})
	t.Cleanup(func() { sock.Close() }) // readNotify ends on it (before or after Run: either way)
	pid := r.pids()[0]
	c, err := net.Dial("unixgram", sock.Env())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// From a process that is no worker's: dropped with a warning.
	if _, err := c.Write([]byte("READY=1")); err != nil {
		t.Fatal(err)
	}
	r.eventually("the stray datagram is dropped", func() bool {
		return r.h.count("notify message from a process that is not a worker nor a descendant of one; dropped") == 1
	})
	r.do(func() {
		if st := r.s.byPid[pid].state; st != status.Starting {
			t.Errorf("a stray READY=1 made worker %d %s", pid, st)
		}
		r.h.sys.ancestors[os.Getpid()] = pid
	})
	if _, err := c.Write([]byte("STATUS=warming up\nREADY=1")); err != nil {
		t.Fatal(err)
	}
	r.eventually("READY=1 over the socket makes the worker ready", func() bool {
		return r.s.byPid[pid].state == status.Ready
	})
	if got := r.s.Snapshot().Slots[0].Workers[0].Status; got != "warming up" {
		t.Errorf("worker status %q, want the datagram's STATUS=", got)
	}
}
