package spawn

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/status"
)

func TestTTINAndTTOU(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}})
	h.startAll()
	h.signal(sigTTIN)
	h.signal(sigTTIN)
	if n := h.s.apps[0].instances(); n != 3 {
		t.Fatalf("%d instances after 2 TTIN", n)
	}
	if v, _ := envOf(h.sys.procs[h.lastStarted()].spec, "GM2_INSTANCE"); v != "2" {
		t.Errorf("new slot GM2_INSTANCE=%s", v)
	}
	h.advance(2 * time.Second)
	top := h.pid(2)
	h.signal(sigTTOU)
	if sigs := h.signals(top); len(sigs) != 1 {
		t.Fatalf("highest slot's worker got %v", sigs)
	}
	if n := h.s.apps[0].instances(); n != 2 {
		t.Fatalf("%d instances", n)
	}
	// TTIN while slot 2 is still draining takes it back.
	h.signal(sigTTIN)
	if len(h.s.apps[0].slots) != 3 || h.slot(2).retiring {
		t.Fatal("retiring slot not taken back")
	}
	h.exit(0, top)
	h.signal(sigTTOU)
	h.signal(sigTTOU)
	h.signal(sigTTOU)
	if h.count("SIGTTOU ignored: one worker is the minimum") != 1 {
		t.Errorf("no minimum:\n%s", h.logs.String())
	}
	for _, p := range h.sys.order {
		if !p.exited && len(p.signals) > 0 {
			h.exit(0, p.pid)
		}
	}
	if len(h.s.apps[0].slots) != 1 {
		t.Errorf("%d slots left after the retired ones exited", len(h.s.apps[0].slots))
	}
}

// firstSlotErrored starts app web with n slots and makes slot 0 error (no
// restart allowed), the others serving.
func firstSlotErrored(t *testing.T, n int) *harness {
	t.Helper()
	a := testApp("web", n)
	a.MaxRestarts = 0
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.exit(1, h.pid(0))
	h.wantState(0, status.Errored)
	return h
}

func TestTTOUKeepsTheLastWorkingSlot(t *testing.T) {
	h := firstSlotErrored(t, 2)
	h.signal(sigTTOU)
	if h.count("SIGTTOU ignored: the other slots have errored or stopped") != 1 {
		t.Error("removed the last working slot")
	}
}

// A scale-down that would keep no working slot is refused as a whole,
// before any slot goes: the command says so, and nothing changed (it
// used to remove slots one by one until the check failed).
func TestRefusedScaleDownChangesNothing(t *testing.T) {
	h := firstSlotErrored(t, 3)
	pids := []int{h.pid(1), h.pid(2)}
	for _, n := range []int{1, -2} {
		var err error
		h.event(func() { _, _, err = h.s.scaleCommand("web", n, n < 0) })
		if err == nil || !strings.Contains(err.Error(), "the other slots have errored or stopped") {
			t.Errorf("scale %d: %v", n, err)
		}
	}
	if got := h.s.apps[0].instances(); got != 3 {
		t.Errorf("%d instances after refused scale-downs, want 3", got)
	}
	for _, pid := range pids {
		if sigs := h.signals(pid); len(sigs) != 0 {
			t.Errorf("worker %d got %v from a refused scale-down", pid, sigs)
		}
	}
	// Down to 2 keeps slot 1, which works.
	var err error
	h.event(func() { _, _, err = h.s.scaleCommand("web", 2, false) })
	if err != nil {
		t.Errorf("scale 2: %v", err)
	}
}

// scale runs a scale command as one event.
func (h *harness) scale(app, n int) (err error) {
	h.event(func() { err = h.s.scale(h.s.apps[app], n, "gm2-init scale") })
	return err
}

