package spawn

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/status"
)

func TestStartGivesEachSlotItsEnvironment(t *testing.T) {
	a := testApp("web", 3)
	a.Env = []string{"NODE_ENV=production", "PATH=/app/bin"}
	a.InstanceVar = "INSTANCE_ID"
	a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:8080")}
	h := newHarness(t, Options{Apps: []App{a}})
	if got := len(h.started()); got != 3 {
		t.Fatalf("%d workers started, want 3", got)
	}
	for i, p := range h.sys.order {
		want := map[string]string{
			"GM2_INSTANCE": itoa(i), "NODE_APP_INSTANCE": itoa(i), "INSTANCE_ID": itoa(i), "GM2_INSTANCES": "3",
			"NODE_ENV": "production", "PATH": "/app/bin", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http",
		}
		for k, v := range want {
			if got, _ := envOf(p.spec, k); got != v {
				t.Errorf("worker %d: %s=%q, want %q", i, k, got, v)
			}
		}
		// Inherited values of per-worker variables are replaced, never
		// doubled.
		n := 0
		for _, kv := range p.spec.Env {
			if len(kv) > 13 && kv[:13] == "GM2_INSTANCE=" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("worker %d has %d GM2_INSTANCE entries", i, n)
		}
		if !p.spec.Layout.NeedsShim() || len(p.spec.Layout.Listeners) != 1 {
			t.Errorf("worker %d: layout %+v", i, p.spec.Layout)
		}
	}
}

func TestLayoutNumbersDescriptors(t *testing.T) {
	for _, c := range []struct {
		listeners       int
		pre, ch         bool
		wantPre, wantCh int
		shim            bool
	}{
		{0, false, false, 0, 0, false},
		{2, false, false, 0, 0, true},
		{2, true, false, 5, 0, true},
		{2, true, true, 5, 6, true},
		{0, false, true, 0, 3, false},
		{1, false, true, 0, 4, true},
	} {
		l := NewLayout(make([]*os.File, c.listeners), c.pre, c.ch)
		if l.PreloadFD != c.wantPre || l.ChannelFD != c.wantCh || l.NeedsShim() != c.shim {
			t.Errorf("%+v: got preload %d channel %d shim %v", c, l.PreloadFD, l.ChannelFD, l.NeedsShim())
		}
	}
}

func TestReadyAfterMinUptimeAndLifecycle(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.advance(999 * time.Millisecond)
	if len(h.readyPids()) != 0 {
		t.Fatal("ready before --min-uptime")
	}
	h.advance(time.Millisecond)
	if len(h.readyPids()) != 2 {
		t.Fatalf("ready %v after --min-uptime", h.readyPids())
	}
	want := []string{"status 0/2", "status 1/2", "status 2/2", "ready 2/2"}
	if !slices.Equal(h.life.calls, want) {
		t.Errorf("lifecycle %v, want %v", h.life.calls, want)
	}
}

// A slot whose first worker dies does not hold back the end of the start
// until it errors (about 146 s of backoff with the defaults, past
// systemd's 90 s start timeout): once every other slot is ready and it
// waits out its backoff, READY=1 goes up with STATUS=1/2, and the slot's
// later attempts do not send it again.
func TestCrashLoopingSlotDoesNotHoldBackTheStart(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	h.exit(1, h.pid(1))
	h.wantState(1, status.Backoff)
	h.advance(time.Second) // slot 0's --min-uptime; slot 1 restarted meanwhile
	h.exit(1, h.pid(1))
	if !slices.Contains(h.life.calls, "ready 1/2") {
		t.Fatalf("lifecycle %v: the start did not end with slot 1 crash-looping", h.life.calls)
	}
	n := 0
	for _, c := range h.life.calls {
		if strings.HasPrefix(c, "ready ") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("lifecycle %v: READY=1 said %d times", h.life.calls, n)
	}
}

