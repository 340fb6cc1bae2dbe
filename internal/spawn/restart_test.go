package spawn

import (
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
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
