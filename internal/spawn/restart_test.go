package spawn

import (
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/status"
)

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 15 * time.Second, 15 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(1 << 30); got != backoffMax {
		t.Errorf("backoff(huge) = %v, want the cap", got)
	}
	if got := backoff(0); got != backoffMin {
		t.Errorf("backoff(0) = %v", got)
	}
}

// delays returns the "delay" fields of the restart lines.
func (h *harness) delays() []string {
	var out []string
	for _, msg := range []string{"restarting worker", "worker exited normally; restarting it (--restart always)"} {
		for _, l := range h.lines(msg) {
			out = append(out, l["delay"].(string))
		}
	}
	return out
}

func TestCrashLoopBacksOffThenErrors(t *testing.T) {
	a := testApp("web", 1)
	a.MaxRestarts = 3
	h := newHarness(t, Options{Apps: []App{a}})
	for i := range 4 {
		h.exit(1, h.pid(0))
		if i < 3 {
			h.wantState(0, status.Backoff)
			h.advance(backoff(i + 1))
		}
	}
	h.wantState(0, status.Errored)
	if got := h.delays(); len(got) != 3 || got[0] != "100ms" || got[1] != "200ms" || got[2] != "400ms" {
		t.Errorf("delays %v", got)
	}
	if h.count("worker keeps crashing on start; slot errored and not restarted") != 1 {
		t.Error("no errored line")
	}
	// Every slot errored: gm2-init shuts down with status 1.
	if !h.s.finished || h.s.exitCode() != 1 {
		t.Errorf("finished %v, exit code %d", h.s.finished, h.s.exitCode())
	}
}

// A worker that dies a few seconds after start, after --min-uptime made it
// ready, is still a crash loop: it was not ready for the stable period.
func TestSlowCrashLoopIsCaught(t *testing.T) {
	a := testApp("web", 1)
	a.MaxRestarts = 2
	h := newHarness(t, Options{Apps: []App{a}})
	for range 3 {
		h.advance(3 * time.Second) // ready at 1 s, dies at 3 s
		h.exit(1, h.pid(0))
		if h.slot(0).state == status.Errored {
			break
		}
		h.advance(15 * time.Second)
	}
	h.wantState(0, status.Errored)
}

func TestStableWorkerResetsTheCount(t *testing.T) {
	a := testApp("web", 1)
	a.MaxRestarts = 2
	h := newHarness(t, Options{Apps: []App{a}})
	for range 10 {
		h.advance(31 * time.Second) // ready for 30 s: stable
		h.exit(1, h.pid(0))
		h.wantState(0, status.Backoff)
		if f := h.slot(0).failures; f != 0 {
			t.Fatalf("failures %d after a stable worker", f)
		}
		h.advance(100 * time.Millisecond)
	}
	if got := h.delays(); got[len(got)-1] != "100ms" {
		t.Errorf("delay after a stable run %v", got)
	}
}