// Without --wait-ready, a worker that says READY=1 unasked is ready then,
// before --min-uptime: what a worker says of itself is taken; --wait-ready
// only makes gm2-init wait for it.
func TestReadyUnaskedCountsWithoutWaitReady(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}})
	h.advance(100 * time.Millisecond)
	h.notify(h.pid(0), "READY=1")
	if len(h.readyPids()) != 1 || h.slot(0).current.readyBy != "READY=1" {
		t.Fatalf("ready %v by %q, want ready by READY=1 before --min-uptime", h.readyPids(), h.slot(0).current.readyBy)
	}
}

func TestWaitReadyNeedsTheWorkersWord(t *testing.T) {
	a := testApp("web", 2)
	a.WaitReady = true
	h := newHarness(t, Options{Apps: []App{a}})
	h.advance(5 * time.Second)
	if len(h.readyPids()) != 0 {
		t.Fatal("ready without READY=1")
	}
	h.ready(h.pid(0))
	// A READY=1 from a descendant of the worker (sh -c that did not exec)
	// counts for the worker.
	h.sys.ancestors[4242] = h.pid(1)
	h.notify(4242, "READY=1\nSTATUS=warming up")
	if len(h.readyPids()) != 2 {
		t.Fatalf("ready %v", h.readyPids())
	}
	if h.slot(1).current.statusText != "warming up" {
		t.Errorf("STATUS= not kept: %q", h.slot(1).current.statusText)
	}
	if h.slot(0).current.readyBy != "READY=1" {
		t.Errorf("ready by %q", h.slot(0).current.readyBy)
	}
}

func TestListenTimeoutMakesASilentWorkerReady(t *testing.T) {
	a := testApp("web", 1)
	a.WaitReady = true
	h := newHarness(t, Options{Apps: []App{a}})
	h.advance(10 * time.Second)
	h.wantState(0, status.Ready)
	if by := h.slot(0).current.readyBy; by != "listen-timeout" {
		t.Errorf("ready by %q", by)
	}
	if h.count("worker did not report ready in time; treating it as ready") != 1 {
		t.Error("no warning")
	}
}

func TestProcessSendReady(t *testing.T) {
	a := testApp("web", 1)
	a.WaitReady = true
	h := newHarness(t, Options{Apps: []App{a}})
	if h.sys.order[0].spec.Layout.ChannelFD != 3 {
		t.Fatalf("no Node IPC channel at fd 3: %+v", h.sys.order[0].spec.Layout)
	}
	h.nodeReady(h.pid(0))
	h.wantState(0, status.Ready)
}

func TestPreloadReadinessNeedsEveryPassedListener(t *testing.T) {
	a := testApp("node", 1)
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	a.Listeners = []*sockets.Listener{
		testListener("http", sockets.TCP, "0.0.0.0:3000"),
		testListener("logs", sockets.Unixgram, "/run/logs.sock"), // Node cannot take it: not waited for
		testListener("admin", sockets.TCP, "0.0.0.0:3001"),
	}
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	if l := h.sys.order[0].spec.Layout; l.PreloadFD != 6 {
		t.Fatalf("preload pipe at %d, want 6", l.PreloadFD)
	}
	h.preload(pid, preload.KindHello, 0)
	h.advance(2 * time.Second) // past --min-uptime: the preload decides
	h.wantState(0, status.Starting)
	h.preload(pid, preload.KindListening, 3)
	h.wantState(0, status.Starting)
	h.preload(pid, preload.KindListening, 5)
	h.wantState(0, status.Ready)
	// The next worker of the slot (a restart) waits for the same sockets.
	h.exit(1, pid)
	h.advance(time.Second)
	next := h.pid(0)
	h.preload(next, preload.KindListening, 3)
	h.wantState(0, status.Starting)
	h.preload(next, preload.KindListening, 5)
	h.wantState(0, status.Ready)
}

