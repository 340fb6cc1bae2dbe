package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// Edge cases of the supervisor's state machine: reloads that meet crashes,
// scaling and shutdown. Each ran into a defect once.

// switchable returns a flag file and a shell script that behaves as the
// broken version while the file exists (runs `broken`, then fails), and
// execs the test worker otherwise.
func switchable(t *testing.T, broken string) (string, string) {
	flag := filepath.Join(t.TempDir(), "flag")
	return flag, fmt.Sprintf(`if [ -e %s ]; then %s; fi; exec %s`, flag, broken, bins.worker)
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadWhenOldWorkerAndReplacementBothDie(t *testing.T) {
	t.Parallel()
	flag, script := switchable(t, "sleep 1; exit 3")
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--", "sh", "-c", script)...)
	health := in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	old := in.waitChildren(1, 10*time.Second)
	touch(t, flag)
	in.Signal(syscall.SIGHUP)
	in.waitChildren(2, 10*time.Second)
	syscall.Kill(old[0], syscall.SIGKILL)
	_, pos := in.WaitLog(10*time.Second, 0, "replacement worker failed before ready and the old one is gone; restarting the slot", nil)
	// The fixed version comes back in the same slot; gm2-init never left.
	os.Remove(flag)
	in.WaitLog(20*time.Second, pos, "worker ready", nil)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)
	if in.hasExited() {
		t.Fatal("gm2-init exited")
	}
	// The pass did not replace the slot (it restarted after a crash): the
	// reload failed, and says so.
	l, _ := in.WaitLog(10*time.Second, 0, "reload finished", nil)
	if !strings.HasPrefix(l.Str("result"), "failed") || l.Int("replaced") != 0 {
		t.Errorf("reload finished: result %q, replaced %d; want failed, 0", l.Str("result"), l.Int("replaced"))
	}
}

func TestScaleDownDuringReloadFinishesThePass(t *testing.T) {
	t.Parallel()
	flag, script := switchable(t, "sleep 1")
	in := startInit(t, nil, baseArgs("-i", "2", "--reload-batch", "2", "--wait-ready", "--", "sh", "-c", script)...)
	health := in.HealthAddr()
	in.WaitReady(2, 10*time.Second)
	touch(t, flag)
	in.Signal(syscall.SIGHUP)
	in.waitChildren(4, 10*time.Second) // both replacements are starting
	in.Signal(syscall.SIGTTOU)
	in.WaitLog(10*time.Second, 0, "scaled down (SIGTTOU)", nil)
	l, _ := in.WaitLog(20*time.Second, 0, "reload finished", nil)
	if l.Str("result") != "ok" {
		t.Errorf("reload: %v", l)
	}
	in.waitChildren(1, 15*time.Second)
	if st := getStatus(t, health); st.Reload.InProgress || st.Instances != 1 {
		t.Fatalf("status: %+v", st)
	}
	// Later reloads still run.
	os.Remove(flag)
	if l, _ := in.reload(0); l.Int("replaced") != 1 || l.Str("result") != "ok" {
		t.Errorf("next reload: %v", l)
	}
}

func TestKillDuringReloadDoesNotSpoilTheExitStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := filepath.Join(dir, "first")
	// The first worker ignores TERM and is SIGKILLed when the reload
	// replaces it; its replacement stops cleanly.
	script := fmt.Sprintf(`if [ ! -e %s ]; then : > %s; TW_IGNORE_TERM=1 exec %s; fi; exec %s`, first, first, bins.worker, bins.worker)
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--kill-timeout", "300ms", "--", "sh", "-c", script)...)
	in.AllowUncleanStops() // the first worker is SIGKILLed, on purpose
	in.WaitReady(1, 10*time.Second)
	_, pos := in.reload(0)
	in.WaitLog(10*time.Second, pos, "worker still running after the kill timeout; sending SIGKILL", nil)
	checkKilledAtTimeout(t, in, 300*time.Millisecond)
	in.waitChildren(1, 10*time.Second)
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d after a clean shutdown, want 0", code)
	}
}

