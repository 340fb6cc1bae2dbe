package spawn

import (
	"slices"

	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"

	"github.com/gm2-init/gm2-init/internal/status"
)

// reloadApp is a wait-ready app: readiness is under the test's control.
func reloadApp(n int) App {
	a := testApp("web", n)
	a.WaitReady = true
	return a
}

// replacing starts a (slot 0 must exist) and sends SIGHUP: it returns
// slot 0's worker from before the reload and the candidate replacing it.
func replacing(t *testing.T, a App) (h *harness, old, cand int) {
	t.Helper()
	h = newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	old = h.pid(0)
	h.signal(sigHUP)
	return h, old, h.candidatePid(0)
}

func (h *harness) lastReload() map[string]any {
	h.t.Helper()
	l := h.lines("reload finished")
	if len(l) == 0 {
		h.t.Fatalf("no reload finished:\n%s", h.logs.String())
	}
	return l[len(l)-1]
}

func TestReloadReplacesSlotByBatch(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(3)}})
	h.startAll()
	old := h.readyPids()
	h.signal(sigHUP)
	if len(h.started()) != 4 {
		t.Fatalf("batch 1 started %d candidates", len(h.started())-3)
	}
	for i := range 3 {
		c := h.candidatePid(i)
		if st := h.sys.procs[c].spec; st.Slot != i {
			t.Fatalf("candidate for slot %d runs as slot %d", i, st.Slot)
		}
		if v, _ := envOf(h.sys.procs[c].spec, "GM2_INSTANCE"); v != itoa(i) {
			t.Fatalf("candidate GM2_INSTANCE=%s", v)
		}
		oldPid := h.pid(i)
		if len(h.signals(oldPid)) != 0 {
			t.Fatalf("old worker signalled before its replacement is ready")
		}
		h.ready(c)
		if sigs := h.signals(oldPid); len(sigs) != 1 || sigs[0] != sigTERM {
			t.Fatalf("old worker of slot %d got %v once its replacement was ready", i, sigs)
		}
		h.exit(0, oldPid)
	}
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(3) {
		t.Errorf("reload %v", l)
	}
	if slices.Equal(old, h.readyPids()) || len(h.readyPids()) != 3 {
		t.Errorf("ready %v before, %v after", old, h.readyPids())
	}
	if h.snapshot().Counters.Reloads["ok"] != 1 {
		t.Error("reload not counted")
	}
	want := []string{"reloading", "ready 3/3"}
	if got := h.life.calls[len(h.life.calls)-2:]; !slices.Equal(got, want) {
		t.Errorf("lifecycle %v", h.life.calls)
	}
}

func TestReloadBatchOfTwo(t *testing.T) {
	a := reloadApp(4)
	a.ReloadBatch = 2
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.signal(sigHUP)
	if n := len(h.started()); n != 6 {
		t.Fatalf("%d started, want 4 + a batch of 2", n)
	}
	h.ready(h.candidatePid(0))
	if n := len(h.started()); n != 7 {
		t.Fatalf("a finished slot did not let the next one start: %d", n)
	}
}

// A burst of HUPs during a pass runs exactly one more pass.
func TestHUPStormRunsExactlyOneMorePass(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(2)}})
	h.startAll()
	h.signal(sigHUP)
	for range 1000 {
		h.signal(sigHUP)
	}
	for range 2 { // two passes of two slots
		for i := range 2 {
			old := h.pid(i)
			h.ready(h.candidatePid(i))
			h.exit(0, old)
		}
	}
	if n := h.count("reload started"); n != 2 {
		t.Fatalf("%d passes after 1001 HUPs, want 2", n)
	}
	if h.s.apps[0].reload.inProgress || len(h.s.byPid) != 2 {
		t.Fatalf("in progress %v, %d workers", h.s.apps[0].reload.inProgress, len(h.s.byPid))
	}
}

