package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/httpload"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// statusDoc is the part of /status the tests read.
type statusDoc struct {
	Instances    int  `json:"instances"`
	ReadyWorkers int  `json:"ready_workers"`
	ShuttingDown bool `json:"shutting_down"`
	Slots        []struct {
		Instance int    `json:"instance"`
		State    string `json:"state"`
		Pid      int    `json:"pid"`
		LastExit string `json:"last_exit"`
		Status   string `json:"last_status"`
		Workers  []struct {
			Pid   int    `json:"pid"`
			State string `json:"state"`
		} `json:"workers"`
	} `json:"slots"`
	Reload struct {
		Generation int    `json:"generation"`
		InProgress bool   `json:"in_progress"`
		LastResult string `json:"last_result"`
	} `json:"reload"`
	Counters struct {
		Reloads map[string]int `json:"reloads_total"`
	} `json:"counters"`
}

func getStatus(t *testing.T, health string) statusDoc {
	t.Helper()
	code, body, err := httpGet(health, "/status")
	if err != nil || code != 200 {
		t.Fatalf("/status: %d %v %s", code, err, body)
	}
	var s statusDoc
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	return s
}

// waitChildren waits until gm2-init has exactly n children (old workers
// that drain are still its children) and returns them sorted.
func (in *Init) waitChildren(n int, timeout time.Duration) []int {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := in.Children()
		if len(c) == n {
			slices.Sort(c)
			return c
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("gm2-init has %d children %v, want %d; log:\n%s", len(c), c, n, in.rawLog())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reload sends SIGHUP and waits for the "reload finished" line that follows
// the log position from; it returns that line and the next position.
func (in *Init) reload(from int) (logLine, int) {
	in.t.Helper()
	in.Signal(syscall.SIGHUP)
	return in.WaitLog(60*time.Second, from, "reload finished", nil)
}

func TestReloadUnderLoadFailsNoRequest(t *testing.T) {
	t.Parallel()
	const n, reloads = 2, 10
	in := startInit(t, nil, baseArgs("-i", "2", "--wait-ready", "--kill-timeout", "5s", "--", bins.goapp)...)
	addr := in.Addr("")
	in.WaitReady(n, 10*time.Second)
	before := in.waitChildren(n, 10*time.Second)

	ld := httpload.Start(addr, httpload.Options{Clients: 8, Limit: 2 * time.Minute})
	if !ld.WaitRequests(50, 10*time.Second) {
		t.Fatal("the load generator gets no answers")
	}
	pos := 0
	for i := 0; i < reloads; i++ {
		var l logLine
		l, pos = in.reload(pos)
		if l.Str("result") != "ok" || l.Int("replaced") != n {
			t.Fatalf("reload %d: %v", i, l)
		}
		if !ld.WaitRequests(20, 10*time.Second) {
			t.Fatalf("no traffic after reload %d", i)
		}
	}
	ok, failed, errs := ld.Stop().Sums()
	t.Logf("%d requests during %d reloads, %d failed", ok, reloads, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed during reloads: %v", failed, errs)
	}
	after := in.waitChildren(n, 15*time.Second)
	for _, p := range after {
		if slices.Contains(before, p) {
			t.Errorf("worker %d survived %d reloads (before %v, after %v)", p, reloads, before, after)
		}
	}
	if got := in.CountLog("reload started"); got != reloads {
		t.Errorf("%d reloads started, want %d", got, reloads)
	}
	// No failed request alone does not prove the rolling order (the other
	// slot, or the socket's queue, covers a slot stopped too early): each
	// old worker got its stop signal only once its slot's replacement was
	// ready.
	checkStoppedAfterReplacementReady(t, in.Lines(), reloads*n)
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

func TestReloadToBrokenVersionKeepsOldWorkers(t *testing.T) {
	t.Parallel()
	broken := filepath.Join(t.TempDir(), "broken")
	in := startInit(t, []string{"TW_CRASH_IF=" + broken},
		baseArgs("-i", "2", "--wait-ready", "--max-restarts", "2", "--", bins.worker)...)
	addr, health := in.Addr(""), in.HealthAddr()
	in.WaitReady(2, 10*time.Second)
	before := in.waitChildren(2, 10*time.Second)

	ld := httpload.Start(addr, httpload.Options{Clients: 4, Limit: 2 * time.Minute})
	if !ld.WaitRequests(20, 10*time.Second) {
		t.Fatal("no traffic")
	}
	if err := os.WriteFile(broken, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, pos := in.reload(0)
	if !strings.HasPrefix(l.Str("result"), "failed") || l.Int("replaced") != 0 {
		t.Fatalf("reload to a version that crashes on start: %v", l)
	}
	if !ld.WaitRequests(20, 10*time.Second) {
		t.Fatal("no traffic after the failed reload")
	}
	if code, body, _ := httpGet(health, "/readyz"); code != 200 {
		t.Errorf("/readyz %d after a failed reload: %s", code, body)
	}
	st := getStatus(t, health)
	if !strings.HasPrefix(st.Reload.LastResult, "failed") || st.Counters.Reloads["failed"] != 1 || st.ReadyWorkers != 2 {
		t.Errorf("status after a failed reload: %+v", st)
	}
	if now := in.waitChildren(2, 10*time.Second); !slices.Equal(now, before) {
		t.Errorf("workers changed: before %v, after %v", before, now)
	}

	// The fixed version rolls out.
	os.Remove(broken)
	l, _ = in.reload(pos)
	if l.Str("result") != "ok" || l.Int("replaced") != 2 {
		t.Fatalf("reload after the fix: %v", l)
	}
	ok, failed, errs := ld.Stop().Sums()
	if failed != 0 {
		t.Fatalf("%d of %d requests failed: %v", failed, ok+failed, errs)
	}
}

func TestHUPStormEndsWithNWorkers(t *testing.T) {
	t.Parallel()
	const n = 2
	// Each worker takes 300 ms to say READY=1, so a pass lasts longer
	// than the storm takes to send: every HUP after the first arrives
	// while the first pass runs, and exactly one more pass must follow.
	in := startInit(t, []string{"TW_READY_DELAY=300ms"}, baseArgs("-i", "2", "--wait-ready", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(n, 10*time.Second)
	in.waitChildren(n, 10*time.Second)
	fds := in.FDs()

	in.Signal(syscall.SIGHUP)
	in.WaitLog(10*time.Second, 0, "reload started", nil)
	for i := 0; i < 999; i++ {
		in.Signal(syscall.SIGHUP)
	}
	// Settled: no pass under way, every "reload started" has its
	// "reload finished", every slot ready and no old worker left.
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := getStatus(t, health)
		if !st.Reload.InProgress && st.ReadyWorkers == n && in.CountLog("reload started") == in.CountLog("reload finished") &&
			len(in.Children()) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after the HUP storm: %+v children %v", st, in.Children())
		}
		time.Sleep(10 * time.Millisecond)
	}
	passes := in.CountLog("reload started")
	if passes != 2 {
		t.Fatalf("%d reload passes for 1000 HUPs, want exactly 2 (the first, and one more for the burst)", passes)
	}
	t.Logf("1000 HUPs → %d reload passes", passes)
	if in.CountLog("reload finished") != passes {
		t.Fatal("a pass did not finish")
	}
	// The same descriptors as before (give the health server a moment to
	// close the probe connections).
	deadline = time.Now().Add(10 * time.Second)
	for in.FDs() != fds {
		if time.Now().After(deadline) {
			t.Fatalf("gm2-init has %d fds after the storm, %d before", in.FDs(), fds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// checkStoppedAfterReplacementReady fails unless each of the want workers
// gm2-init stopped (other than for a shutdown) was stopped after another
// worker of its slot, started after it, was ready: a replacement ready
// before the old worker got the stop signal.
func checkStoppedAfterReplacementReady(t *testing.T, lines []logLine, want int) {
	t.Helper()
	type key struct {
		app  string
		slot int
	}
	started := map[int]int{}   // pid → index of its "worker started" line
	lastReady := map[key]int{} // slot → pid of the worker last ready in it
	stopped := 0
	for i, l := range lines {
		k := key{l.Str("app"), l.Int("slot")}
		switch l.Msg() {
		case "worker started":
			started[l.Int("pid")] = i
		case "worker ready":
			lastReady[k] = l.Int("pid")
		case "stopping worker":
			if l.Str("why") == "shutdown" {
				continue
			}
			stopped++
			pid := l.Int("pid")
			if r, ok := lastReady[k]; !ok || r == pid || started[r] < started[pid] {
				t.Errorf("worker %d of slot %d stopped (%s) before a replacement was ready in its slot", pid, k.slot, l.Str("why"))
			}
		}
	}
	if stopped != want {
		t.Errorf("%d workers stopped by the reloads, want %d", stopped, want)
	}
}

// waitHTTP polls path until it answers code, for at most timeout.
func waitHTTP(t *testing.T, addr, path string, code int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, body, err := httpGet(addr, path)
		if got == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answers %d %q (%v), want %d", path, got, body, err, code)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gate is a file a test creates to let a worker say it is ready, so that the
// test can look at gm2-init before and after.
type gate string

func newGate(t *testing.T) gate { return gate(filepath.Join(t.TempDir(), "go")) }
func (g gate) open(t *testing.T) {
	if err := os.WriteFile(string(g), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkNotReadyUntil asserts that no worker is ready before the gate opens,
// opens it, and returns the "worker ready" line.
func checkNotReadyUntil(t *testing.T, in *Init, g gate) logLine {
	t.Helper()
	health := in.HealthAddr()
	in.WaitLog(10*time.Second, 0, "worker started", nil)
	if code, body, _ := httpGet(health, "/readyz"); code != 503 {
		t.Fatalf("/readyz %d before the worker said it is ready: %s", code, body)
	}
	if n := in.CountLog("worker ready"); n != 0 {
		t.Fatalf("worker ready before it said so")
	}
	g.open(t)
	l, _ := in.WaitLog(10*time.Second, 0, "worker ready", nil)
	// The snapshot the endpoint reads is published right after the event
	// that logged the line.
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)
	return l
}

const pythonNotifyApp = `
import os, socket, sys, time
gate = sys.argv[1]
srv = socket.socket(fileno=3)
while not os.path.exists(gate):
    time.sleep(0.005)
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.connect(addr)
n.send(b"STATUS=warming up\nREADY=1\n")
while True:
    c, _ = srv.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
`

func TestReadinessBySdNotifyFromPythonBehindShell(t *testing.T) {
	t.Parallel()
	py := testtool.Require(t, "python3", "Debian package python3")
	app := filepath.Join(t.TempDir(), "app.py")
	if err := os.WriteFile(app, []byte(pythonNotifyApp), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newGate(t)
	// The shell keeps running (it has more to do after python), so the
	// sender of READY=1 is a descendant of the worker, not the worker.
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--listen-timeout", "60s", "--",
		"sh", "-c", fmt.Sprintf("%s %s %s; exit $?", py, app, g))...)
	l := checkNotReadyUntil(t, in, g)
	if l.Str("by") != "READY=1" {
		t.Errorf("ready by %q, want READY=1", l.Str("by"))
	}
	if code, body, err := httpGet(in.Addr(""), "/"); code != 200 || body != "ok" {
		t.Errorf("app: %d %q %v", code, body, err)
	}
	st := getStatus(t, in.HealthAddr())
	if len(st.Slots) != 1 || st.Slots[0].Status != "warming up" {
		t.Errorf("STATUS= not shown in /status: %+v", st.Slots)
	}
}

const nodeProcessSendApp = `
const fs = require('fs'), http = require('http');
const gate = process.argv[2];
http.createServer((q, s) => s.end('ok')).listen({ fd: 3 }, () => {
  const t = setInterval(() => {
    if (fs.existsSync(gate)) { clearInterval(t); process.send('ready'); }
  }, 5);
});
process.on('SIGTERM', () => process.exit(0));
`

func TestReadinessByProcessSendFromNode(t *testing.T) {
	t.Parallel()
	node := testtool.Require(t, "node", "Debian package nodejs")
	app := filepath.Join(t.TempDir(), "app.js")
	if err := os.WriteFile(app, []byte(nodeProcessSendApp), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newGate(t)
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--listen-timeout", "60s", "--", node, app, string(g))...)
	l := checkNotReadyUntil(t, in, g)
	if l.Str("by") != "process.send('ready')" {
		t.Errorf("ready by %q, want process.send('ready')", l.Str("by"))
	}
	if code, body, err := httpGet(in.Addr(""), "/"); code != 200 || body != "ok" {
		t.Errorf("app: %d %q %v", code, body, err)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

func TestNeverReadyWorkerHitsListenTimeout(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_NO_READY=1"},
		baseArgs("-i", "1", "--wait-ready", "--listen-timeout", "300ms", "--", bins.worker)...)
	l, _ := in.WaitLog(10*time.Second, 0, "worker ready", nil)
	if l.Str("by") != "listen-timeout" {
		t.Fatalf("ready by %q, want listen-timeout", l.Str("by"))
	}
	in.WaitLog(time.Second, 0, "worker did not report ready in time; treating it as ready", nil)
	// A reload with such a worker still completes.
	l, _ = in.reload(0)
	if l.Str("result") != "ok" {
		t.Fatalf("reload: %v", l)
	}
	// Each worker, the first and its replacement, was made ready at the
	// listen timeout after its start: not at some other timeout.
	checkReadyAfter(t, in, "listen-timeout", 300*time.Millisecond, 2)
}

// checkReadyAfter fails unless exactly n workers became ready by by, each
// d after its start, on time (onTime).
func checkReadyAfter(t *testing.T, in *Init, by string, d time.Duration, n int) {
	t.Helper()
	gaps := gapsAfter(t, in, "worker started", "worker ready", func(l logLine) bool { return l.Str("by") == by })
	for _, g := range gaps {
		if !onTime(g.gap, d) {
			t.Errorf("worker %d ready by %s %v after its start, want %v", g.pid, by, g.gap, d)
		}
	}
	if len(gaps) != n {
		t.Errorf("%d workers ready by %s, want %d", len(gaps), by, n)
	}
}

func TestScaleWithTTINAndTTOU(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--", bins.worker)...)
	addr, health := in.Addr(""), in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	in.Signal(syscall.SIGTTIN)
	l, pos := in.WaitLog(10*time.Second, 0, "scaled up (SIGTTIN)", nil)
	if l.Int("instances") != 2 {
		t.Fatalf("after TTIN: %v", l)
	}
	in.WaitReady(2, 10*time.Second)
	in.waitChildren(2, 10*time.Second)
	if wi := getInfo(t, addr); wi.Instances == "" {
		t.Fatalf("worker answers %+v", wi)
	}
	st := getStatus(t, health)
	if st.Instances != 2 || len(st.Slots) != 2 || st.Slots[1].Instance != 1 {
		t.Fatalf("status after TTIN: %+v", st)
	}

	in.Signal(syscall.SIGTTOU)
	stopping, stopPos := in.WaitLog(10*time.Second, pos, "stopping worker", nil)
	l, pos = in.WaitLog(10*time.Second, pos, "scaled down (SIGTTOU)", nil)
	if l.Int("instances") != 1 {
		t.Fatalf("after TTOU: %v", l)
	}
	// The exit as the supervisor handled it, not only as the kernel saw
	// it: the reaper may have reaped the worker before the loop took its
	// exit, and /status is the loop's.
	in.WaitLog(15*time.Second, stopPos, "worker exited", func(l logLine) bool { return l.Int("pid") == stopping.Int("pid") })
	in.waitChildren(1, 15*time.Second)
	in.Signal(syscall.SIGTTOU)
	in.WaitLog(10*time.Second, pos, "SIGTTOU ignored: one worker is the minimum", nil)
	if c := in.waitChildren(1, 5*time.Second); len(c) != 1 {
		t.Fatal(c)
	}
	if st := getStatus(t, health); st.Instances != 1 || len(st.Slots) != 1 {
		t.Fatalf("status after TTOU: %+v", st)
	}
}
