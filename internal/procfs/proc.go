// Package procfs reads the few facts gm2-init needs from /proc: a process's
// parent, the children of a process, its state letter.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("parent of pid %d: %w", pid, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStatSize))
	if err != nil {
		return 0, fmt.Errorf("parent of pid %d: read %s: %w", pid, path, err)
	}
	ppid, err := parseStatPPid(data)
	if err != nil {
		return 0, fmt.Errorf("parent of pid %d: %s: %w", pid, path, err)
	}
	return ppid, nil
}

var errBadStat = errors.New("malformed stat line")

// parseStatPPid extracts field 4 (ppid) from a /proc/<pid>/stat line:
//
//	pid (comm) state ppid pgrp …
//
// comm is chosen by the process (prctl(PR_SET_NAME), argv[0]) and may contain
// spaces, '(' and ')', so the fields are counted after the LAST ')' — the
// kernel writes nothing after comm that could contain one.
func parseStatPPid(data []byte) (int, error) {
	ppid, _, err := parseStatIDs(data)
	return ppid, err
}

// parseStatIDs extracts fields 4 and 5 (ppid and pgrp) of a stat line.
func parseStatIDs(data []byte) (ppid, pgrp int, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%w: no ')' after comm", errBadStat)
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 2 {
		return 0, 0, fmt.Errorf("%w: no ppid field", errBadStat)
	}
	if len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("%w: state %q is not one letter", errBadStat, fields[0])
	}
	ppid, ok := ParseDecimal(fields[1])
	if !ok {
		return 0, 0, fmt.Errorf("%w: ppid %q", errBadStat, fields[1])
	}
	pgrp = -1
	if len(fields) > 2 {
		if g, ok := ParseDecimal(fields[2]); ok {
			pgrp = g
		}
	}
	return ppid, pgrp, nil
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
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, ok := ParseDecimal([]byte(e.Name()))
		if !ok || p == 0 {
			continue
		}
		if pp, err := ParentPid(procRoot, p); err == nil && pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// GroupMembers lists the pids whose process group is pgid, by scanning
// procRoot. gm2-init starts every worker as the leader of its own group, so
// this is the worker and what its wrapper started (sh -c, npm start).
func GroupMembers(procRoot string, pgid int) []int {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, ok := ParseDecimal([]byte(e.Name()))
		if !ok || p == 0 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil || len(data) > maxStatSize {
			continue
		}
		if _, g, err := parseStatIDs(data); err == nil && g == pgid {
			out = append(out, p)
		}
	}
	return out
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