func TestCandidateCrashIsRetriedAndTheOldKeepsServing(t *testing.T) {
	h, old, cand := replacing(t, reloadApp(1))
	h.exit(1, cand)
	if h.slot(0).current.pid != old || len(h.signals(old)) != 0 {
		t.Fatal("the old worker was touched after its replacement crashed")
	}
	if l := h.lines("replacement worker failed before ready; the old one keeps serving"); len(l) != 1 || l[0]["pid"] != float64(cand) {
		t.Errorf("logged %v, want one line naming pid %d", l, cand)
	}
	h.advance(100 * time.Millisecond) // retry
	h.ready(h.candidatePid(0))
	h.exit(0, old)
	if l := h.lastReload(); l["result"] != "ok" || l["failures"] != float64(1) {
		t.Errorf("reload %v", l)
	}
}

func TestReloadAbandonedWhenTheNewVersionNeverStarts(t *testing.T) {
	a := reloadApp(2)
	a.MaxRestarts = 2
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	old := h.readyPids()
	h.signal(sigHUP)
	for i := 1; i <= 3; i++ {
		h.exit(1, h.candidatePid(0))
		if i <= 2 {
			h.advance(backoff(i))
		}
	}
	l := h.lastReload()
	if !strings.HasPrefix(l["result"].(string), "failed: slot 0: replacement never became ready") {
		t.Errorf("reload %v", l)
	}
	if !slices.Equal(h.readyPids(), old) {
		t.Errorf("capacity changed: %v, want %v", h.readyPids(), old)
	}
	if h.snapshot().Counters.Reloads["failed"] != 1 {
		t.Error("failed reload not counted")
	}
}

// The old worker crashes while its replacement starts: the replacement
// takes over when ready; no restart is scheduled meanwhile.
func TestOldWorkerCrashesDuringItsReplacement(t *testing.T) {
	h, old, cand := replacing(t, reloadApp(1))
	h.exit(1, old)
	if sl := h.slot(0); sl.current != nil || sl.candidate == nil || sl.restart != nil {
		t.Fatalf("slot after the old crashed: current %v candidate %v restart %v", sl.current, sl.candidate, sl.restart)
	}
	h.ready(cand)
	h.wantState(0, status.Ready)
	if h.pid(0) != cand || h.lastReload()["result"] != "ok" {
		t.Errorf("pid %d, reload %v", h.pid(0), h.lastReload())
	}
}

// Both the old worker and its replacement fail: the slot restarts as after
// any crash, the pass goes on, and its result says a slot was not replaced.
func TestOldAndNewBothFail(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(2)}})
	h.startAll()
	h.signal(sigHUP)
	h.exit(1, h.pid(0))
	h.exit(1, h.candidatePid(0))
	h.wantState(0, status.Backoff)
	c1 := h.candidatePid(1) // the pass went on
	old1 := h.pid(1)
	h.ready(c1)
	h.exit(0, old1)
	if l := h.lastReload(); l["result"] != "failed: 1 slot(s) not replaced" {
		t.Errorf("reload %v", l)
	}
	h.advance(time.Second)
	h.ready(h.pid(0))
	h.wantState(0, status.Ready)
}

func TestScaleDownDuringReloadFinishesThePass(t *testing.T) {
	a := reloadApp(2)
	a.ReloadBatch = 2
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.signal(sigHUP)
	c0 := h.candidatePid(0)
	h.signal(sigTTOU)
	old0 := h.pid(0)
	h.ready(c0)
	h.exit(0, old0)
	if l := h.lastReload(); l["result"] != "ok" {
		t.Errorf("reload %v", l)
	}
	if n := h.s.apps[0].instances(); n != 1 {
		t.Errorf("%d instances", n)
	}
}

func TestScaleUpDuringReload(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(1)}})
	h.startAll()
	h.signal(sigHUP)
	h.signal(sigTTIN)
	h.ready(h.pid(1)) // the new slot is not part of the pass
	old := h.pid(0)
	h.ready(h.candidatePid(0))
	h.exit(0, old)
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(1) {
		t.Errorf("reload %v", l)
	}
	if len(h.readyPids()) != 2 {
		t.Errorf("ready %v", h.readyPids())
	}
}

