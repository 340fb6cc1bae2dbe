// Package procoracle reads a process tree from /proc the plainest way
// there is, for tests: parents from every /proc/*/status, figures from
// status, fd/ listings and stat split on spaces.
//
// It shares no code with internal/procfs on purpose. The per-worker usage
// that gm2-init reports (/status, /metrics, `gm2-init status`) comes from
// procfs; a test that held those figures against procfs itself could not
// fail when procfs reads a field wrongly. StartTree, beside it, starts the
// trees those tests read: helper processes of a known size (memory, fds,
// CPU time, children). Only tests import this package.
package procoracle

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture gm2-init is built for).
const userHZ = 100

// Tree is root and every process that descends from it, summed.
type Tree struct {
	PIDs       []int  // sorted
	RSSBytes   uint64 // VmRSS
	Threads    int
	FDs        int
	CPUTicks   uint64 // utime + stime + cutime + cstime
	ChildTicks uint64 // cutime + cstime: reaped descendants
}

// CPUSeconds is CPUTicks in seconds.
func (t Tree) CPUSeconds() float64 { return float64(t.CPUTicks) / userHZ }

// Read reads the tree of root. Processes that end while it reads are
// left out, as they would be a moment later.
func Read(root int) (Tree, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return Tree{}, fmt.Errorf("read /proc: %w", err)
	}
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := statusField(pid, "PPid"); ok {
			parent[pid] = int(pp)
		}
	}
	in := map[int]bool{root: true}
	for grew := true; grew; {
		grew = false
		for p, pp := range parent {
			if !in[p] && in[pp] {
				in[p], grew = true, true
			}
		}
	}
	var t Tree
	for p := range in {
		t.PIDs = append(t.PIDs, p)
		rss, _ := statusField(p, "VmRSS")
		t.RSSBytes += rss
		th, _ := statusField(p, "Threads")
		t.Threads += int(th)
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p)); err == nil {
			t.FDs += len(fds)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 15 {
			return Tree{}, fmt.Errorf("/proc/%d/stat: %d fields after the name, want ≥ 15", p, len(f))
		}
		for i, n := range f[11:15] { // utime stime cutime cstime
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return Tree{}, fmt.Errorf("/proc/%d/stat: field %d: %w", p, 14+i, err)
			}
			t.CPUTicks += v
			if i >= 2 {
				t.ChildTicks += v
			}
		}
	}
	slices.Sort(t.PIDs)
	return t, nil
}

// statusField is the "Key: value [kB]" line of /proc/<pid>/status, in
// bytes when the unit is kB; false when the process or the line is gone.
func statusField(pid int, key string) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, true
	}
	return 0, false
}

// TB is the part of testing.TB that ReadOrFail uses.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// ReadOrFail is Read for a test: an error ends the test.
func ReadOrFail(t TB, root int) Tree {
	t.Helper()
	tr, err := Read(root)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
