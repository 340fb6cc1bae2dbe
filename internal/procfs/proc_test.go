package procfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// parseStatPPid is the ancestor walk's use of parseStat.
func parseStatPPid(data []byte) (int, error) {
	st, err := parseStat(data, false)
	return st.PPid, err
}

func TestParseStatPPid(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    int
		wantErr bool
	}{
		{"plain", "1234 (sleep) S 1200 1234 1200 0 -1 4194304 90 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n", 1200, false},
		{"pid 1 has ppid 0", "1 (gm2-init) S 0 1 1 0 -1", 0, false},
		{"comm with spaces and parens", "77 (a) b (c) R 76 77 77", 76, false},
		{"comm is a close paren", "5 ()) S 4 5 5", 4, false},
		{"comm is open parens", "5 ((() S 3 5 5", 3, false},
		{"empty comm", "5 () Z 2 5 5", 2, false},
		{"comm with newline", "5 (a\nb) S 9 5", 9, false},
		{"comm looks like fields", "5 (x) S 99 1) S 8 5 5", 8, false},
		{"no trailing newline, minimal", "5 (x) S 6", 6, false},
		{"empty", "", 0, true},
		{"no close paren", "5 (x S 6 5", 0, true},
		{"nothing after comm", "5 (x)", 0, true},
		{"only state", "5 (x) S", 0, true},
		{"state not a letter", "5 (x) SS 6", 0, true},
		{"ppid not a number", "5 (x) S y 6", 0, true},
		{"negative ppid", "5 (x) S -1 6", 0, true},
		{"signed ppid", "5 (x) S +6 6", 0, true},
		{"ppid overflow", "5 (x) S 99999999999 6", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatPPid([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStatPPid(%q) error = %v, wantErr %v", tt.stat, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errBadStat) {
				t.Errorf("error %v does not wrap errBadStat", err)
			}
			if got != tt.want {
				t.Errorf("parseStatPPid(%q) = %d, want %d", tt.stat, got, tt.want)
			}
		})
	}
}

// FuzzParseStatPPid feeds arbitrary bytes to the stat parser (it must not
// panic and must return a pid in range), and checks that a stat line built
// around an arbitrary comm always yields the ppid written after it.
func FuzzParseStatPPid(f *testing.F) {
	f.Add([]byte("1 (x) S 0 1"), []byte("a) b (c"), uint32(42))
	f.Add([]byte(")))"), []byte(")"), uint32(0))
	f.Add([]byte("5 ( S 6"), []byte("\n\t "), uint32(1<<31-1))
	f.Fuzz(func(t *testing.T, data, comm []byte, ppid uint32) {
		if got, err := parseStatPPid(data); err == nil && (got < 0 || got > MaxPid) {
			t.Fatalf("parseStatPPid(%q) = %d, out of range", data, got)
		}
		want := int(ppid % (MaxPid + 1))
		line := fmt.Appendf(nil, "123 (%s) S %d 123 123 0 -1 4194304\n", comm, want)
		got, err := parseStatPPid(line)
		if err != nil || got != want {
			t.Fatalf("parseStatPPid(%q) = %d, %v; want %d", line, got, err, want)
		}
	})
}

// fakeProc writes a fake procfs: pid → stat line.
func fakeProc(t *testing.T, stats map[int]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, stat := range stats {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFindAncestorFakeTree(t *testing.T) {
	stats := map[int]string{
		10:  "10 (worker) S 1 10 10 0",
		50:  "50 (sh -c) S 10 50 50 0",
		100: "100 (a) b (c) S 50 100 100 0",
		200: "200 (loop) S 201 200 200 0",
		201: "201 (loop) S 200 201 201 0",
		300: "300 (orphan) S 999 300 300 0", // parent has no stat: gone
		400: "400 (broken S 10 400",         // unparsable
		500: "500 (daemon) S 1 500 500 0",   // re-parented to init
	}
	// A chain longer than maxAncestorSteps, ending at the worker 10.
	const deep = 1000
	for i := 0; i < maxAncestorSteps+5; i++ {
		parent := deep + i + 1
		if i == maxAncestorSteps+4 {
			parent = 10
		}
		stats[deep+i] = fmt.Sprintf("%d (d) S %d", deep+i, parent)
	}
	root := fakeProc(t, stats)
	workers := map[int]bool{10: true}
	isWorker := func(p int) bool { return workers[p] }

	tests := []struct {
		name   string
		pid    int
		want   int
		wantOK bool
	}{
		{"worker itself", 10, 10, true},
		{"child", 50, 10, true},
		{"grandchild with nasty comm", 100, 10, true},
		{"cycle ends", 200, 0, false},
		{"missing parent", 300, 0, false},
		{"unparsable stat", 400, 0, false},
		{"daemonized descendant", 500, 0, false},
		{"unknown pid", 12345, 0, false},
		{"pid 1", 1, 0, false},
		{"pid 0", 0, 0, false},
		{"negative pid", -3, 0, false},
		{"chain within the bound", deep + 5, 10, true},
		{"chain past the bound", deep, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FindAncestor(root, tt.pid, isWorker)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("FindAncestor(%d) = %d, %v; want %d, %v", tt.pid, got, ok, tt.want, tt.wantOK)
			}
		})
	}

	t.Run("pid 1 is never asked", func(t *testing.T) {
		_, ok := FindAncestor(root, 10, func(p int) bool { return p == 1 })
		if ok {
			t.Error("walk went past pid 1's child to pid 1")
		}
	})
}

