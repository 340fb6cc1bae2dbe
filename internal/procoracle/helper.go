package procoracle

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HelperEnv makes a test binary act as a helper process of known size
// instead of running its tests (see RunHelper). Its value is
// "MiB fds cpuMillis then": allocate and touch MiB, open fds extra
// descriptors, burn cpuMillis of CPU time, then "block" (print
// "ready PID" and stay), "exit" (end) or "spawn N" (start N `sleep`
// children, each from an OS thread of its own so that they spread over
// several /proc/<pid>/task/<tid>/children, print "ready PID CHILD..." and
// stay).
const HelperEnv = "GM2_PROC_TEST_HELPER"

// helperLifetime bounds a helper whose test died without killing it.
const helperLifetime = 2 * time.Minute

var sink []byte // the helper's allocation stays reachable

// RunHelper is the first thing a TestMain calls: when HelperEnv is set,
// the process is a helper and RunHelper does not return.
func RunHelper() {
	spec := os.Getenv(HelperEnv)
	if spec == "" {
		return
	}
	if err := helperMain(spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func helperMain(spec string) error {
	f := strings.Fields(spec)
	if len(f) < 4 {
		return fmt.Errorf("spec %q: want MiB fds cpuMillis block|exit|spawn N", spec)
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(f[i])
		if err != nil {
			return fmt.Errorf("spec %q: %w", spec, err)
		}
		n[i] = v
	}
	mib, nfds, cpuMs := n[0], n[1], n[2]
	sink = make([]byte, mib<<20)
	for i := 0; i < len(sink); i += 4096 {
		sink[i] = 1 // resident, not just reserved
	}
	for range nfds {
		if _, err := os.Open(os.DevNull); err != nil {
			return err
		}
	}
	for cpuTime() < time.Duration(cpuMs)*time.Millisecond {
		for i := 0; i < 1e6; i++ {
			sink = sink[:len(sink)]
		}
	}
	// The runtime opens its poller's fds (epoll, eventfd) lazily, at the
	// first timer or pollable file: open them now, so that the fd count is
	// the same before and after "ready".
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	switch f[3] {
	case "exit":
		return nil
	case "spawn":
		if len(f) < 5 {
			return fmt.Errorf("spec %q: spawn wants a count", spec)
		}
		n, err := strconv.Atoi(f[4])
		if err != nil {
			return fmt.Errorf("spec %q: %w", spec, err)
		}
		pids := make(chan int)
		for range n {
			go func() {
				runtime.LockOSThread()
				cmd := exec.Command("sleep", "120")
				if err := cmd.Start(); err != nil {
					pids <- -1
					return
				}
				pids <- cmd.Process.Pid
				_ = cmd.Wait()
			}()
		}
		var got []string
		for range n {
			got = append(got, strconv.Itoa(<-pids))
		}
		fmt.Printf("ready %d %s\n", os.Getpid(), strings.Join(got, " "))
	case "block":
		fmt.Printf("ready %d\n", os.Getpid())
	default:
		return fmt.Errorf("spec %q: %q is not block, exit or spawn", spec, f[3])
	}
	time.Sleep(helperLifetime)
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// StartTree runs `sh -c script` with spec in HelperEnv ("$0" is the test
// binary, whose TestMain calls RunHelper) and waits, at most 30 s, for n
// "ready" lines. It returns sh's pid and the fields of those lines. sh and
// every pid the lines name are killed at cleanup.
func StartTree(t testing.TB, script, spec string, n int) (int, [][]string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script, exe)
	cmd.Env = append(os.Environ(), HelperEnv+"="+spec)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sh: %v", err)
	}
	var killed []int
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		for _, p := range killed {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = cmd.Wait()
	})
	lines := make(chan []string)
	go func() { // ends when sh's stdout closes, at the latest at cleanup
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 1 && f[0] == "ready" {
				lines <- f
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
	}()
	var got [][]string
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for len(got) < n {
		select {
		case f, ok := <-lines:
			if !ok {
				t.Fatalf("sh -c %q ended after %d of %d ready lines", script, len(got), n)
			}
			got = append(got, f)
			for _, s := range f[1:] {
				if p, err := strconv.Atoi(s); err == nil {
					killed = append(killed, p)
				}
			}
		case <-timeout.C:
			t.Fatalf("sh -c %q: %d of %d ready lines within 30s", script, len(got), n)
		}
	}
	go func() { // drain further lines so that no helper blocks on stdout
		for range lines {
		}
	}()
	return cmd.Process.Pid, got
}
