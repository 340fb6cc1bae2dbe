package spawn

import (
	"testing"
	"time"

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

// A reload taking over a memory replacement under way counts it as its own.
func TestReloadTakesOverAMemoryReplacement(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{memoryApp(1)}, MemoryCheckInterval: 30 * time.Second})
	h.startAll()
	h.advance(time.Minute)
	old := h.pid(0)
	h.sys.procs[old].memory = 1 << 30
	h.advance(30 * time.Second)
	cand := h.candidatePid(0)
	h.signal(sigHUP)
	if h.slot(0).replacing != replaceReload {
		t.Fatalf("replacing %q", h.slot(0).replacing)
	}
	h.ready(cand)
	h.exit(0, old)
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
	h.exit(1, h.candidatePid(0))
	if h.pid(0) != old || len(h.signals(old)) != 0 {
		t.Fatal("old worker touched")
	}
	if h.count("memory replacement failed before ready; the old worker keeps serving") != 1 {
		t.Error("not logged")
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
