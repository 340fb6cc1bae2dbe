package spawn

import (
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/status"
)

func memoryApp(n int) App {
	a := reloadApp(n)
	a.MaxMemory = 300 << 20
	return a
}

func TestNoMemoryTimerWithoutALimit(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}, MemoryCheckInterval: 30 * time.Second})
	if h.s.memTimer != nil {
		t.Error("a memory timer runs with no --max-memory-restart")
	}
}

// A worker over the limit is replaced the reload way: the new one first,
// ready, then the old one stops.
func TestMemoryReplacement(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(2)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	old := h.pid(1)
	h.advance(time.Minute) // a bit of uptime
	h.sys.procs[old].memory = 400 << 20
	h.advance(30 * time.Second)
	cand := h.candidatePid(1)
	if len(h.signals(old)) != 0 {
		t.Fatal("old worker stopped before its replacement is ready")
	}
	l := h.lines("worker over --max-memory-restart; replacing it (new worker first, then the old one stops)")
	if len(l) != 1 || l[0]["rss_bytes"] != float64(400<<20) || l[0]["limit_bytes"] != float64(300<<20) {
		t.Fatalf("log %v", l)
	}
	h.ready(cand)
	if sigs := h.signals(old); len(sigs) != 1 {
		t.Fatalf("old worker got %v", sigs)
	}
	h.exit(-int(sigTERM), old)
	if h.pid(1) != cand || h.snapshot().Counters.MemoryRestarts != 1 {
		t.Errorf("slot 1 pid %d, memory restarts %d", h.pid(1), h.snapshot().Counters.MemoryRestarts)
	}
	h.wantState(1, status.Ready)
	if h.pid(0) == 0 || len(h.signals(h.pid(0))) != 0 {
		t.Error("slot 0 was touched")
	}
}

// The limit is below the app's baseline: a fresh worker is over it at once.
// gm2-init backs off and warns once instead of replacing in a loop.
func TestMemoryLimitBelowBaseline(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.sys.node = false
	replacements := 0
	for range 40 { // 20 minutes of checks
		if w := h.slot(0).current; w != nil {
			h.sys.procs[w.pid].memory = 500 << 20
		}
		h.advance(30 * time.Second)
		if sl := h.slot(0); sl.candidate != nil {
			replacements++
			old := sl.current.pid
			h.sys.procs[sl.candidate.pid].memory = 500 << 20
			h.ready(sl.candidate.pid)
			h.exit(0, old)
		}
	}
	if replacements > 10 {
		t.Errorf("%d replacements in 20 minutes: no backoff", replacements)
	}
	if n := h.count("worker is over --max-memory-restart right after it starts: the limit is below the app's baseline; raise it"); n != 1 {
		t.Errorf("%d baseline warnings, want 1", n)
	}
}

func TestMemoryCheckLeavesAReloadAlone(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(2)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	h.signal(sigHUP)
	for _, pid := range h.readyPids() {
		h.sys.procs[pid].memory = 1 << 30
	}
	h.advance(30 * time.Second)
	if h.count("worker over --max-memory-restart; replacing it (new worker first, then the old one stops)") != 0 {
		t.Error("memory replacement during a reload")
	}
}

// A reload reaching a slot whose memory replacement is under way replaces
// that replacement's candidate, which runs the code from before the
// reload, with one of its own: the bloated worker serves until the new
// code is ready, and the pass does not answer ok with old code running.
func TestReloadTakesOverAMemoryReplacement(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	old := h.pid(0)
	h.sys.procs[old].memory = 1 << 30
	h.advance(30 * time.Second)
	stale := h.candidatePid(0)
	h.signal(sigHUP)
	if h.slot(0).replacing != replaceReload {
		t.Fatalf("replacing %q", h.slot(0).replacing)
	}
	if sigs := h.signals(stale); len(sigs) != 1 || sigs[0] != sigTERM {
		t.Fatalf("the memory replacement's candidate %d got %v, want [SIGTERM]", stale, sigs)
	}
	cand := h.candidatePid(0)
	if w := h.worker(cand); w.gen != 1 {
		t.Fatalf("the pass's candidate runs generation %d", w.gen)
	}
	if len(h.signals(old)) != 0 {
		t.Fatal("the bloated worker was stopped before a replacement was ready")
	}
	h.exit(0, stale)
	h.ready(cand)
	h.exit(0, old)
	if h.pid(0) != cand {
		t.Fatalf("slot runs %d, want %d", h.pid(0), cand)
	}
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(1) {
		t.Errorf("reload %v", l)
	}
}