func TestShutdownDuringReloadEndsTheReload(t *testing.T) {
	t.Parallel()
	flag, script := switchable(t, "exit 3")
	in := startInit(t, nil, baseArgs("-i", "2", "--wait-ready", "--shutdown-delay", "500ms", "--", "sh", "-c", script)...)
	in.WaitReady(2, 10*time.Second)
	touch(t, flag)
	in.Signal(syscall.SIGHUP)
	in.WaitLog(10*time.Second, 0, "replacement worker failed before ready; the old one keeps serving", nil)
	in.Signal(syscall.SIGTERM)
	l, _ := in.WaitLog(10*time.Second, 0, "reload finished", nil)
	if !strings.Contains(l.Str("result"), "interrupted by shutdown") {
		t.Errorf("reload result %q", l.Str("result"))
	}
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

func TestScaleDownKeepsTheLastWorkingSlot(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_CRASH_SLOT=0"}, baseArgs("-i", "2", "--wait-ready", "--max-restarts", "1", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitLog(20*time.Second, 0, "worker keeps crashing on start; slot errored and not restarted", nil)
	in.WaitReady(1, 10*time.Second)
	in.Signal(syscall.SIGTTOU)
	in.WaitLog(10*time.Second, 0, "SIGTTOU ignored: the other slots have errored or stopped", nil)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)
	if st := getStatus(t, health); st.Instances != 2 {
		t.Fatalf("status after the refused TTOU: %+v", st)
	}
}

// TestInteractiveProgramGetsTheTerminal: in `docker run -it`, a single
// worker must own the terminal (as under tini), or it stops on SIGTTIN when
// it reads. script(1) gives gm2-init a real pseudo-terminal.
func TestInteractiveProgramGetsTheTerminal(t *testing.T) {
	t.Parallel()
	script := testtool.Require(t, "script", "Debian package bsdutils")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inner := strings.Join(append(namespaceCmd(t), bins.init,
		"--restart", "never", "--health-addr", "off", "--log-level", "warn", "--",
		"sh", "-c", `'read x; echo "got $x"'`), " ")
	cmd := exec.CommandContext(ctx, script, "-qec", inner, "/dev/null")
	cmd.Stdin = strings.NewReader("hello\n")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the interactive worker hung (stopped in the background?); output:\n%s", out)
	}
	if err != nil || !strings.Contains(string(out), "got hello") {
		t.Fatalf("%v; output:\n%s", err, out)
	}
}

// TestSeveralWorkersLeaveTheTerminalToGm2Init: on a terminal (docker run
// -it) with two workers, no worker gets it: only one group can be in the
// foreground, so one worker would read what is typed and take Ctrl-C alone.
// The terminal stays with gm2-init's own group, the workers run on in the
// background (not stopped), and Ctrl-C stops them all gracefully. Whether a
// worker gets the terminal is decided once, at the start: scaled down to
// one worker, gm2-init does not hand it to the next worker it starts (a
// reload's), or Ctrl-C would stop reaching gm2-init.
func TestSeveralWorkersLeaveTheTerminalToGm2Init(t *testing.T) {
	t.Parallel()
	master, tty := openPty(t)
	in := startInitOnTerminal(t, tty, nil, baseArgs("-i", "2", "--wait-ready", "--", bins.worker)...)
	in.WaitReady(2, 20*time.Second)
	own := groupOf(t, in.Pid)
	checkTerminal := func(when string, workers []int) {
		t.Helper()
		fg := foregroundGroup(t, master)
		if fg != own {
			t.Errorf("%s: the terminal's foreground group is %d, want gm2-init's own, %d (workers %v)", when, fg, own, workers)
		}
		for _, w := range workers {
			if g := groupOf(t, w); g == fg {
				t.Errorf("%s: worker %d (group %d) is in the terminal's foreground", when, w, g)
			}
			if st := procState(w); st == "T" || st == "t" || st == "" {
				t.Errorf("%s: worker %d is in state %q, want it running", when, w, st)
			}
		}
	}
	checkTerminal("two workers", in.waitChildren(2, 10*time.Second))

	in.Signal(syscall.SIGTTOU)
	_, pos := in.WaitLog(10*time.Second, 0, "scaled down (SIGTTOU)", nil)
	in.waitChildren(1, 15*time.Second)
	in.reload(pos)
	checkTerminal("scaled down to one worker, then reloaded", in.waitChildren(1, 15*time.Second))

	ctrlCStops(t, in, master, pos)
}