// TERM while a candidate is starting: the candidate is stopped with the
// rest, the pass ends as failed, and nothing else starts (invariant 7).
func TestShutdownWhileACandidateStarts(t *testing.T) {
	a := reloadApp(2)
	h := newHarness(t, Options{Apps: []App{a}, ShutdownDelay: 5 * time.Second})
	h.startAll()
	h.signal(sigHUP)
	cand := h.candidatePid(0)
	h.signal(sigTERM)
	if sigs := h.signals(cand); len(sigs) != 1 || sigs[0] != sigTERM {
		t.Fatalf("candidate got %v at the shutdown", sigs)
	}
	// Logged as a warning: the shutdown was asked for, no error happened.
	if l := h.lastReload(); l["result"] != "failed: interrupted by shutdown" || l["level"] != "warn" {
		t.Errorf("reload %v", l)
	}
	h.ready(cand) // too late: it is draining
	h.signal(sigHUP)
	serving := h.readyPids()
	h.advance(5 * time.Second)
	for _, pid := range serving {
		if len(h.signals(pid)) != 1 {
			t.Errorf("worker %d got %v after the delay", pid, h.signals(pid))
		}
	}
	h.exit(0, append(serving, cand)...)
	if !h.s.finished || h.s.exitCode() != 0 {
		t.Errorf("finished %v exit %d", h.s.finished, h.s.exitCode())
	}
}

// Under --wait-ready a replacement that never said READY does not replace a
// worker that did: the reload of that slot fails after --listen-timeout.
func TestSilentReplacementDoesNotReplaceAReadyWorker(t *testing.T) {
	a := reloadApp(1)
	a.MaxRestarts = 0
	h, old, cand := replacing(t, a)
	h.advance(10 * time.Second) // --listen-timeout
	if h.pid(0) != old || len(h.signals(old)) != 0 {
		t.Fatal("the old worker was replaced by a silent one")
	}
	if sigs := h.signals(cand); len(sigs) != 1 || sigs[0] != sigTERM {
		t.Fatalf("silent candidate got %v", sigs)
	}
	h.exit(-int(sigTERM), cand)
	if l := h.lastReload(); !strings.HasPrefix(l["result"].(string), "failed") {
		t.Errorf("reload %v", l)
	}
}

// A worker that was itself ready by timeout may be replaced by one that
// is too.
func TestSilentReplacementOfASilentWorker(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(1)}})
	h.advance(10 * time.Second) // ready by --listen-timeout
	old := h.pid(0)
	h.signal(sigHUP)
	h.advance(10 * time.Second)
	if len(h.signals(old)) != 1 {
		t.Fatal("old silent worker not replaced")
	}
}

func TestReloadRevivesAnErroredSlot(t *testing.T) {
	a := reloadApp(2)
	a.MaxRestarts = 0
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.exit(1, h.pid(1))
	h.wantState(1, status.Errored)
	h.signal(sigHUP)
	old0 := h.pid(0)
	h.ready(h.candidatePid(0))
	h.exit(0, old0)
	c1 := h.candidatePid(1)
	h.ready(c1)
	h.wantState(1, status.Ready)
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(2) {
		t.Errorf("reload %v", l)
	}
}

func TestReloadOneAppOfTwo(t *testing.T) {
	api, jobs := reloadApp(2), reloadApp(1)
	api.Name, jobs.Name = "api", "jobs"
	h := newHarness(t, Options{Apps: []App{api, jobs}})
	h.startAll()
	jobsPid := h.pid(0, "jobs")
	h.event(func() { h.s.startReload(h.s.apps[0], "control command") })
	for i := range 2 {
		old := h.pid(i, "api")
		h.ready(h.candidatePid(i, "api"))
		h.exit(0, old)
	}
	if h.pid(0, "jobs") != jobsPid || h.slot(0, "jobs").candidate != nil {
		t.Error("the other app was reloaded too")
	}
	if _, err := h.s.appsNamed([]string{"nope"}); err == nil || !strings.Contains(err.Error(), `no app named "nope" (apps: api, jobs)`) {
		t.Errorf("unknown app: %v", err)
	}
}

func TestHUPDuringShutdownIsIgnored(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(1)}, ShutdownDelay: time.Second})
	h.startAll()
	h.signal(sigTERM)
	for range 3 {
		h.signal(sigHUP)
	}
	if h.count("reload started") != 0 || len(h.started()) != 1 {
		t.Error("a reload started during the shutdown")
	}
	// Said, once for the storm.
	if n := h.count("SIGHUP ignored: gm2-init is shutting down"); n != 1 {
		t.Errorf("%d lines say the SIGHUPs were ignored, want 1", n)
	}
}