func TestExitZeroUnderRestartAlways(t *testing.T) {
	a := testApp("true", 1)
	a.MaxRestarts = 2
	h := newHarness(t, Options{Apps: []App{a}})
	h.exit(0, h.pid(0))
	if h.count("worker exited normally; restarting it (--restart always)") != 1 {
		t.Fatal("exit 0 not reported as a normal exit")
	}
	for range 3 {
		h.advance(2 * time.Second)
		if h.slot(0).current == nil {
			break
		}
		h.exit(0, h.pid(0))
	}
	h.advance(15 * time.Second)
	if h.slot(0).current != nil {
		h.exit(0, h.pid(0))
	}
	h.wantState(0, status.Errored)
	if h.count("worker keeps exiting with status 0 soon after it starts; slot errored and not restarted (a command meant to end needs --restart on-failure or never)") != 1 {
		t.Errorf("no hint for an exit-0 loop:\n%s", h.logs.String())
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, c := range []struct {
		policy    appspec.RestartPolicy
		stopCodes []int
		code      int
		want      status.State
	}{
		{appspec.Always, nil, 0, status.Backoff},
		{appspec.Always, nil, 1, status.Backoff},
		{appspec.OnFailure, nil, 0, status.Stopped},
		{appspec.OnFailure, nil, 3, status.Backoff},
		{appspec.Never, nil, 3, status.Stopped},
		{appspec.Always, []int{42}, 42, status.Stopped},
		{appspec.Always, []int{42}, 43, status.Backoff},
	} {
		a := testApp("job", 2)
		a.Restart, a.StopExitCodes = c.policy, c.stopCodes
		h := newHarness(t, Options{Apps: []App{a}})
		h.exit(c.code, h.pid(0))
		if got := h.slot(0).state; got != c.want {
			t.Errorf("%s %v exit %d: %s, want %s", c.policy, c.stopCodes, c.code, got, c.want)
		}
	}
}

func TestRestartNeverEndsWithTheFirstFailure(t *testing.T) {
	a := testApp("job", 2)
	a.Restart = appspec.Never
	h := newHarness(t, Options{Apps: []App{a}})
	p0, p1 := h.pid(0), h.pid(1)
	h.exit(0, p0)
	if h.s.finished {
		t.Fatal("finished with a worker still running")
	}
	h.exit(3, p1)
	if !h.s.finished || h.s.exitCode() != 3 {
		t.Fatalf("finished %v, exit code %d, want 3", h.s.finished, h.s.exitCode())
	}
}

func TestMinUptimeZeroNeverErrors(t *testing.T) {
	a := testApp("web", 1)
	a.MinUptime, a.MaxRestarts = 0, 1
	h := newHarness(t, Options{Apps: []App{a}})
	for range 20 {
		h.exit(1, h.pid(0))
		h.advance(100 * time.Millisecond)
	}
	h.wantState(0, status.Ready) // --min-uptime 0: ready at once, never errored
	if f := h.slot(0).failures; f != 0 {
		t.Errorf("failures %d with crash-loop detection off", f)
	}
}

func TestRestartDelay(t *testing.T) {
	a := testApp("web", 1)
	a.RestartDelay = 3 * time.Second
	h := newHarness(t, Options{Apps: []App{a}})
	h.exit(1, h.pid(0))
	h.advance(2999 * time.Millisecond)
	h.wantState(0, status.Backoff)
	h.advance(time.Millisecond)
	h.wantState(0, status.Starting)
}

// Remains of a crashed worker (children in its group) get the stop signal
// at once and SIGKILL after the kill timeout, while the slot restarts.
func TestRemainsOfACrashedWorker(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("sh", 1)}})
	pid := h.pid(0)
	h.sys.procs[pid].remains = true
	h.exit(1, pid)
	if sigs := h.signals(pid); len(sigs) != 1 || sigs[0] != sigTERM {
		t.Fatalf("remains got %v", sigs)
	}
	h.advance(100 * time.Millisecond)
	h.wantState(0, status.Starting) // restarted meanwhile
	h.advance(8 * time.Second)
	if sigs := h.signals(pid); len(sigs) != 2 || sigs[1] != sigKILL {
		t.Fatalf("remains after the kill timeout got %v", sigs)
	}
	h.sys.procs[pid].remains = false
	h.advance(time.Second)
	if len(h.s.lingering) != 0 {
		t.Error("remains not forgotten")
	}
}

// An errored slot next to serving siblings, with no --listen, is most
// likely a port clash: the error names --listen.
func TestErroredBesideServingSiblingsNamesListen(t *testing.T) {
	a := testApp("python", 2)
	a.MaxRestarts = 1
	h := newHarness(t, Options{Apps: []App{a}})
	if h.count("no --listen: each worker must bind its own ports; a port the app binds is taken by one worker and the others fail (name it in --listen so that gm2-init binds it once for all)") != 1 {
		t.Error("no start-up hint about --listen")
	}
	h.advance(2 * time.Second)
	for range 3 {
		if h.slot(1).current == nil {
			break
		}
		h.exit(1, h.pid(1))
		h.advance(time.Second)
	}
	h.wantState(1, status.Errored)
	msg := "worker keeps failing on start while the other workers serve; slot errored and not restarted. If it fails to bind a port the others hold (EADDRINUSE), name that port in --listen so that gm2-init binds it once for all"
	if h.count(msg) != 1 {
		t.Errorf("no --listen hint:\n%s", h.logs.String())
	}
	if h.s.finished {
		t.Error("finished while a slot serves")
	}
}

