package spawn

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/status"
)

func TestShutdownStopsEveryTreeAndTheOthers(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	pids := h.readyPids()
	h.sys.othersAlive = true
	h.signal(sigTERM)
	for _, pid := range pids {
		if sigs := h.signals(pid); !slices.Equal(sigs, []syscall.Signal{sigTERM}) {
			t.Errorf("worker %d got %v", pid, sigs)
		}
	}
	if h.sys.others[sigTERM] != 1 {
		t.Error("the other processes got no SIGTERM with the workers")
	}
	if h.life.calls[len(h.life.calls)-1] != "stopping" {
		t.Errorf("lifecycle %v", h.life.calls)
	}
	h.exit(0, pids...)
	if !h.s.finished || h.s.exitCode() != 0 {
		t.Errorf("finished %v exit %d", h.s.finished, h.s.exitCode())
	}
}

// A worker that ignores the stop signal is SIGKILLed at the kill timeout,
// with everything else left, and gm2-init exits 137.
func TestShutdownKillsAtTheKillTimeout(t *testing.T) {
	a := testApp("web", 1)
	a.KillTimeout = 2 * time.Second
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	pid := h.pid(0)
	h.signal(sigTERM)
	h.advance(1999 * time.Millisecond)
	if len(h.signals(pid)) != 1 {
		t.Fatal("SIGKILL before the kill timeout")
	}
	h.advance(time.Millisecond)
	if sigs := h.signals(pid); len(sigs) < 2 || sigs[1] != sigKILL {
		t.Fatalf("after the kill timeout: %v", sigs)
	}
	if h.sys.others[sigKILL] != 1 {
		t.Error("the other processes got no SIGKILL at the deadline")
	}
	h.exit(-int(sigKILL), pid)
	if !h.s.finished || h.s.exitCode() != 137 {
		t.Errorf("finished %v exit %d, want 137", h.s.finished, h.s.exitCode())
	}
}

// The worker exits but its tree lingers (the app behind npm start): the
// shutdown waits for it, up to the kill timeout from the stop signal.
func TestShutdownWaitsForAWorkersRemains(t *testing.T) {
	a := testApp("npm", 1)
	a.KillTimeout = 3 * time.Second
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	pid := h.pid(0)
	h.sys.procs[pid].remains = true
	h.signal(sigTERM)
	h.advance(time.Second)
	h.exit(0, pid)
	if h.s.finished {
		t.Fatal("finished while the worker's tree still runs")
	}
	h.advance(2 * time.Second) // 3 s after the stop signal
	if sigs := h.signals(pid); sigs[len(sigs)-1] != sigKILL {
		t.Fatalf("remains got %v", sigs)
	}
	h.sys.procs[pid].remains = false
	h.exit(-int(sigKILL), 555) // an orphan of the tree reaped
	if !h.s.finished || h.s.exitCode() != 137 {
		t.Errorf("finished %v, exit %d", h.s.finished, h.s.exitCode())
	}
}

func TestShutdownDelayKeepsServing(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}, ShutdownDelay: 5 * time.Second})
	h.startAll()
	pid := h.pid(0)
	h.signal(sigTERM)
	if !h.snapshot().ShuttingDown {
		t.Error("not marked shutting down")
	}
	h.advance(4 * time.Second)
	if len(h.signals(pid)) != 0 {
		t.Fatal("stopped during the delay")
	}
	h.signal(sigTERM) // a second TERM skips the rest of the delay
	if len(h.signals(pid)) != 1 {
		t.Fatal("second TERM did not skip the delay")
	}
}

func TestQuitForwardsAndStopsAtOnce(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}, ShutdownDelay: 5 * time.Second})
	h.startAll()
	pid := h.pid(0)
	h.signal(unix.SIGQUIT)
	if sigs := h.signals(pid); !slices.Equal(sigs, []syscall.Signal{unix.SIGQUIT, sigTERM}) {
		t.Errorf("got %v", sigs)
	}
}

func TestForwardedSignals(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	for _, sig := range []syscall.Signal{unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH} {
		h.signal(sig)
	}
	for _, pid := range h.started() {
		if sigs := h.signals(pid); !slices.Equal(sigs, []syscall.Signal{unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH}) {
			t.Errorf("worker %d got %v", pid, sigs)
		}
	}
}

// A slot that errors after the shutdown began is not restarted, and the
// exit status is the requested shutdown's.
func TestExitDuringShutdownIsNotRestarted(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	pids := h.readyPids()
	h.signal(sigTERM)
	h.exit(1, pids[0])
	h.advance(time.Second)
	if len(h.started()) != 2 {
		t.Fatal("restarted during the shutdown")
	}
	h.exit(0, pids[1])
	if h.s.exitCode() != 0 {
		t.Errorf("exit %d", h.s.exitCode())
	}
}

// The stop signal is each app's own.
func TestStopSignalPerApp(t *testing.T) {
	a, b := testApp("pm2app", 1), testApp("py", 1)
	a.StopSignal = unix.SIGINT
	h := newHarness(t, Options{Apps: []App{a, b}})
	h.startAll()
	pa, pb := h.pid(0, "pm2app"), h.pid(0, "py")
	h.signal(sigTERM)
	if h.signals(pa)[0] != unix.SIGINT || h.signals(pb)[0] != sigTERM {
		t.Errorf("got %v and %v", h.signals(pa), h.signals(pb))
	}
}