func TestParentPidErrors(t *testing.T) {
	root := fakeProc(t, map[int]string{7: "garbage"})
	if _, err := ParentPid(root, 7); !errors.Is(err, errBadStat) || !strings.Contains(err.Error(), "pid 7") {
		t.Errorf("ParentPid on garbage: %v", err)
	}
	if _, err := ParentPid(root, 8); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParentPid on missing pid: %v", err)
	}
	if _, err := ParentPid(root, 0); err == nil {
		t.Error("ParentPid(0) succeeded")
	}
}

// startShellChain starts `sh -c script` where the script prints pids on its
// first line, and returns the started command and those pids. Everything it
// started is killed by pid at cleanup.
func startShellChain(t *testing.T, script string) (*exec.Cmd, []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		testtool.Missing(t, "cannot start sh: %v", err)
	}
	var pids []int
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	type result struct {
		line string
		err  error
	}
	lines := make(chan result, 1)
	go func() { // ends when the line arrives or the pipe closes (cleanup kills sh)
		line, err := bufio.NewReader(out).ReadString('\n')
		lines <- result{line, err}
	}()
	select {
	case r := <-lines:
		if r.err != nil {
			t.Fatalf("reading pids from sh: %v", r.err)
		}
		for _, f := range strings.Fields(r.line) {
			p, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("bad pid %q from sh", f)
			}
			pids = append(pids, p)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("sh did not print its pids within 20s")
	}
	return cmd, pids
}

func TestFindAncestorRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no procfs: %v", err)
	}
	t.Run("child of worker", func(t *testing.T) {
		cmd, pids := startShellChain(t, `sleep 30 & echo $!; wait`)
		worker, sleeper := cmd.Process.Pid, pids[0]
		got, ok := FindAncestor("/proc", sleeper, func(p int) bool { return p == worker })
		if !ok || got != worker {
			t.Errorf("FindAncestor(sleep %d) = %d, %v; want sh %d", sleeper, got, ok, worker)
		}
		if _, ok := FindAncestor("/proc", sleeper, func(int) bool { return false }); ok {
			t.Error("found a worker where there is none")
		}
	})
	t.Run("grandchild of worker", func(t *testing.T) {
		cmd, pids := startShellChain(t, `sh -c 'sleep 30 & echo $$ $!; wait' & wait`)
		worker, inner, sleeper := cmd.Process.Pid, pids[0], pids[1]
		if ppid, err := ParentPid("/proc", inner); err != nil || ppid != worker {
			t.Fatalf("ParentPid(inner sh %d) = %d, %v; want %d", inner, ppid, err, worker)
		}
		got, ok := FindAncestor("/proc", sleeper, func(p int) bool { return p == worker })
		if !ok || got != worker {
			t.Errorf("FindAncestor(sleep %d) = %d, %v; want outer sh %d", sleeper, got, ok, worker)
		}
	})
	t.Run("this test process", func(t *testing.T) {
		self := os.Getpid()
		got, ok := FindAncestor("/proc", self, func(p int) bool { return p == os.Getppid() })
		if !ok || got != os.Getppid() {
			t.Errorf("FindAncestor(self) = %d, %v; want parent %d", got, ok, os.Getppid())
		}
	})
}

func TestGroupMembersAndExeName(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no procfs: %v", err)
	}
	// sh is not a group leader here (it inherits the test's group), so
	// start it in a group of its own, as gm2-init starts workers.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `sleep 30 & echo $!; wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		testtool.Missing(t, "cannot start sh: %v", err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	sleeper, _ := strconv.Atoi(strings.TrimSpace(line))
	got := GroupMembers("/proc", cmd.Process.Pid)
	want := []int{cmd.Process.Pid, sleeper}
	if len(got) != 2 || !(got[0] == want[0] && got[1] == want[1] || got[0] == want[1] && got[1] == want[0]) {
		t.Errorf("GroupMembers(%d) = %v, want %v", cmd.Process.Pid, got, want)
	}
	// $! is printed right after the fork: the child may still be the
	// shell until it has exec'd sleep. Wait for the exec, bounded.
	n := ExeName("/proc", sleeper)
	for deadline := time.Now().Add(10 * time.Second); n != "sleep" && time.Now().Before(deadline); n = ExeName("/proc", sleeper) {
		runtime.Gosched()
	}
	if n != "sleep" {
		t.Errorf("ExeName(sleep) = %q", n)
	}
	if n := ExeName("/proc", 1<<30); n != "" {
		t.Errorf("ExeName(no such pid) = %q", n)
	}
	if g := GroupMembers("/proc", 1<<30); len(g) != 0 {
		t.Errorf("GroupMembers(no such group) = %v", g)
	}
}

func TestPids(t *testing.T) {
	if !slices.Contains(Pids("/proc"), os.Getpid()) {
		t.Errorf("Pids(/proc) lacks this process, %d", os.Getpid())
	}
	if got := Pids(filepath.Join(t.TempDir(), "gone")); got != nil {
		t.Errorf("Pids of a missing directory = %v, want none", got)
	}
}