// TestScaleUpLeavesTheTerminalWithTheFirstWorker: a single worker on a
// terminal gets it, as under tini (TestInteractiveProgramGetsTheTerminal);
// scaled up to two, the worker added does not take it from the first,
// which keeps it: a program is not moved out of the foreground while it
// runs (one reading the terminal would be stopped by SIGTTIN). When that
// worker dies, its restart (one of two) does not get the terminal, so
// gm2-init takes it back: left to the dead worker's group, Ctrl-C would
// reach nobody.
func TestScaleUpLeavesTheTerminalWithTheFirstWorker(t *testing.T) {
	t.Parallel()
	master, tty := openPty(t)
	in := startInitOnTerminal(t, tty, nil, baseArgs("-i", "1", "--wait-ready", "--", bins.worker)...)
	in.WaitReady(1, 20*time.Second)
	first := in.waitChildren(1, 10*time.Second)[0]
	if fg, g := foregroundGroup(t, master), groupOf(t, first); fg != g {
		t.Fatalf("the single worker %d (group %d) does not have the terminal: its foreground group is %d", first, g, fg)
	}

	in.Signal(syscall.SIGTTIN)
	_, pos := in.WaitLog(10*time.Second, 0, "scaled up (SIGTTIN)", nil)
	in.WaitReady(2, 20*time.Second)
	workers := in.waitChildren(2, 10*time.Second)
	if !slices.Contains(workers, first) {
		t.Fatalf("the first worker %d is gone after the scale-up: workers %v", first, workers)
	}
	second := workers[0]
	if second == first {
		second = workers[1]
	}
	fg := foregroundGroup(t, master)
	if g := groupOf(t, second); g == fg {
		t.Errorf("the worker added by the scale-up, %d (group %d), took the terminal from the first", second, g)
	}
	if g := groupOf(t, first); g != fg {
		t.Errorf("after the scale-up the terminal's foreground group is %d, want the first worker's, %d", fg, g)
	}
	for _, w := range workers {
		if st := procState(w); st == "T" || st == "t" || st == "" {
			t.Errorf("worker %d is in state %q, want it running", w, st)
		}
	}

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, pos = in.WaitLog(10*time.Second, pos, "worker exited", nil)
	_, pos = in.WaitLog(20*time.Second, pos, "worker ready", nil) // its restart
	if fg, own := foregroundGroup(t, master), groupOf(t, in.Pid); fg != own {
		t.Errorf("after the worker that had the terminal died and was restarted, its foreground group is %d, want gm2-init's own, %d", fg, own)
	}
	ctrlCStops(t, in, master, pos)
}

