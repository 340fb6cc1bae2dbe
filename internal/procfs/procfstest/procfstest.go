// Package procfstest writes fake /proc trees for the tests of the packages
// that read /proc through procfs (the usage reader of /status, the status
// table of gm2-init status). Only tests import it.
package procfstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Proc is one fake process: its stat line's fields that procfs reads.
type Proc struct {
	Pid          int
	Comm         string
	UTime, STime uint64 // clock ticks
	Threads      int
	RSSPages     int
}

// Write creates root/PID with a stat line, an empty fd directory and no
// children, as procfs.TreeStats reads a process with nothing below it.
func Write(t testing.TB, root string, p Proc) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(p.Pid))
	for _, d := range []string{"fd", "task/" + strconv.Itoa(p.Pid)} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice threads
	// itrealvalue starttime vsize rss
	stat := fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 0 0 0 0 0 %d %d 0 0 20 0 %d 0 10 1000 %d\n",
		p.Pid, p.Comm, p.Pid, p.Pid, p.UTime, p.STime, p.Threads, p.RSSPages)
	for name, data := range map[string]string{"stat": stat, "task/" + strconv.Itoa(p.Pid) + "/children": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