// A --min-uptime longer than 30 s raises the stable period with it: a
// worker that dies before it has been ready for --min-uptime is a failed
// start, one ready for longer is not.
func TestLongMinUptimeRaisesTheStablePeriod(t *testing.T) {
	for _, c := range []struct {
		readyFor time.Duration
		want     status.State
	}{
		{40 * time.Second, status.Errored}, // past 30 s, short of --min-uptime
		{61 * time.Second, status.Backoff},
	} {
		a := testApp("web", 1)
		a.MinUptime, a.MaxRestarts = time.Minute, 0
		h := newHarness(t, Options{Apps: []App{a}})
		h.advance(time.Minute) // ready by --min-uptime
		h.wantState(0, status.Ready)
		h.advance(c.readyFor)
		h.exit(1, h.pid(0))
		if got := h.slot(0).state; got != c.want {
			t.Errorf("ready for %v with --min-uptime 1m: %s, want %s", c.readyFor, got, c.want)
		}
	}
}

// Each restart is counted on its slot (/status RESTARTS) and in all.
func TestRestartsAreCountedPerSlot(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	for range 2 {
		h.exit(1, h.pid(1))
		h.advance(time.Second)
	}
	snap := h.snapshot()
	if snap.Slots[0].Restarts != 0 || snap.Slots[1].Restarts != 2 || snap.Counters.Restarts != 2 {
		t.Errorf("restarts: slot 0 %d, slot 1 %d, in all %d; want 0, 2, 2", snap.Slots[0].Restarts, snap.Slots[1].Restarts, snap.Counters.Restarts)
	}
}

// When every slot has ended on its own (--restart never|on-failure, or
// errored), gm2-init exits with the first failure's status, 1 if a slot
// errored without one; a slot that errored beside stopped ones does not
// turn that into "every slot errored" (status 1).
func TestNaturalEndExitStatus(t *testing.T) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T) *harness
		want int
	}{
		{"first of two failures", func(t *testing.T) *harness {
			a := testApp("job", 2)
			a.Restart = appspec.Never
			h := newHarness(t, Options{Apps: []App{a}})
			p0, p1 := h.pid(0), h.pid(1)
			h.exit(3, p0)
			h.exit(5, p1)
			return h
		}, 3},
		{"a stopped slot's failure, then an errored slot", func(t *testing.T) *harness {
			job, web := testApp("job", 1), testApp("web", 1)
			job.Restart, web.MaxRestarts = appspec.Never, 0
			h := newHarness(t, Options{Apps: []App{job, web}})
			h.exit(3, h.pid(0, "job"))
			h.exit(1, h.pid(0, "web"))
			h.wantState(0, status.Errored, "web")
			return h
		}, 3},
		{"an errored slot with no failing status", func(t *testing.T) *harness {
			job, web := testApp("job", 1), testApp("web", 1)
			job.Restart, web.MaxRestarts = appspec.Never, 0
			h := newHarness(t, Options{Apps: []App{job, web}})
			h.exit(0, h.pid(0, "job"))
			h.exit(0, h.pid(0, "web")) // exit 0 before ready, no restart left
			h.wantState(0, status.Errored, "web")
			return h
		}, 1},
		{"the old worker failed during its replacement", func(t *testing.T) *harness {
			a := reloadApp(1)
			a.Restart = appspec.OnFailure
			h, old, cand := replacing(t, a)
			h.exit(3, old)
			h.ready(cand)
			h.exit(0, cand)
			return h
		}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.run(t)
			if !h.s.finished || h.s.down.active || h.s.exitCode() != c.want {
				t.Errorf("finished %v, shutdown %v, exit %d; want a natural end with %d", h.s.finished, h.s.down.active, h.s.exitCode(), c.want)
			}
		})
	}
}

// With --listen the shared sockets are gm2-init's: a slot that errors next
// to serving siblings is no port clash, and the error does not say so.
func TestErroredBesideServingSiblingsWithListen(t *testing.T) {
	a := testApp("web", 2)
	a.MaxRestarts = 0
	a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:8080")}
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.exit(1, h.pid(1))
	h.wantState(1, status.Errored)
	if h.count("worker keeps crashing on start; slot errored and not restarted") != 1 {
		t.Errorf("no plain errored line:\n%s", h.logs.String())
	}
}