func TestFailedMemoryReplacementKeepsTheOld(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	old := h.pid(0)
	h.sys.procs[old].memory = 1 << 30
	h.advance(30 * time.Second)
	cand := h.candidatePid(0)
	h.exit(1, cand)
	if h.pid(0) != old || len(h.signals(old)) != 0 {
		t.Fatal("old worker touched")
	}
	if l := h.lines("memory replacement failed before ready; the old worker keeps serving"); len(l) != 1 || l[0]["pid"] != float64(cand) {
		t.Errorf("logged %v, want one line naming pid %d", l, cand)
	}
	h.advance(30 * time.Second)
	if h.slot(0).candidate != nil {
		t.Error("replaced again at the next check: no backoff")
	}
}

func TestMemoryTimerStopsAtShutdown(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.signal(sigTERM)
	if h.s.memTimer != nil {
		t.Error("memory timer left running")
	}
}

// checkUntilReplaced runs memory checks until slot i's replacement starts
// (a candidate, or the fork-mode stop), at most n of them; it reports
// whether one started.
func (h *harness) checkUntilReplaced(i int, n int) bool {
	h.t.Helper()
	for range n {
		h.advance(30 * time.Second)
		if sl := h.slot(i); sl.candidate != nil || sl.replacing != "" {
			return true
		}
	}
	return false
}

