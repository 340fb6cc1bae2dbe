package procfs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Stat is what gm2-init needs of one /proc/PID/stat line.
type Stat struct {
	Pid, PPid, PGrp int
	// StartTime is when the process started, in clock ticks after boot
	// (field 22). With the pid it names one process: a pid reused by a
	// later process has another start time.
	StartTime uint64
}

// ReadStat reads procRoot/<pid>/stat.
func ReadStat(procRoot string, pid int) (Stat, error) {
	data, err := readStat(procRoot, pid)
	if err != nil {
		return Stat{}, err
	}
	st, err := parseStat(data)
	if err != nil {
		return Stat{}, fmt.Errorf("stat of pid %d: %w", pid, err)
	}
	st.Pid = pid
	return st, nil
}

func readStat(procRoot string, pid int) ([]byte, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxStatSize)
	n, err := f.Read(buf)
	if n == 0 && err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// parseStat extracts ppid (field 4), pgrp (5) and starttime (22). Fields are
// counted after the last ')', because comm may hold spaces and parentheses.
func parseStat(data []byte) (Stat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("%w: no ')' after comm", errBadStat)
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state), so field N is f[N-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("%w: %d fields after comm", errBadStat, len(f))
	}
	var st Stat
	var ok bool
	if st.PPid, ok = ParseDecimal(f[1]); !ok {
		return Stat{}, fmt.Errorf("%w: ppid %q", errBadStat, f[1])
	}
	if st.PGrp, ok = ParseDecimal(f[2]); !ok {
		return Stat{}, fmt.Errorf("%w: pgrp %q", errBadStat, f[2])
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("%w: starttime %q", errBadStat, f[19])
	}
	st.StartTime = start
	return st, nil
}

// Descendants returns every descendant of pid (pid itself excluded) as of
// one scan of procRoot: children, their children, and so on. Processes that
// left the tree by being re-parented (their parent died) are not included:
// the kernel no longer links them to pid.
func Descendants(procRoot string, pid int) []Stat {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	byParent := map[int][]Stat{}
	for _, e := range ents {
		p, ok := ParseDecimal([]byte(e.Name()))
		if !ok || p == 0 {
			continue
		}
		st, err := ReadStat(procRoot, p)
		if err != nil {
			continue // gone meanwhile
		}
		byParent[st.PPid] = append(byParent[st.PPid], st)
	}
	var out []Stat
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range byParent[p] {
			if seen[c.Pid] {
				continue // a corrupt fake tree with a cycle
			}
			seen[c.Pid] = true
			out = append(out, c)
			queue = append(queue, c.Pid)
		}
	}
	return out
}

// pageSize is the unit of /proc/PID/statm.
var pageSize = int64(os.Getpagesize())

// RSS returns the resident set size of pid in bytes, from
// procRoot/<pid>/statm (its second field, in pages).
func RSS(procRoot string, pid int) (int64, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(data)
	if len(f) < 2 {
		return 0, fmt.Errorf("statm of pid %d: %d fields", pid, len(f))
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil || pages < 0 {
		return 0, fmt.Errorf("statm of pid %d: resident %q", pid, f[1])
	}
	return pages * pageSize, nil
}