// TestReloadKeepsTheTerminalWithTheNewWorker: a single worker's
// replacement (a reload) gets the terminal as the worker before it did,
// and keeps it once the old worker is gone: gm2-init takes the terminal
// back from a group that is gone, never from a live one.
func TestReloadKeepsTheTerminalWithTheNewWorker(t *testing.T) {
	t.Parallel()
	master, tty := openPty(t)
	in := startInitOnTerminal(t, tty, nil, baseArgs("-i", "1", "--wait-ready", "--", bins.worker)...)
	in.WaitReady(1, 20*time.Second)
	old := in.waitChildren(1, 10*time.Second)[0]
	in.reload(0)
	in.WaitLog(15*time.Second, 0, "worker exited", nil)
	syncLoop(t, in)
	now := in.waitChildren(1, 10*time.Second)[0]
	if now == old {
		t.Fatalf("worker %d still runs after the reload", old)
	}
	if fg, g := foregroundGroup(t, master), groupOf(t, now); fg != g {
		t.Errorf("after the reload the terminal's foreground group is %d, want the new worker's, %d", fg, g)
	}
	if st := procState(now); st == "T" || st == "t" || st == "" {
		t.Errorf("the new worker %d is in state %q, want it running", now, st)
	}
}

// TestTerminalComesBackFromAWorkersJob: a worker given the terminal may
// give it on to a process group of its own, as an interactive shell gives
// it to a job. After a scale-up (the worker restarted in the first one's
// place does not get the terminal), once the job and then the worker are
// gone, gm2-init takes the terminal back from the job's empty group.
func TestTerminalComesBackFromAWorkersJob(t *testing.T) {
	t.Parallel()
	master, tty := openPty(t)
	in := startInitOnTerminal(t, tty, []string{"TW_TERMINAL_JOB=1"}, baseArgs("-i", "1", "--wait-ready", "--", bins.worker)...)
	in.WaitReady(1, 20*time.Second)
	first := in.waitChildren(1, 10*time.Second)[0]
	jobs := childrenOf(first)
	if len(jobs) != 1 {
		t.Fatalf("worker %d has children %v, want its one job", first, jobs)
	}
	job := jobs[0]
	jobGroup := groupOf(t, job)
	if fg := foregroundGroup(t, master); fg != jobGroup || jobGroup == groupOf(t, first) {
		t.Fatalf("the terminal's foreground group is %d; want the job's own group, %d", fg, jobGroup)
	}

	in.Signal(syscall.SIGTTIN)
	_, pos := in.WaitLog(10*time.Second, 0, "scaled up (SIGTTIN)", nil)
	in.WaitReady(2, 20*time.Second)
	if err := syscall.Kill(job, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The worker reaps its job, as a shell does: then its group is empty.
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(syscall.Kill(-jobGroup, 0), syscall.ESRCH) {
		if time.Now().After(deadline) {
			t.Fatalf("the job's group %d still has a process 10 s after its SIGKILL", jobGroup)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, pos = in.WaitLog(10*time.Second, pos, "worker exited", nil)
	_, pos = in.WaitLog(20*time.Second, pos, "worker ready", nil) // its restart
	if fg, own := foregroundGroup(t, master), groupOf(t, in.Pid); fg != own {
		t.Errorf("after the worker and its job are gone, the terminal's foreground group is %d, want gm2-init's own, %d", fg, own)
	}
	ctrlCStops(t, in, master, pos)
}

// ctrlCStops types Ctrl-C on the terminal whose master end is master: the
// kernel sends SIGINT to its foreground group, which must be gm2-init's
// own; gm2-init must log the request (after log index from) and stop
// gracefully, exit status 0.
func ctrlCStops(t *testing.T, in *Init, master *os.File, from int) {
	t.Helper()
	if _, err := master.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	in.WaitLog(10*time.Second, from, "shutdown requested", func(l logLine) bool { return l.Str("signal") == "SIGINT" })
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d after Ctrl-C, want 0 (a graceful shutdown)", code)
	}
}

// syncLoop returns once gm2-init's supervisor loop has handled every event
// before it: a SIGTTOU at the one-worker minimum changes nothing and is
// answered by a log line from the loop.
func syncLoop(t *testing.T, in *Init) {
	t.Helper()
	from := len(in.Lines())
	in.Signal(syscall.SIGTTOU)
	in.WaitLog(10*time.Second, from, anyMessage, func(l logLine) bool { return strings.HasPrefix(l.Msg(), "SIGTTOU ignored") })
}