// forkReloading starts a wait-ready fork-mode app and sends it SIGHUP; it
// returns the worker from before the reload.
func forkReloading(t *testing.T) (*harness, int) {
	t.Helper()
	a := reloadApp(1)
	a.ExecMode = appspec.Fork
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	old := h.pid(0)
	h.signal(sigHUP)
	return h, old // no candidate: a fork-mode slot stops first
}

// A fork-mode app binds its own ports: its reload stops the worker, then
// starts the next one once it is gone.
func TestForkAppReloadStopsThenStarts(t *testing.T) {
	h, old := forkReloading(t)
	if h.slot(0).candidate != nil || len(h.started()) != 1 {
		t.Fatal("a fork app got a worker next to the old one")
	}
	if sigs := h.signals(old); len(sigs) != 1 {
		t.Fatalf("old worker got %v", sigs)
	}
	// From the stop signal until the next worker is ready, the slot is
	// paused on purpose: /readyz does not wait for it (the app's other
	// workers, or the other apps, serve meanwhile).
	paused := func(want int) {
		t.Helper()
		if got := h.snapshot().Apps[0].Paused; got != want {
			t.Errorf("paused slots %d, want %d", got, want)
		}
	}
	paused(1)
	h.exit(0, old)
	next := h.pid(0)
	if next == old {
		t.Fatal("not started again")
	}
	paused(1)
	h.ready(next)
	paused(0)
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(1) {
		t.Errorf("reload %v", l)
	}
	// The next worker crashes before ready: that reload failed.
	h.signal(sigHUP)
	h.exit(0, next)
	h.exit(1, h.pid(0))
	if l := h.lastReload(); l["result"] != "failed: 1 slot(s) not replaced" {
		t.Errorf("reload %v", l)
	}
}

// A replacement that holds none of the passed sockets never replaces the
// old worker; at --listen-timeout the replacement has failed.
func TestReplacementHoldingNoSocketFails(t *testing.T) {
	a := reloadApp(1)
	a.MaxRestarts = 0
	a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:8080")}
	h, old, cand := replacing(t, a)
	h.sys.procs[cand].ports = PortCheck{Checked: true, HoldsNone: true, Wrong: true, Message: "closed the passed socket"}
	h.ready(cand)
	if h.pid(0) != old || len(h.signals(old)) != 0 {
		t.Fatal("replaced by a worker that holds no passed socket")
	}
	h.advance(10 * time.Second)
	if sigs := h.signals(cand); len(sigs) != 1 {
		t.Fatalf("candidate got %v", sigs)
	}
	if l := h.lastReload(); !strings.HasPrefix(l["result"].(string), "failed") {
		t.Errorf("reload %v", l)
	}
}

// A pass that ends within its own start (every replacement fails to start
// and no retry is allowed) still answers the `gm2-init reload` that asked
// for it: the waiter is in place before the pass starts.
func TestReloadCommandAnsweredWhenThePassEndsAtOnce(t *testing.T) {
	a := reloadApp(1)
	a.MaxRestarts = 0
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	h.sys.failStarts = 10
	done := h.reloadCommand()
	err, ok := sentBefore(done)
	if !ok {
		t.Fatalf("no answer although the pass ended:\n%s", h.logs.String())
	}
	if err == nil || !strings.Contains(err.Error(), "web: ") {
		t.Fatalf("answer %v, want the failed pass of web", err)
	}
	if len(h.s.reloadWaiters) != 0 {
		t.Fatalf("%d waiters left", len(h.s.reloadWaiters))
	}
}

// A `gm2-init reload` queued behind the pass under way gets an answer when
// a shutdown begins before its pass could run.
func TestReloadCommandAnsweredAtShutdown(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(1)}})
	h.startAll()
	h.signal(sigHUP) // a pass under way: its candidate is not ready
	// first waits for the next pass (the current one may predate its
	// request); so does second.
	first := h.reloadCommand()
	second := h.reloadCommand()
	if _, ok := sentBefore(first); ok {
		t.Fatal("answered before any pass ended")
	}
	h.signal(sigTERM)
	for name, done := range map[string]chan error{"first": first, "second": second} {
		err, ok := sentBefore(done)
		if !ok || err == nil {
			t.Errorf("%s waiter: answer %v (answered %v), want an error at shutdown", name, err, ok)
		}
	}
	if err := h.s.requestReload(h.s.apps, make(chan error, 1)); err == nil {
		t.Error("a reload was accepted during the shutdown")
	}
}

