package reaper

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// start runs a shell command as a real child that nobody Wait()s for.
func start(t *testing.T, script string) int {
	t.Helper()
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", script}, &os.ProcAttr{})
	if err != nil {
		testtool.Missing(t, "no /bin/sh: %v", err)
	}
	return p.Pid
}

// TestRunReapsRealChildren runs the reaper goroutine on real children: an
// exit status, a death by signal, and a SIGCHLD that arrives for several
// exits at once (signals coalesce).
func TestRunReapsRealChildren(t *testing.T) {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	defer signal.Stop(sigchld)
	stop := make(chan struct{})
	out := make(chan []Exit, 16)
	done := make(chan struct{})
	go func() { Run(stop, sigchld, time.Hour, out); close(done) }()
	defer func() { close(stop); <-done }()

	type outcome struct {
		code int
		desc string
	}
	want := map[int]outcome{}
	want[start(t, "exit 3")] = outcome{3, "exit status 3"}
	want[start(t, "kill -KILL $$")] = outcome{137, "killed by SIGKILL"}
	for i := 0; i < 20; i++ {
		want[start(t, "exit 0")] = outcome{0, "exit status 0"}
	}
	deadline := time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case batch := <-out:
			for _, e := range batch {
				w, ok := want[e.Pid]
				if !ok {
					continue // a child of another test
				}
				if e.Code() != w.code || e.String() != w.desc {
					t.Errorf("pid %d: %d %q, want %d %q", e.Pid, e.Code(), e.String(), w.code, w.desc)
				}
				delete(want, e.Pid)
			}
		case <-deadline:
			t.Fatalf("not reaped: %v", want)
		}
	}
}

func TestExitStrings(t *testing.T) {
	for _, tc := range []struct {
		ws   unix.WaitStatus
		code int
		desc string
	}{
		{unix.WaitStatus(7 << 8), 7, "exit status 7"},
		{unix.WaitStatus(15), 143, "killed by SIGTERM"},
		{unix.WaitStatus(11 | 0x80), 139, "killed by SIGSEGV (core dumped)"},
		// Neither exited nor killed (stopped by SIGSTOP; wait4 without
		// WUNTRACED never reports it): a failure, shown raw.
		{unix.WaitStatus(0x137f), 1, "status 4991"},
	} {
		e := Exit{Pid: 1, Status: tc.ws}
		if e.Code() != tc.code || e.String() != tc.desc {
			t.Errorf("%#x: %d %q, want %d %q", int(tc.ws), e.Code(), e.String(), tc.code, tc.desc)
		}
	}
}

// With no SIGCHLD at all (a lost notification), the safety net alone reaps:
// the timerfd ticker fires and Run drains.
func TestRunSafetyNetReapsWithoutSignal(t *testing.T) {
	stop := make(chan struct{})
	out := make(chan []Exit, 16)
	done := make(chan struct{})
	go func() { Run(stop, nil, 20*time.Millisecond, out); close(done) }()
	defer func() { close(stop); <-done }()
	pid := start(t, "exit 5")
	deadline := time.After(20 * time.Second)
	for {
		select {
		case batch := <-out:
			for _, e := range batch {
				if e.Pid == pid {
					if e.Code() != 5 {
						t.Errorf("pid %d: code %d, want 5", pid, e.Code())
					}
					return
				}
			}
		case <-deadline:
			t.Fatalf("pid %d not reaped by the safety net within 20 s", pid)
		}
	}
}

// TestDrainSkipsStoppedChildren: a child stopped by SIGSTOP has not exited;
// Drain reports it only once it is killed.
func TestDrainSkipsStoppedChildren(t *testing.T) {
	pid := start(t, "kill -STOP $$")
	defer unix.Kill(pid, unix.SIGKILL)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, err := procfs.StatOf("/proc", pid); err == nil && st.State == 'T' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not stop within 20 s", pid)
		}
		runtime.Gosched()
	}
	exits, _ := Drain(nil)
	for _, e := range exits {
		if e.Pid == pid {
			t.Fatalf("stopped pid %d reported as %s", pid, e)
		}
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		exits, _ := Drain(nil)
		for _, e := range exits {
			if e.Pid == pid {
				if e.Code() != 137 {
					t.Errorf("pid %d: %s, want killed by SIGKILL", pid, e)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not reaped within 20 s of its kill", pid)
		}
		runtime.Gosched()
	}
}

// TestRunSendsNoEmptyBatch: a SIGCHLD with nothing to reap (signals
// coalesce: the exits were reaped at the previous one) sends nothing.
func TestRunSendsNoEmptyBatch(t *testing.T) {
	sigchld := make(chan os.Signal) // unbuffered: the second send waits until Run has handled the first
	stop := make(chan struct{})
	out := make(chan []Exit, 16)
	done := make(chan struct{})
	go func() { Run(stop, sigchld, time.Hour, out); close(done) }()
	for i := 0; i < 2; i++ {
		select {
		case sigchld <- unix.SIGCHLD:
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not take the signal within 20 s")
		}
	}
	close(stop)
	<-done
	close(out)
	for batch := range out {
		if len(batch) == 0 {
			t.Error("Run sent an empty batch")
		}
	}
}

// pid1Env makes the test binary, started by TestSignalAllAsPID1 as PID 1
// of a new PID namespace, run the check itself; its exit status says how
// it went.
const pid1Env = "GM2_REAPER_TEST_PID1"

// TestSignalAllAsPID1: as PID 1, SignalAll sends kill(-1), which reaches
// every other process of the namespace, and says whether it reached one.
func TestSignalAllAsPID1(t *testing.T) {
	if os.Getenv(pid1Env) == "1" {
		switch {
		case !IsPID1():
			os.Exit(3)
		case SignalAll(unix.SIGKILL):
			os.Exit(4) // nobody else to signal: kill(-1) fails
		}
		// A shell with a child of its own: kill(-1) reaches the
		// grandchild too, not only the children of PID 1.
		pid := start(t, "sleep 30 & wait")
		deadline := time.Now().Add(10 * time.Second)
		for len(procfs.Children("/proc", pid)) == 0 {
			if time.Now().After(deadline) {
				os.Exit(8)
			}
			runtime.Gosched()
		}
		if !SignalAll(unix.SIGKILL) {
			os.Exit(5)
		}
		for { // every process of the namespace dies: reap them all, bounded
			var ws unix.WaitStatus
			p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			switch {
			case errors.Is(err, unix.ECHILD):
				os.Exit(0)
			case p == pid && (!ws.Signaled() || ws.Signal() != unix.SIGKILL):
				os.Exit(6)
			case p == 0 && time.Now().After(deadline):
				os.Exit(7)
			case p == 0:
				runtime.Gosched()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// --mount-proc: the namespace's own /proc, so that even a SignalAll
	// that took the non-PID-1 path (Children of pid 1) stays inside it.
	cmd := exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", os.Args[0], "-test.run=^TestSignalAllAsPID1$", "-test.count=1")
	cmd.Env = append(os.Environ(), pid1Env+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() >= 3 && ee.ExitCode() <= 8:
		t.Fatalf("as PID 1: exit status %d (3 not PID 1, 4 kill(-1) reported alone, 5 not reported, 6 the child not killed, 7 a process survived, 8 no grandchild)\n%s", ee.ExitCode(), out)
	case err != nil:
		testtool.Missing(t, "cannot run as PID 1 of a new PID namespace (unshare --pid --mount-proc): %v\n%s", err, out)
	}
}