func TestNodeWorkerIsNotReadyByTheClock(t *testing.T) {
	a := testApp("node", 1)
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	h := newHarness(t, Options{Apps: []App{a}})
	h.sys.procs[h.pid(0)].node = true
	h.advance(5 * time.Second)
	h.wantState(0, status.Starting)
	h.advance(5 * time.Second) // --listen-timeout
	h.wantState(0, status.Ready)
}

func TestZeroConfigNodeWorkerReadyAtItsFirstListen(t *testing.T) {
	a := testApp("node", 1)
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	h := newHarness(t, Options{Apps: []App{a}})
	h.preload(h.pid(0), preload.KindListening, 3)
	h.wantState(0, status.Ready)
}

// A ready worker leaves no timer behind: --listen-timeout's would wake an
// idle gm2-init up 10 s after every start.
func TestReadyWorkerLeavesNoTimer(t *testing.T) {
	a := testApp("node", 2)
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	h := newHarness(t, Options{Apps: []App{a}})
	if n := h.clk.pending(); n != 4 {
		t.Fatalf("%d timers while 2 workers start, want 4 (--min-uptime and --listen-timeout each)", n)
	}
	h.preload(h.pid(0), preload.KindListening, 3)
	h.nodeReady(h.pid(1))
	h.wantState(0, status.Ready)
	h.wantState(1, status.Ready)
	if n := h.clk.pending(); n != 0 {
		t.Errorf("%d timers pending with every worker ready, want 0", n)
	}
}

func TestReadyOfAnExitedWorkerIsIgnored(t *testing.T) {
	a := testApp("web", 1)
	a.WaitReady = true
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	h.sys.procs[pid].exited = true // its exit is queued behind READY=1
	h.ready(pid)
	h.wantState(0, status.Starting)
}

func TestNotifyFromAStrangerIsRateLimited(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}})
	for range 1000 {
		h.notify(9999, "READY=1")
	}
	const msg = "notify message from a process that is not a worker nor a descendant of one; dropped"
	if n := h.count(msg); n != 1 {
		t.Fatalf("%d warnings for 1000 datagrams, want 1", n)
	}
	h.advance(spoofInterval) // the count of the flood that stopped
	l := h.lines(msg)
	if len(l) != 2 || l[1]["datagrams"] != float64(999) {
		t.Fatalf("second warning %v", l)
	}
}

func TestLateStoppingIsNoSpoofing(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}})
	pid := h.pid(0)
	h.signal(sigTERM)
	h.exit(0, pid)
	h.notify(pid, "STOPPING=1")
	if h.count("notify message from a process that is not a worker nor a descendant of one; dropped") != 0 {
		t.Error("a worker's STOPPING=1 read after its exit was called spoofing")
	}
}

func TestStartFailureBacksOff(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 1)}})
	h.exit(1, h.pid(0))
	h.sys.failStarts = 1
	h.advance(100 * time.Millisecond)
	h.wantState(0, status.Backoff)
	if h.count("cannot start worker") != 1 {
		t.Error("start failure not logged")
	}
	h.advance(200 * time.Millisecond)
	h.wantState(0, status.Starting)
}

func TestForegroundOnlyForOneWorker(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("sh", 1)}, Foreground: true})
	if !h.sys.order[0].spec.Foreground {
		t.Error("a single worker does not get the terminal")
	}
	h2 := newHarness(t, Options{Apps: []App{testApp("sh", 2)}, Foreground: true})
	for _, p := range h2.sys.order {
		if p.spec.Foreground {
			t.Error("one of two workers got the terminal")
		}
	}
}