// A reload that reaches a slot whose worker is still starting starts the
// slot's replacement beside it; that old worker becoming ready then ends
// nothing: the pass waits for the new one, and gm2-init reload does not
// answer ok while the slot runs the old code.
func TestReloadOfAStartingWorker(t *testing.T) {
	a := reloadApp(2)
	a.ReloadBatch = 2
	h := newHarness(t, Options{Apps: []App{a}})
	h.ready(h.pid(1))
	done := h.reloadCommand()
	old, cand := h.pid(0), h.candidatePid(0)
	h.ready(old) // the worker from before the pass
	if got := h.slot(0).replacing; got != replaceReload {
		t.Fatalf("slot 0's replacement ended (%q) when its old worker became ready", got)
	}
	h.ready(h.candidatePid(1))
	select {
	case err := <-done:
		t.Fatalf("gm2-init reload answered (%v) with slot 0 on the old code", err)
	default:
	}
	h.ready(cand)
	if h.pid(0) != cand {
		t.Fatalf("slot 0 runs %d, want its replacement %d", h.pid(0), cand)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(2) {
		t.Errorf("reload %v", l)
	}
}

// A fork-mode slot's new worker that ends before it is ready ends the pass;
// when a reload was requested meanwhile, the next pass starts the slot
// again at once, and the backoff restart decided for the exit is dropped:
// one worker, not two.
func TestForkReloadPendingPassAfterAFailedStart(t *testing.T) {
	h, old := forkReloading(t)
	h.exit(0, old) // stopped for the reload
	next := h.lastStarted()
	h.signal(sigHUP) // pending
	h.exit(1, next)  // the new code dies before it is ready
	third := h.lastStarted()
	if third == next || h.s.byPid[third] == nil || h.s.byPid[third].gen != 2 {
		t.Fatalf("the pending pass did not start a generation-2 worker (last started %d)", third)
	}
	if h.slot(0).restart != nil {
		t.Fatal("a backoff restart is still pending beside the pending pass's worker")
	}
	started := len(h.started())
	h.advance(time.Second)
	if n := len(h.started()); n != started {
		t.Fatalf("%d more workers started for one slot", n-started)
	}
	h.ready(third)
	h.wantState(0, status.Ready)
	if h.pid(0) != third {
		t.Fatalf("slot runs %d, want %d", h.pid(0), third)
	}
	if l := h.lastReload(); l["result"] != "ok" {
		t.Errorf("second pass %v", l)
	}
}

// A slot whose replacement is waiting to retry, whose old worker then
// crashes and whose restart fails to start (EAGAIN), is still replaced by
// the pass: the failed restart is a crash of the slot's, not the end of
// its replacement.
func TestReloadSurvivesAFailedRestartOfTheOldWorker(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(1)}})
	h.startAll()
	h.advance(time.Minute)
	done := h.reloadCommand()
	h.exit(1, h.candidatePid(0))
	h.advance(100 * time.Millisecond)
	h.exit(1, h.candidatePid(0)) // the retry is due in 200 ms
	h.exit(1, h.pid(0))          // the old worker crashes: restart due in 100 ms
	h.sys.failStarts = 1
	h.advance(100 * time.Millisecond) // that restart cannot start
	select {
	case err := <-done:
		t.Fatalf("gm2-init reload answered %v after a failed restart", err)
	default:
	}
	for range 10 {
		for _, w := range h.s.byPid {
			if w.state == status.Starting {
				h.ready(w.pid)
			}
		}
		h.advance(time.Second)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w := h.s.apps[0].slots[0].current; w == nil || w.gen != 1 {
		t.Fatalf("the slot does not run the new code: %+v", w)
	}
}