func TestEverySlotOfEveryAppErrored(t *testing.T) {
	a, b := testApp("a", 1), testApp("b", 1)
	a.MaxRestarts, b.MaxRestarts = 0, 0
	h := newHarness(t, Options{Apps: []App{a, b}})
	h.exit(1, h.pid(0, "a"))
	if h.s.finished || h.s.down.active {
		t.Fatal("shut down while another app runs")
	}
	h.exit(1, h.pid(0, "b"))
	h.wantState(0, status.Errored, "b")
	if !h.s.finished || h.s.exitCode() != 1 {
		t.Errorf("finished %v exit %d", h.s.finished, h.s.exitCode())
	}
}

func TestForkAppAndRestartNeverAppEndTogether(t *testing.T) {
	a, b := testApp("migrate", 1), testApp("web", 1)
	a.Restart, a.ExecMode = appspec.Never, appspec.Fork
	h := newHarness(t, Options{Apps: []App{a, b}})
	h.exit(0, h.pid(0, "migrate"))
	h.wantState(0, status.Stopped, "migrate")
	if h.s.finished {
		t.Fatal("finished while web runs")
	}
}

// At the shutdown's deadline every lingering tree still there gets SIGKILL,
// also when one before it in the list has gone meanwhile (and is forgotten
// on the way).
func TestShutdownKillReachesEveryLingeringTree(t *testing.T) {
	a := testApp("npm", 3)
	a.KillTimeout = 3 * time.Second
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	pids := []int{h.pid(0), h.pid(1), h.pid(2)}
	for _, pid := range pids {
		h.sys.procs[pid].remains = true
	}
	h.signal(sigTERM)
	h.exit(0, pids...)
	h.sys.procs[pids[0]].remains = false // its last process went unnoticed
	h.event(h.s.onShutdownKill)
	for _, pid := range pids[1:] {
		if sigs := h.signals(pid); sigs[len(sigs)-1] != sigKILL {
			t.Errorf("tree of %d got %v, want SIGKILL last", pid, sigs)
		}
	}
}

// A slot waiting out its backoff when the shutdown begins is stopped: its
// restart never comes, and /status says so instead of "backoff". A slot
// whose worker the shutdown stopped says "stopped" too.
func TestShutdownDuringBackoff(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	h.exit(1, h.pid(0))
	h.wantState(0, status.Backoff)
	survivor := h.pid(1)
	started := len(h.started())
	h.signal(sigTERM)
	h.wantState(0, status.Stopped)
	h.advance(5 * time.Second) // the backoff's 100 ms, not the kill timeout
	if n := len(h.started()); n != started {
		t.Fatalf("%d workers started after the shutdown began", n-started)
	}
	h.exit(0, survivor)
	h.wantState(1, status.Stopped)
	if !h.s.finished || h.s.exitCode() != 0 {
		t.Errorf("finished %v exit %d", h.s.finished, h.s.exitCode())
	}
	for _, sl := range h.snapshot().Slots {
		if sl.State != status.Stopped {
			t.Errorf("slot %d reads %s after the shutdown, want stopped", sl.Index, sl.State)
		}
	}
}

// An errored slot stays errored through the shutdown, even when the last
// worker it drains exits then: what /status says of it is still true.
func TestShutdownKeepsErrored(t *testing.T) {
	a := testApp("web", 1)
	a.MaxRestarts = 0
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	old := h.pid(0)
	h.signal(sigHUP)
	next := h.candidatePid(0)
	h.advance(2 * time.Second) // the replacement is ready: the old one drains
	if h.pid(0) != next {
		t.Fatalf("replacement %d did not take over", next)
	}
	h.exit(1, next) // crashes at once: no restart left
	h.wantState(0, status.Errored)
	h.signal(sigTERM)
	h.exit(0, old)
	h.wantState(0, status.Errored)
}

// The shutdown's final SIGKILL waits for the longest kill timeout of the
// apps: an app with a short one does not cut the others' short. (Workers
// are visited in map order; 20 rounds make a wrong pick show.)
func TestShutdownKillWaitsForTheLongestKillTimeout(t *testing.T) {
	for range 20 {
		fast, slow := testApp("fast", 3), testApp("slow", 1)
		fast.KillTimeout = 2 * time.Second
		h := newHarness(t, Options{Apps: []App{fast, slow}})
		h.startAll()
		pid := h.pid(0, "slow")
		h.signal(sigTERM)
		h.advance(8*time.Second - time.Millisecond)
		if sigs := h.signals(pid); len(sigs) != 1 {
			t.Fatalf("slow app's worker got %v before its 8 s kill timeout", sigs)
		}
		h.advance(time.Millisecond)
		if sigs := h.signals(pid); len(sigs) != 2 || sigs[1] != sigKILL {
			t.Fatalf("slow app's worker got %v at its kill timeout", sigs)
		}
	}
}