func TestScaleCommand(t *testing.T) {
	api, worker := testApp("api", 2), testApp("worker", 1)
	worker.ExecMode = appspec.Fork
	h := newHarness(t, Options{Apps: []App{api, worker}})
	h.startAll()
	if err := h.scale(0, 4); err != nil {
		t.Fatal(err)
	}
	if n := h.s.apps[0].instances(); n != 4 {
		t.Fatalf("%d", n)
	}
	if err := h.scale(1, 2); err == nil || !strings.Contains(err.Error(), "fork mode") {
		t.Errorf("fork app scaled: %v", err)
	}
	if err := h.scale(0, 0); err == nil {
		t.Error("scaled to 0")
	}
	if err := h.scale(0, appspec.MaxWorkers); err == nil || !strings.Contains(err.Error(), "cap") {
		t.Errorf("past the cap: %v", err)
	}
	if err := h.scale(0, 1); err != nil {
		t.Fatal(err)
	}
	if n := h.s.apps[0].instances(); n != 1 {
		t.Errorf("%d", n)
	}
	// TTIN goes to the first cluster app.
	h.signal(sigTTIN)
	if h.s.apps[0].instances() != 2 || h.s.apps[1].instances() != 1 {
		t.Error("TTIN scaled the wrong app")
	}
}

func TestTTINCappedAtMaxWorkers(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", appspec.MaxWorkers)}})
	h.signal(sigTTIN)
	if h.s.apps[0].instances() != appspec.MaxWorkers || h.count("SIGTTIN ignored: 1025 workers in all would pass the cap of 1024") != 1 {
		t.Errorf("TTIN past the cap:\n%s", h.lines("SIGTTIN ignored: 1025 workers in all would pass the cap of 1024"))
	}
}

func TestSnapshotShape(t *testing.T) {
	api := reloadApp(2)
	api.Name = "api"
	api.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:3000")}
	api.MinReady = 0
	jobs := testApp("jobs", 1)
	h := newHarness(t, Options{Apps: []App{api, jobs}, Version: "test"})
	h.ready(h.pid(0, "api"))
	snap := h.snapshot()
	if len(snap.Apps) != 2 || snap.Apps[0].Name != "api" || snap.Apps[0].MinReady != 2 || snap.Apps[0].Ready != 1 {
		t.Errorf("apps %+v", snap.Apps)
	}
	if len(snap.Slots) != 3 || snap.Slots[2].App != "jobs" || snap.Slots[0].Pid == 0 {
		t.Errorf("slots %+v", snap.Slots)
	}
	if len(snap.Listeners) != 1 || snap.Listeners[0].App != "api" || snap.Listeners[0].Address != "0.0.0.0:3000" {
		t.Errorf("listeners %+v", snap.Listeners)
	}
	if snap.Instances != 3 || snap.Version != "test" || snap.ReadyWorkers() != 1 {
		t.Errorf("totals %+v", snap)
	}
}

// `gm2-init scale APP +N` is computed in the loop: two at once add up, and
// a count out of range is refused with what the app has.
func TestScaleCommandDeltasAddUp(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	for _, want := range [][2]int{{2, 3}, {3, 4}} {
		h.event(func() {
			from, to, err := h.s.scaleCommand("web", 1, true)
			if err != nil || from != want[0] || to != want[1] {
				t.Errorf("scale +1: %d → %d, %v; want %d → %d", from, to, err, want[0], want[1])
			}
		})
	}
	if n := h.s.apps[0].instances(); n != 4 {
		t.Fatalf("%d instances after two +1 from 2", n)
	}
	h.event(func() {
		if _, _, err := h.s.scaleCommand("web", -4, true); err == nil || !strings.Contains(err.Error(), "0 instances is out of range (1 to 1024; it has 4)") {
			t.Errorf("scale -4 of 4: %v", err)
		}
		// A raw request's delta may be any int: no wrap-around.
		if _, _, err := h.s.scaleCommand("web", math.MaxInt, true); err == nil || !strings.Contains(err.Error(), "1029 instances is out of range (1 to 1024; it has 4)") {
			t.Errorf("scale +MaxInt of 4: %v", err)
		}
		if _, _, err := h.s.scaleCommand("web", math.MinInt, true); err == nil || !strings.Contains(err.Error(), "-1021 instances is out of range (1 to 1024; it has 4)") {
			t.Errorf("scale MinInt of 4: %v", err)
		}
		if _, _, err := h.s.scaleCommand("api", 2, false); err == nil || !strings.Contains(err.Error(), `no app named "api"`) {
			t.Errorf("scale of an unknown app: %v", err)
		}
	})
}