// The answer to `gm2-init reload` names each app whose pass failed, once:
// the control command puts "gm2-init reload: " before it, so the error
// itself does not say "reload" again.
func TestReloadWaiterError(t *testing.T) {
	api, web := &app{name: "api"}, &app{name: "web"}
	api.reload.generation, web.reload.generation = 1, 1
	done := make(chan error, 1)
	s := &Supervisor{reloadWaiters: []*reloadWaiter{{want: map[*app]uint64{api: 1, web: 1}, done: done}}}
	s.reloadEnded(api, "failed: 1 slot(s) not replaced")
	select {
	case err := <-done:
		t.Fatalf("answered before web's pass ended: %v", err)
	default:
	}
	s.reloadEnded(web, "failed: abandoned: gm2-init is shutting down")
	err := <-done
	if want := "api: failed: 1 slot(s) not replaced; web: failed: abandoned: gm2-init is shutting down"; err == nil || err.Error() != want {
		t.Errorf("error %v\nwant %s", err, want)
	}
}

// A slot its restart policy stopped for good (a one-shot task that ended:
// a migration) is left alone by a reload, SIGHUP or `gm2-init reload`: the
// task does not run twice, and its app's pass is ok, not failed by a
// worker that exited before it was ever ready.
func TestReloadLeavesAOneShotTaskAlone(t *testing.T) {
	for _, mode := range []appspec.ExecMode{appspec.Cluster, appspec.Fork} {
		t.Run(string(mode), func(t *testing.T) {
			task, web := testApp("migrate", 1), reloadApp(2)
			task.Restart, task.ExecMode = appspec.Never, mode
			h := newHarness(t, Options{Apps: []App{task, web}})
			h.exit(0, h.pid(0, "migrate"))
			h.wantState(0, status.Stopped, "migrate")
			for i := range 2 {
				h.ready(h.pid(i, "web"))
			}
			starts := len(h.started())
			olds := []int{h.pid(0, "web"), h.pid(1, "web")}
			h.signal(sigHUP)
			for i, old := range olds {
				h.ready(h.candidatePid(i, "web"))
				h.exit(0, old)
			}
			for _, l := range h.lines("reload finished") {
				if l["result"] != "ok" {
					t.Errorf("reload %v", l)
				}
			}
			if n := len(h.started()) - starts; n != 2 {
				t.Errorf("%d workers started by the reload, want the 2 of web", n)
			}
			h.wantState(0, status.Stopped, "migrate")
		})
	}
}

// A fork-mode reload whose next worker cannot even be started has failed:
// the pass ends at once (the slot restarts with backoff), it does not wait
// for the restart.
func TestForkReloadWhoseStartFails(t *testing.T) {
	h, old := forkReloading(t)
	h.sys.failStarts = 1
	h.exit(0, old)
	h.wantState(0, status.Backoff)
	if l := h.lastReload(); l["result"] != "failed: 1 slot(s) not replaced" {
		t.Errorf("reload %v", l)
	}
}

// `gm2-init reload` during a pass is served by the pass that follows it:
// the pass under way may predate the new code, so its end answers nothing.
func TestReloadCommandWaitsForTheNextPass(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(1)}})
	h.startAll()
	h.signal(sigHUP)
	done := h.reloadCommand()
	old := h.pid(0)
	h.ready(h.candidatePid(0))
	h.exit(0, old) // the first pass ends ok
	if err, ok := sentBefore(done); ok {
		t.Fatalf("answered %v at the end of the pass under way when asked", err)
	}
	old = h.pid(0)
	cand := h.candidatePid(0)
	if gen := h.worker(cand).gen; gen != 2 {
		t.Fatalf("the next pass's candidate has generation %d", gen)
	}
	h.ready(cand)
	h.exit(0, old)
	if err, ok := sentBefore(done); !ok || err != nil {
		t.Fatalf("answer %v (answered %v) after the next pass, want ok", err, ok)
	}
}