// A worker that says READY=1 but holds none of the passed sockets (puma
// without --bind-to-activated-sockets=only: it closed them and bound a port
// of its own) is not ready, and the log says why, once.
func TestWorkerHoldingNoPassedSocketIsNotReady(t *testing.T) {
	a := testApp("puma", 1)
	a.WaitReady = true
	a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:8080")}
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	msg := "process 101 (puma) closed the passed socket http (0.0.0.0:8080) and listens on 0.0.0.0:9292: add --bind-to-activated-sockets=only"
	h.sys.procs[pid].ports = PortCheck{Checked: true, HoldsNone: true, Wrong: true, Odd: true, Message: msg, Server: "puma"}
	h.ready(pid)
	h.wantState(0, status.Starting)
	h.advance(10 * time.Second) // --listen-timeout does not make it ready either
	h.wantState(0, status.Starting)
	// But the start is over: a parent waiting for READY=1 hears of it,
	// with no worker ready.
	if !slices.Contains(h.life.calls, "ready 0/1") {
		t.Errorf("lifecycle %v, want ready 0/1 after --listen-timeout", h.life.calls)
	}
	if l := h.lines(msg); len(l) != 1 || l[0]["level"] != "warn" || l[0]["server"] != "puma" {
		t.Errorf("log %v", l)
	}
	// Once it holds them (a fixed configuration), it is.
	h.sys.procs[pid].ports = PortCheck{Checked: true}
	h.ready(pid)
	h.wantState(0, status.Ready)
}

// A worker that holds the passed socket but also listens on a port of its
// own (gunicorn behind a wrapper that did not exec) is ready — the accept
// queue check of /readyz tells whether it serves — with a warning.
func TestWorkerWithAPortOfItsOwnIsWarnedAbout(t *testing.T) {
	a := testApp("sh", 1)
	a.WaitReady = true
	a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:8080")}
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	h.sys.procs[pid].ports = PortCheck{Checked: true, Wrong: true, Odd: true, Message: "did not exec", Server: "gunicorn"}
	h.ready(pid)
	h.wantState(0, status.Ready)
	if l := h.lines("did not exec"); len(l) != 1 || l[0]["level"] != "warn" {
		t.Errorf("log %v", l)
	}
}

// The preload's readiness needs no check: it reports the passed sockets
// the app's servers listen on.
func TestPreloadReadinessIsNotPortChecked(t *testing.T) {
	a := testApp("node", 1)
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:3000")}
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	h.sys.procs[pid].ports = PortCheck{Checked: true, HoldsNone: true, Message: "should not be asked"}
	h.preload(pid, preload.KindListening, 3)
	h.wantState(0, status.Ready)
}

// With ports shared on demand (no --listen), a replacement is ready once it
// listens on every socket its predecessor listened on, those it opened
// after it was ready included (a second server started later): until then
// the old worker keeps serving.
func TestZeroConfigReplacementWaitsForEverySharedSocket(t *testing.T) {
	// Whichever order the replacement opens them in.
	for _, order := range [][2]int{{2, 1}, {1, 2}} {
		t.Run(fmt.Sprintf("opens %d then %d", order[0], order[1]), func(t *testing.T) {
			a := testApp("node", 1)
			a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
			h := newHarness(t, Options{Apps: []App{a}})
			old := h.pid(0)
			h.shared(old, 1)
			h.wantState(0, status.Ready)
			h.shared(old, 2) // a second server, once serving
			h.signal(sigHUP)
			cand := h.candidatePid(0)
			h.shared(cand, order[0])
			h.advance(5 * time.Second) // past --min-uptime: the preload decides
			if h.pid(0) != old || h.worker(cand).state != status.Starting {
				t.Fatalf("replacement %d took over listening on 1 of the 2 shared sockets", cand)
			}
			h.shared(cand, order[1])
			if h.pid(0) != cand {
				t.Fatalf("replacement %d listening on both shared sockets did not take over (current %d)", cand, h.pid(0))
			}
			if sigs := h.signals(old); len(sigs) != 1 || sigs[0] != sigTERM {
				t.Errorf("old worker %d got %v, want [SIGTERM]", old, sigs)
			}
		})
	}
}

