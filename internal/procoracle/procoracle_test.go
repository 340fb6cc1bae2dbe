package procoracle

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// The tree of this test process holds the child it starts, and only what
// descends from it.
func TestReadFindsChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tr, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tr.PIDs, os.Getpid()) || !slices.Contains(tr.PIDs, cmd.Process.Pid) {
		t.Fatalf("tree %v, want %d and its child %d", tr.PIDs, os.Getpid(), cmd.Process.Pid)
	}
	if slices.Contains(tr.PIDs, os.Getppid()) {
		t.Fatalf("tree %v holds the parent %d", tr.PIDs, os.Getppid())
	}
	if tr.RSSBytes < 1<<20 || tr.Threads < 2 || tr.FDs < 3 {
		t.Fatalf("figures %+v: want RSS ≥ 1 MiB, ≥ 2 threads, ≥ 3 fds", tr)
	}
	child, err := Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(child.PIDs, []int{cmd.Process.Pid}) || child.Threads != 1 {
		t.Fatalf("tree of sleep: %+v, want itself alone with one thread", child)
	}
}

func TestStatusFieldMissing(t *testing.T) {
	if _, ok := statusField(os.Getpid(), "NoSuchKey"); ok {
		t.Fatal("a missing key was found")
	}
	if v, ok := statusField(os.Getpid(), "VmRSS"); !ok || v%1024 != 0 {
		t.Fatalf("VmRSS %d %v: want a kB figure in bytes", v, ok)
	}
}