// Two apps reloaded at once are one reload for whoever started gm2-init
// (systemd's RELOADING=1, then READY=1): said once, and ready only once
// every app's pass has ended.
func TestReloadOfTwoAppsIsOneLifecycleReload(t *testing.T) {
	api, jobs := reloadApp(1), reloadApp(1)
	api.Name, jobs.Name = "api", "jobs"
	h := newHarness(t, Options{Apps: []App{api, jobs}})
	h.startAll()
	h.life.calls = nil
	h.signal(sigHUP)
	said := func() (reloading, ready int) {
		for _, c := range h.life.calls {
			switch {
			case c == "reloading":
				reloading++
			case strings.HasPrefix(c, "ready "):
				ready++
			}
		}
		return
	}
	if r, _ := said(); r != 1 {
		t.Fatalf("lifecycle %v: reloading said %d times, want once", h.life.calls, r)
	}
	for i, name := range []string{"api", "jobs"} {
		old := h.pid(0, name)
		h.ready(h.candidatePid(0, name))
		h.exit(0, old)
		if _, n := said(); n != i {
			t.Fatalf("lifecycle %v after %s's pass: ready said %d times, want %d", h.life.calls, name, n, i)
		}
	}
	if got := h.life.calls[len(h.life.calls)-1]; got != "ready 2/2" {
		t.Errorf("lifecycle %v, want ready 2/2 last", h.life.calls)
	}
}

// Removing the slot a pass is waiting for ends the pass, and `gm2-init
// reload` is answered: nothing of the pass is left to wait for.
func TestScaleDownOfTheSlotAPassWaitsFor(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{reloadApp(2)}})
	h.startAll()
	done := h.reloadCommand()
	old := h.pid(0)
	h.ready(h.candidatePid(0))
	h.exit(0, old)
	cand := h.candidatePid(1)
	h.signal(sigTTOU) // slot 1 goes, its candidate with it
	if sigs := h.signals(cand); len(sigs) != 1 {
		t.Fatalf("candidate of the removed slot got %v", sigs)
	}
	if err, ok := sentBefore(done); !ok || err != nil {
		t.Fatalf("answer %v (answered %v) once the last slot of the pass was removed, want ok", err, ok)
	}
	if l := h.lastReload(); l["result"] != "ok" || l["replaced"] != float64(1) {
		t.Errorf("reload %v", l)
	}
}

// /status's reload of several apps: generations add up, in progress if any
// is, and the last result is a failure if any app's is.
func TestSnapshotReloadOfTwoApps(t *testing.T) {
	api, jobs := reloadApp(1), reloadApp(1)
	api.Name, jobs.Name = "api", "jobs"
	api.MaxRestarts = 0
	h := newHarness(t, Options{Apps: []App{api, jobs}})
	h.startAll()
	h.signal(sigHUP)
	if r := h.snapshot().Reload; !r.InProgress || r.Generation != 2 {
		t.Errorf("reload %+v during the passes", r)
	}
	h.exit(1, h.candidatePid(0, "api")) // api's pass is abandoned
	old := h.pid(0, "jobs")
	h.ready(h.candidatePid(0, "jobs"))
	h.exit(0, old)
	r := h.snapshot().Reload
	if r.InProgress || r.Generation != 2 || !strings.HasPrefix(r.LastResult, "failed: slot 0") {
		t.Errorf("reload %+v, want api's failure", r)
	}
}

// A one-shot task (--restart on-failure) that ends while the pass waits to
// retry its replacement is stopped for good like one that ended before the
// pass: the retry does not run it again, and the pass is ok.
func TestOneShotTaskEndingDuringAReplacementRetry(t *testing.T) {
	a := reloadApp(1)
	a.Restart = appspec.OnFailure
	h := newHarness(t, Options{Apps: []App{a}})
	h.startAll()
	old := h.pid(0)
	done := h.reloadCommand()
	h.exit(1, h.candidatePid(0)) // the retry is due in 100 ms
	h.exit(0, old)               // the task ends: stopped for good
	h.wantState(0, status.Stopped)
	if h.s.finished {
		if _, answered := sentBefore(done); !answered {
			t.Fatal("gm2-init ended with the pass under way: gm2-init reload unanswered")
		}
	}
	started := len(h.started())
	h.advance(time.Second)
	if n := len(h.started()) - started; n != 0 {
		t.Errorf("%d workers started for a task that ended", n)
	}
	h.wantState(0, status.Stopped)
	if err, ok := sentBefore(done); !ok || err != nil {
		t.Errorf("answer %v (answered %v), want ok", err, ok)
	}
	if !h.s.finished {
		t.Error("not finished: the last task ended")
	}
}