// Slots removed while they wait out their backoff read stopped while a
// slot after them still drains (they are dropped together once it exits):
// their restart is cancelled, so "backoff" would say what will not happen.
func TestScaleDownDuringBackoff(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 3)}})
	h.startAll()
	h.exit(1, h.pid(1))
	h.wantState(1, status.Backoff)
	last := h.pid(2)
	h.event(func() { h.s.scaleCommand("web", 1, false) })
	h.wantState(1, status.Stopped)
	started := len(h.started())
	h.advance(time.Second) // the backoff would have ended
	if len(h.started()) != started {
		t.Fatal("a removed slot was restarted")
	}
	h.exit(0, last)
	if n := len(h.s.apps[0].slots); n != 1 {
		t.Errorf("%d slots once the last removed one drained, want 1", n)
	}
}

// A slot a scale-down removes shows its worker while it drains: its pid
// (the status table's PID, CPU and MEMORY) and the draining state, until
// the worker exits and the slot goes.
func TestScaledDownSlotShowsItsDrainingWorker(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	last := h.pid(1)
	h.event(func() { h.s.scaleCommand("web", 1, false) })
	snap := h.snapshot()
	if len(snap.Slots) != 2 || snap.Slots[1].Pid != last || snap.Slots[1].State != status.Draining {
		t.Fatalf("slots %+v: want slot 1 draining with pid %d", snap.Slots, last)
	}
	h.exit(0, last)
	if snap := h.snapshot(); len(snap.Slots) != 1 {
		t.Errorf("slots %+v once the worker exited, want 1", snap.Slots)
	}
}

// The cap is a maximum: an app can be scaled to exactly appspec.MaxWorkers.
func TestScaleToExactlyTheCap(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}})
	h.event(func() {
		if _, to, err := h.s.scaleCommand("web", appspec.MaxWorkers, false); err != nil || to != appspec.MaxWorkers {
			t.Errorf("scale to %d: %d, %v", appspec.MaxWorkers, to, err)
		}
	})
	if n := h.s.apps[0].instances(); n != appspec.MaxWorkers {
		t.Errorf("%d instances, want %d", n, appspec.MaxWorkers)
	}
}

// The counts told to whoever started gm2-init (STATUS=ready/total) leave a
// slot being removed out at once, while its worker still drains.
func TestScaleDownToldInTheLifecycleStatus(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.startAll()
	h.signal(sigTTOU)
	if got := h.life.calls[len(h.life.calls)-1]; got != "status 1/1" {
		t.Errorf("lifecycle %v, want status 1/1 last", h.life.calls)
	}
}

// --min-ready above the instance count asks for every instance, no more.
func TestSnapshotMinReadyCappedAtTheInstances(t *testing.T) {
	a := testApp("web", 2)
	a.MinReady = 5
	h := newHarness(t, Options{Apps: []App{a}})
	if snap := h.snapshot(); snap.Apps[0].MinReady != 2 || snap.MinReady != 2 {
		t.Errorf("min ready %d (app), %d (total); want 2", snap.Apps[0].MinReady, snap.MinReady)
	}
}

// During a replacement /status shows the slot's candidate beside its
// serving worker, and then the old worker draining; only ready workers
// count as ready (/readyz): never the one draining.
func TestSnapshotDuringAReplacement(t *testing.T) {
	h, old, cand := replacing(t, reloadApp(1))
	want := func(when string, states map[int]status.State) {
		t.Helper()
		snap := h.snapshot()
		got := map[int]status.State{}
		for _, w := range snap.Slots[0].Workers {
			got[w.Pid] = w.State
		}
		if len(got) != len(states) {
			t.Errorf("%s: workers %v, want %v", when, got, states)
		}
		for pid, st := range states {
			if got[pid] != st {
				t.Errorf("%s: worker %d %q, want %q", when, pid, got[pid], st)
			}
		}
		if snap.Apps[0].Ready != 1 || snap.ReadyWorkers() != 1 {
			t.Errorf("%s: %d ready (app), %d ready workers; want 1", when, snap.Apps[0].Ready, snap.ReadyWorkers())
		}
	}
	want("candidate starting", map[int]status.State{old: status.Ready, cand: status.Starting})
	h.ready(cand)
	want("old draining", map[int]status.State{cand: status.Ready, old: status.Draining})
}
