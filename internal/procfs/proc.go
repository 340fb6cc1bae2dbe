// Package procfs is gm2-init's one reader of /proc: a process's parent (to
// credit a READY=1 sent by a wrapper's child to its worker), the members of a
// process group, an executable's name, the usage of a worker's process tree
// (memory, CPU, threads, fds for /status, /metrics and the memory check) and
// gm2-init's own usage.
//
// It depends on nothing but golang.org/x/sys, reads with plain
// open/read/getdents into reused buffers, and parses without allocating,
// because /metrics reads a few files per process of every worker at each
// scrape and gm2-init shares its CPU quota with the workers. Every function
// takes the mount point of the proc file system ("/proc"), so that tests can
// hand it a fake tree.
package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxAncestorSteps bounds the walk up the parent chain. Real wrapper chains
// are a few levels deep (tini → sh → npm → sh → node); the bound only exists
// so that a corrupt or adversarial fake tree (a cycle) cannot loop forever.
const maxAncestorSteps = 64

// maxStatSize bounds how much of a stat file is read. A real
// /proc/<pid>/stat line is a few hundred bytes (comm is at most 16 bytes);
// the bound keeps a fake or hostile procRoot from costing memory.
const maxStatSize = 4096

// FindAncestor walks from pid up its parent chain, as recorded under
// procRoot ("/proc" in production, a fake tree in tests), and returns the first
// pid for which isWorker is true — pid itself included. That is how a READY=1
// sent by a wrapper's child (`sh -c 'exec …'` that did not exec, `npm start`)
// is credited to the worker gm2-init started.
//
// The walk stops, reporting false, at pid 1 or 0, when a stat file cannot be
// read or parsed (the process is gone), or after maxAncestorSteps steps.
//
// The answer is only as fresh as /proc: a sender that exits before the walk
// (systemd-notify(1) does, right after sending) can no longer be traced, and
// a descendant that daemonized has been re-parented away from its worker.
func FindAncestor(procRoot string, pid int, isWorker func(int) bool) (int, bool) {
	for step := 0; step <= maxAncestorSteps && pid > 1; step++ {
		if isWorker(pid) {
			return pid, true
		}
		ppid, err := ParentPid(procRoot, pid)
		if err != nil {
			return 0, false
		}
		pid = ppid
	}
	return 0, false
}

// ParentPid reads the parent pid of pid from procRoot/<pid>/stat.
func ParentPid(procRoot string, pid int) (int, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("parent of pid %d: not a pid", pid)
	}
	st, err := readStat(procRoot, pid, nil, false)
	if err != nil {
		return 0, fmt.Errorf("parent of pid %d: %w", pid, err)
	}
	return st.PPid, nil
}

// readStat reads and parses procRoot/<pid>/stat, using buf: in full, or
// only up to pgrp (all an ancestor walk or a scan needs).
func readStat(procRoot string, pid int, buf []byte, full bool) (Stat, error) {
	_, path := pidPath(nil, procRoot, pid, "stat")
	data, err := readFile(path, buf, maxStatSize)
	if err != nil {
		return Stat{}, err
	}
	st, err := parseStat(data, full)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// MaxPid bounds parsed pids: pid_t is a 32-bit signed integer on Linux.
const MaxPid = 1<<31 - 1

// ParseDecimal parses plain ASCII digits into a value in 0..MaxPid. Unlike
// strconv.Atoi it rejects signs, so "+5" and "-0" are not pids.
func ParseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > MaxPid {
		return 0, false
	}
	return n, true
}

// Children lists the pids whose parent is pid, by scanning procRoot. It does
// not rely on /proc/PID/task/TID/children, which needs CONFIG_PROC_CHILDREN
// and is missing on some kernels.
func Children(procRoot string, pid int) []int {
	return scan(procRoot, func(st Stat) bool { return st.PPid == pid })
}

// GroupMembers lists the pids whose process group is pgid, by scanning
// procRoot. gm2-init starts every worker as the leader of its own group, so
// this is the worker and what its wrapper started (sh -c, npm start).
func GroupMembers(procRoot string, pgid int) []int {
	return scan(procRoot, func(st Stat) bool { return st.PGrp == pgid })
}

// Pids lists the processes under procRoot, in the directory's order (an
// unreadable procRoot lists none).
func Pids(procRoot string) []int {
	var pids []int
	_ = readDirNames(procRoot, nil, func(name []byte) bool {
		if p, ok := ParseDecimal(name); ok && p > 0 {
			pids = append(pids, p)
		}
		return true
	})
	return pids
}

// scan returns the pids under procRoot whose stat line satisfies keep.
func scan(procRoot string, keep func(Stat) bool) []int {
	var out []int
	scanStats(procRoot, func(pid int, st Stat) {
		if keep(st) {
			out = append(out, pid)
		}
	})
	return out
}

// scanStats calls each with the (partly parsed) stat line of every process
// under procRoot. Processes that vanish or do not parse during the scan are
// skipped: a scan is never atomic, and a process that exits during it was
// not worth reporting anyway.
func scanStats(procRoot string, each func(pid int, st Stat)) {
	buf := make([]byte, 0, 512)
	for _, p := range Pids(procRoot) {
		if st, err := readStat(procRoot, p, buf, false); err == nil {
			each(p, st)
		}
	}
}

// ExeName returns the base name of the executable pid runs ("" when it
// cannot be read: the process is gone, or belongs to another user).
func ExeName(procRoot string, pid int) string {
	target, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSuffix(target, " (deleted)"))
}