// A reload gives an errored slot the new code and a fresh count of
// restarts: its new worker crashing once is restarted, not errored again.
func TestReloadGivesAnErroredSlotFreshRestarts(t *testing.T) {
	a := testApp("web", 2)
	a.MaxRestarts, a.ReloadBatch = 1, 2
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.exit(1, h.pid(1))
	h.advance(100 * time.Millisecond)
	h.exit(1, h.pid(1))
	h.wantState(1, status.Errored)
	h.signal(sigHUP)
	h.advance(time.Second) // both replacements ready by --min-uptime
	h.wantState(1, status.Ready)
	h.exit(1, h.pid(1))
	h.wantState(1, status.Backoff)
}

// The remains of a stopped worker drain up to the kill timeout counted from
// the stop signal, not from the worker's exit; a gone tree is forgotten
// without a SIGKILL (its pids may be anyone's by then); the remains of a
// worker that needed SIGKILL are forgotten a second after its exit.
func TestRemainsOfAStoppedWorker(t *testing.T) {
	// replaced starts a one-slot app, replaces its worker, whose tree
	// lingers, and returns that worker once its stop signal is sent.
	replaced := func(t *testing.T) (*harness, int) {
		h := newHarness(t, Options{Apps: []App{reloadApp(1)}})
		h.startAll()
		old := h.pid(0)
		h.sys.procs[old].remains = true
		h.signal(sigHUP)
		h.ready(h.candidatePid(0))
		if sigs := h.signals(old); len(sigs) != 1 || sigs[0] != sigTERM {
			t.Fatalf("old worker got %v", sigs)
		}
		return h, old
	}
	t.Run("deadline from the stop signal", func(t *testing.T) {
		h, old := replaced(t)
		h.advance(3 * time.Second)
		h.exit(0, old)
		h.advance(5*time.Second - time.Millisecond)
		if sigs := h.signals(old); len(sigs) != 1 {
			t.Fatalf("remains got %v before the kill timeout", sigs)
		}
		h.advance(time.Millisecond) // 8 s after the stop signal
		if sigs := h.signals(old); len(sigs) != 2 || sigs[1] != sigKILL {
			t.Fatalf("remains got %v at the kill timeout, want SIGKILL", sigs)
		}
	})
	t.Run("gone unnoticed", func(t *testing.T) {
		h, old := replaced(t)
		h.exit(0, old)
		h.sys.procs[old].remains = false // its last process was not ours to reap
		h.advance(8 * time.Second)
		if sigs := h.signals(old); len(sigs) != 1 {
			t.Errorf("a gone tree got %v", sigs)
		}
		if len(h.s.lingering) != 0 || !h.sys.procs[old].released {
			t.Errorf("gone tree not forgotten: %d lingering, released %v", len(h.s.lingering), h.sys.procs[old].released)
		}
	})
	t.Run("after SIGKILL", func(t *testing.T) {
		h, old := replaced(t)
		h.advance(8 * time.Second) // the worker ignores its stop signal
		h.exit(-int(sigKILL), old)
		h.advance(time.Second)
		if len(h.s.lingering) != 0 {
			t.Errorf("remains of a SIGKILLed worker still waited for a second after its exit")
		}
		if sigs := h.signals(old); len(sigs) != 2 {
			t.Errorf("remains got %v, want [SIGTERM SIGKILL] only", sigs)
		}
	})
}

// --restart never: gm2-init does not end while what the last worker left
// behind still drains.
func TestNaturalEndWaitsForRemains(t *testing.T) {
	a := testApp("job", 1)
	a.Restart = appspec.Never
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	h.sys.procs[pid].remains = true
	h.exit(0, pid)
	if h.s.finished {
		t.Fatal("finished while the worker's tree still runs")
	}
	h.sys.procs[pid].remains = false
	h.exit(0, 555) // the tree's last process reaped
	if !h.s.finished || h.s.exitCode() != 0 {
		t.Errorf("finished %v exit %d once the tree is gone", h.s.finished, h.s.exitCode())
	}
	if h.snapshot().Counters.OrphansReaped != 1 {
		t.Errorf("orphans reaped %d, want 1", h.snapshot().Counters.OrphansReaped)
	}
}