// A fork-mode app shares nothing: a new worker next to the old one would
// find the app's own ports taken, or run a queue consumer twice. Over the
// limit, its worker is stopped, then started again, as PM2 does (and as its
// reload does).
func TestForkModeMemoryRestartStopsThenStarts(t *testing.T) {
	a := memoryApp(1)
	a.ExecMode = appspec.Fork
	h := newHarness(t, Options{Apps: []App{a}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	old := h.pid(0)
	h.sys.procs[old].memory = 400 << 20
	h.advance(30 * time.Second)
	if h.slot(0).candidate != nil || len(h.started()) != 1 {
		t.Fatalf("a fork-mode worker got a replacement next to it (started %v)", h.started())
	}
	if sigs := h.signals(old); len(sigs) != 1 || sigs[0] != sigTERM {
		t.Fatalf("old worker got %v, want SIGTERM", sigs)
	}
	l := h.lines("worker over --max-memory-restart; restarting it (fork mode: stopped, then started again)")
	if len(l) != 1 || l[0]["rss_bytes"] != float64(400<<20) || l[0]["limit_bytes"] != float64(300<<20) {
		t.Fatalf("log %v", l)
	}
	h.advance(30 * time.Second) // a check while the old one drains: nothing
	if len(h.started()) != 1 {
		t.Fatalf("started %v while the old worker drains", h.started())
	}
	h.exit(-int(sigTERM), old)
	next := h.pid(0)
	if next == old {
		t.Fatal("not started again")
	}
	h.ready(next)
	h.wantState(0, status.Ready)
	if n := h.snapshot().Counters.MemoryRestarts; n != 1 {
		t.Errorf("memory restarts %d, want 1", n)
	}
	if h.slot(0).replacing != "" {
		t.Errorf("slot still replacing %q", h.slot(0).replacing)
	}
	// The slot is watched again: its next worker, once it grows past the
	// limit, is restarted too.
	h.sys.procs[next].memory = 100 << 20
	h.advance(30 * time.Second)
	h.sys.procs[next].memory = 400 << 20
	if !h.checkUntilReplaced(0, 2) || len(h.signals(next)) != 1 {
		t.Fatalf("the next worker over the limit was not restarted: signals %v", h.signals(next))
	}
}

// A reload that arrives while a fork-mode worker is being restarted for its
// memory waits for the old worker to be gone too, and counts the worker
// started next as its own.
func TestReloadDuringForkMemoryRestart(t *testing.T) {
	a := memoryApp(1)
	a.ExecMode = appspec.Fork
	h := newHarness(t, Options{Apps: []App{a}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	old := h.pid(0)
	h.sys.procs[old].memory = 400 << 20
	h.advance(30 * time.Second)
	h.signal(sigHUP)
	if len(h.started()) != 1 {
		t.Fatalf("started %v next to the draining fork-mode worker", h.started())
	}
	h.exit(-int(sigTERM), old)
	next := h.pid(0)
	h.ready(next)
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(1) {
		t.Errorf("reload %v", l)
	}
	if len(h.started()) != 2 {
		t.Errorf("started %v, want the old and one new worker", h.started())
	}
}

// The backoff earned by fresh workers over the limit at their first check
// ends with the first fresh worker that is under it: that worker is
// measured at its first check whatever the backoff, and once it grows past
// the limit it is replaced at the next check, as any worker that grew.
func TestMemoryBackoffEndsWithAWorkerUnderTheLimit(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.sys.procs[h.pid(0)].memory = 500 << 20
	for i := range 3 {
		if !h.checkUntilReplaced(0, 40) {
			t.Fatalf("replacement %d never started", i+1)
		}
		old, cand := h.pid(0), h.candidatePid(0)
		if i < 2 {
			h.sys.procs[cand].memory = 500 << 20 // over the limit from the start
		} else {
			h.sys.procs[cand].memory = 100 << 20 // this one is fine
		}
		h.ready(cand)
		h.exit(-int(sigTERM), old)
	}
	if n := h.count("worker is over --max-memory-restart right after it starts: the limit is below the app's baseline; raise it"); n != 1 {
		t.Fatalf("%d baseline warnings after 3 fresh workers over the limit, want 1", n)
	}
	w := h.pid(0)
	h.advance(30 * time.Second) // its first check: under the limit
	h.sys.procs[w].memory = 400 << 20
	h.advance(30 * time.Second)
	if h.slot(0).candidate == nil {
		t.Fatal("a worker that grew past the limit waits out the backoff of the fresh workers before it")
	}
	l := h.lines("worker over --max-memory-restart; replacing it (new worker first, then the old one stops)")
	if last := l[len(l)-1]; last["pid"] != float64(w) {
		t.Errorf("last replacement %v, want pid %d", last, w)
	}
}

// Memory replacements go --reload-batch at a time, like a reload's.
func TestMemoryReplacementsByBatch(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(3)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	for _, pid := range h.readyPids() {
		h.sys.procs[pid].memory = 400 << 20
	}
	h.advance(30 * time.Second)
	n := 0
	for i := range 3 {
		if h.slot(i).candidate != nil {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d replacements at once with --reload-batch 1", n)
	}
}

// The limit is a maximum: a worker using exactly that much is not over it.
func TestMemoryAtTheLimitIsNotOver(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.sys.procs[h.pid(0)].memory = 300 << 20
	h.advance(5 * time.Minute)
	if h.count("worker over --max-memory-restart; replacing it (new worker first, then the old one stops)") != 0 || len(h.started()) != 1 {
		t.Errorf("a worker at the limit, not over it, was replaced (started %v)", h.started())
	}
}

// A limit below the app's baseline backs off up to 32 check intervals
// between replacements, no more: a fixed limit is tried again within 16
// minutes at the default interval.
func TestMemoryBackoffIsCapped(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	var at []time.Time
	for range 400 {
		h.sys.procs[h.pid(0)].memory = 500 << 20
		h.advance(30 * time.Second)
		if sl := h.slot(0); sl.candidate != nil {
			at = append(at, h.clk.now)
			old, cand := sl.current.pid, sl.candidate.pid
			h.sys.procs[cand].memory = 500 << 20
			h.ready(cand)
			h.exit(0, old)
		}
	}
	var longest time.Duration
	for i := 1; i < len(at); i++ {
		longest = max(longest, at[i].Sub(at[i-1]))
	}
	if longest != 32*30*time.Second {
		t.Errorf("longest gap between replacements %v over %d replacements, want 16m (32 intervals)", longest, len(at))
	}
}

// A memory replacement that succeeds ends the back-off of the failed ones
// before it: the next failure waits 2 intervals again, not 4 (the
// checks fall 2 s after the failures here: 3 checks, not 5).
func TestMemoryFailuresResetBySuccess(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute) // measured under the limit
	h.sys.procs[h.pid(0)].memory = 400 << 20
	h.advance(30 * time.Second)
	h.exit(1, h.candidatePid(0)) // failed: 2 intervals from now
	if !h.checkUntilReplaced(0, 3) {
		t.Fatal("no second memory replacement")
	}
	old, cand := h.pid(0), h.candidatePid(0)
	h.ready(cand) // succeeded
	h.exit(0, old)
	h.advance(30 * time.Second) // measured under the limit
	h.sys.procs[cand].memory = 400 << 20
	if !h.checkUntilReplaced(0, 1) {
		t.Fatal("the grown worker was not replaced at the next check")
	}
	h.exit(1, h.candidatePid(0)) // failed again: one in a row
	if !h.checkUntilReplaced(0, 3) {
		t.Error("after a success, a failed memory replacement backs off more than 2 intervals")
	}
}