// A worker's last words (STOPPING=1), read after its exit, are no spoofing
// while its exit is recent, also when other exits were reaped since; after
// 10 s its pid is anyone's.
func TestLateStoppingAfterOtherExits(t *testing.T) {
	const msg = "notify message from a process that is not a worker nor a descendant of one; dropped"
	h := newHarness(t, Options{Apps: []App{testApp("web", 2)}})
	p0, p1 := h.pid(0), h.pid(1)
	h.signal(sigTERM)
	h.exit(0, p0)
	h.advance(time.Second)
	h.exit(0, p1)
	h.notify(p0, "STOPPING=1")
	if h.count(msg) != 0 {
		t.Error("a worker's STOPPING=1 read 1 s after its exit was called spoofing")
	}
	h.advance(10 * time.Second)
	h.exit(0, 555) // an orphan: the next batch forgets what is 10 s old
	h.notify(p0, "STOPPING=1")
	if h.count(msg) != 1 {
		t.Error("a datagram from the pid of a worker gone for 11 s was not warned about")
	}
}

// GM2_INSTANCES is the wanted count: a slot being removed, whose worker
// still drains, is not counted for the workers started meanwhile.
func TestInstancesLeaveOutARetiringSlot(t *testing.T) {
	h := newHarness(t, Options{Apps: []App{testApp("web", 3)}})
	h.startAll()
	h.signal(sigTTOU) // slot 2's worker drains
	h.exit(1, h.pid(0))
	h.advance(100 * time.Millisecond)
	if v, _ := envOf(h.sys.procs[h.lastStarted()].spec, "GM2_INSTANCES"); v != "2" {
		t.Errorf("restarted worker has GM2_INSTANCES=%s, want 2", v)
	}
}

// Under --wait-ready a worker that said it was ready — READY=1 or
// process.send('ready') alike — is not replaced by one that stayed silent
// until --listen-timeout.
func TestSilentReplacementKeepsAWorkerThatSaidReady(t *testing.T) {
	for _, how := range []string{"READY=1", "process.send"} {
		t.Run(how, func(t *testing.T) {
			a := reloadApp(1)
			a.MaxRestarts = 0
			h := newHarness(t, Options{Apps: []App{a}})
			old := h.pid(0)
			if how == "READY=1" {
				h.ready(old)
			} else {
				h.nodeReady(old)
			}
			h.wantState(0, status.Ready)
			h.signal(sigHUP)
			cand := h.candidatePid(0)
			h.advance(10 * time.Second) // --listen-timeout
			if h.pid(0) != old || len(h.signals(old)) != 0 {
				t.Fatalf("worker %d that said ready by %s was replaced by a silent one", old, how)
			}
			if sigs := h.signals(cand); len(sigs) != 1 {
				t.Errorf("silent candidate got %v", sigs)
			}
		})
	}
}

// Under --wait-ready the Node preload's report that a server listens does
// not make the worker ready: only its own word does.
func TestWaitReadyIgnoresThePreloadsListening(t *testing.T) {
	a := testApp("node", 1)
	a.WaitReady = true
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	h := newHarness(t, Options{Apps: []App{a}})
	pid := h.pid(0)
	h.shared(pid, 1)
	h.wantState(0, status.Starting)
	h.nodeReady(pid)
	h.wantState(0, status.Ready)
}

// A fork-mode worker shares nothing and may never listen (a queue
// consumer): with the Node preload it is ready at --min-uptime all the same.
func TestForkModeNodeWorkerReadyAtMinUptime(t *testing.T) {
	a := testApp("node", 1)
	a.ExecMode = appspec.Fork
	a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	h := newHarness(t, Options{Apps: []App{a}})
	h.sys.procs[h.pid(0)].node = true
	h.advance(time.Second)
	h.wantState(0, status.Ready)
	if by := h.slot(0).current.readyBy; by != "min-uptime" {
		t.Errorf("ready by %q", by)
	}
}
