package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A worker that moves itself and a child out of the process group gm2-init
// made for it, both ignoring SIGTERM, still stops: the stop signal and the
// SIGKILL go to the worker's whole tree, not only to its group. (Before,
// the shutdown hung forever with the log saying "sending SIGKILL".)
func TestShutdownReachesAWorkerThatLeftItsGroup(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_ESCAPE=1", "TW_IGNORE_TERM=1"}, baseArgs("--kill-timeout", "1s", "--", bins.worker)...)
	in.AllowUncleanStops() // SIGKILLed at the kill timeout, on purpose
	in.WaitReady(1, 10*time.Second)
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(10 * time.Second); code != 137 {
		t.Fatalf("exit status %d, want 137 after the kill timeout", code)
	}
}

// The same worker is replaced by a reload: its old tree is gone once the
// kill timeout has passed.
func TestReloadStopsAWorkerThatLeftItsGroup(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_ESCAPE=1", "TW_IGNORE_TERM=1"}, baseArgs("--kill-timeout", "1s", "--", bins.worker)...)
	in.AllowUncleanStops() // SIGKILLed at the kill timeout, on purpose
	in.WaitReady(1, 10*time.Second)
	old, _ := in.WaitLog(5*time.Second, 0, "worker started", nil)
	oldTree := childrenOf(in.waitChildren(1, 5*time.Second)[0])
	if len(oldTree) != 1 {
		t.Fatalf("the worker's escaped child: %v, want one process", oldTree)
	}
	in.Signal(syscall.SIGHUP)
	in.WaitLog(10*time.Second, 0, "worker exited", func(l logLine) bool { return l.Int("pid") == old.Int("pid") })
	in.WaitLog(10*time.Second, 0, "reload finished", nil)
	// The worker's child, out of its group too and ignoring SIGTERM, is
	// gone as well (not left behind as an orphan of gm2-init's): gm2-init's
	// only child is the new worker.
	if !exitedWithin(oldTree[0], 10*time.Second) {
		t.Fatalf("the old worker's escaped child %d still runs (%s) 10 s after the reload; gm2-init's children: %v", oldTree[0], procState(oldTree[0]), in.Children())
	}
	in.waitChildren(1, 10*time.Second)
}

// The worst-case stop budget gm2-init logs holds, with a worker whose tree
// ignores SIGTERM and 300 double-forked daemons that ignore it too.
func TestStopBudgetHoldsWithStubbornOrphans(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_ESCAPE=1", "TW_IGNORE_TERM=1", "TW_STUBBORN=300"}, baseArgs("--kill-timeout", "2s", "--", bins.worker)...)
	in.AllowUncleanStops() // SIGKILLed at the kill timeout, on purpose
	budgetLine, _ := in.WaitLog(10*time.Second, 0, "stop budget: keep docker stop -t / terminationGracePeriodSeconds above worst_case_stop", nil)
	budget, err := time.ParseDuration(budgetLine.Str("worst_case_stop"))
	if err != nil {
		t.Fatalf("worst_case_stop %q: %v", budgetLine.Str("worst_case_stop"), err)
	}
	in.WaitReady(1, 20*time.Second)
	start := time.Now()
	in.Signal(syscall.SIGTERM)
	code := in.Wait(budget + 10*time.Second)
	took := time.Since(start)
	if code != 137 {
		t.Errorf("exit status %d, want 137", code)
	}
	// The budget is a promise to docker stop -t and Kubernetes: a stop
	// that takes longer is SIGKILLed by the engine. 300 ms of slack cover
	// the test's own measurement (it sees the exit through unshare).
	if took > budget+300*time.Millisecond {
		t.Errorf("stop took %v, beyond the worst case gm2-init logged (%v)", took, budget)
	}
	t.Logf("stop took %v (worst case logged: %v)", took, budget)
}

// Workers keep starting after gm2-init's binary is deleted from disk (an
// image layer update, a bind mount, a package upgrade): restarts and
// reloads exec the binary that runs, not its path.
func TestWorkersStartAfterTheBinaryIsDeleted(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "gm2-init")
	copyFile(t, bins.init, bin)
	in := startInitBin(t, bin, nil, baseArgs("-i", "2", "--wait-ready", "--", bins.worker)...)
	in.WaitReady(2, 10*time.Second)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	in.Signal(syscall.SIGHUP)
	l, _ := in.WaitLog(20*time.Second, 0, "reload finished", nil)
	if l.Str("result") != "ok" {
		t.Fatalf("reload after the binary was deleted: %v", l)
	}
	in.WaitReady(4, 10*time.Second)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// A log reader that stops reading does not freeze gm2-init: its stderr,
// which its workers share, is a full pipe that nobody reads (Docker's
// blocking log mode behind a stalled driver, a terminal paused with
// Ctrl-S). The workers start and /readyz says so, and SIGTERM ends
// gm2-init within its stop budget, with status 0; its log, which nobody
// read, is lost. (Before, the supervisor loop blocked in a write to the
// full pipe: no readiness, no reaping, and SIGTERM unheard.) That lines
// held while stderr takes no writes come out once it does is
// internal/logsink's TestStalledPipe.
func TestStalledLogReaderDoesNotFreeze(t *testing.T) {
	t.Parallel()
	health := "127.0.0.1:" + strconv.Itoa(freePort(t))
	in := startInitStalledLog(t, nil, "-i", "4", "--min-uptime", "100ms", "--health-addr", health, "--", "sleep", "1000")
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, err := httpGet(health, "/readyz")
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			in.ReadLog()
			t.Fatalf("/readyz not 200 within 20 s with stderr unread (last: %d, %v)", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.Signal(syscall.SIGTERM)
	waitGoneUnread(t, in, 15*time.Second) // the budget: 0 s + the kill timeout + 1 s
	if code := in.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// The same stalled stderr when gm2-init refuses to start (its health port
// is taken): it still exits, with its status, though its one-line error
// cannot be written. (Before, it hung in that write.)
func TestStalledLogReaderStartError(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	in := startInitStalledLog(t, nil, "-i", "1", "--health-addr", busy.Addr().String(), "--", "sleep", "1000")
	waitGoneUnread(t, in, 10*time.Second)
	if code := in.Wait(10 * time.Second); code != 1 {
		t.Errorf("exit status %d, want 1 (a port in use)", code)
	}
}

// waitGoneUnread waits, at most d and with gm2-init's stderr still unread,
// until gm2-init's host pid is gone (reaped by unshare); then it lets the
// harness read the log.
func waitGoneUnread(t *testing.T, in *Init, d time.Duration) {
	t.Helper()
	defer in.ReadLog()
	if !exitedWithin(in.Pid, d) {
		t.Fatalf("gm2-init still running after %v with stderr unread", d)
	}
}
