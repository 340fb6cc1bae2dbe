package procfs

import (
	"bytes"
	"errors"
	"fmt"
)

// errBadStat marks a /proc/<pid>/stat line that does not parse.
var errBadStat = errors.New("malformed stat line")

// Stat holds the fields of /proc/<pid>/stat that gm2-init uses. Times are in
// clock ticks (see ClockTicks), memory in bytes or pages as named.
type Stat struct {
	State byte // R, S, D, Z, T…
	PPid  int
	PGrp  int // -1 when the line stops before it (only fake trees do)

	// The fields below are zero unless the line was parsed in full.
	UTime, STime   uint64 // CPU time of the process (all its threads), user and kernel
	CUTime, CSTime uint64 // CPU time of the children it waited for
	Threads        int
	StartTime      uint64 // ticks after boot
	VSizeBytes     uint64
	RSSPages       uint64 // resident set: anonymous + file + shmem pages
}

// Field numbers of proc(5), counting pid as 1 and comm as 2.
const (
	fieldState     = 3
	fieldPPid      = 4
	fieldPGrp      = 5
	fieldUTime     = 14
	fieldSTime     = 15
	fieldCUTime    = 16
	fieldCSTime    = 17
	fieldThreads   = 20
	fieldStartTime = 22
	fieldVSize     = 23
	fieldRSS       = 24
)

// parseStat parses a /proc/<pid>/stat line:
//
//	pid (comm) state ppid pgrp session … utime stime cutime cstime … num_threads … starttime vsize rss …
//
// comm is chosen by the process (prctl(PR_SET_NAME), argv[0]) and may contain
// spaces, '(' , ')' and newlines, so the fields are counted after the LAST
// ')': the kernel writes nothing after comm that could contain one.
//
// With full false only state and ppid are required (and pgrp read when
// present): that is all an ancestor walk needs. With full true every field up
// to rss must be there, which every Linux since 2.6 writes.
//
// It allocates nothing: /metrics parses one line per process of every worker
// tree at each scrape.
func parseStat(data []byte, full bool) (Stat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("%w: no ')' after comm", errBadStat)
	}
	st := Stat{PGrp: -1}
	rest := data[i+1:]
	n := fieldState - 1 // number of the last field consumed
	for {
		var f []byte
		f, rest = nextField(rest)
		if f == nil {
			break
		}
		n++
		var err error
		switch n {
		case fieldState:
			if len(f) != 1 {
				return Stat{}, fmt.Errorf("%w: state %q is not one letter", errBadStat, f)
			}
			st.State = f[0]
		case fieldPPid:
			v, ok := ParseDecimal(f)
			if !ok {
				return Stat{}, fmt.Errorf("%w: ppid %q", errBadStat, f)
			}
			st.PPid = v
		case fieldPGrp:
			if v, ok := ParseDecimal(f); ok {
				st.PGrp = v
			} else if full {
				err = fmt.Errorf("pgrp %q", f)
			}
		case fieldUTime:
			st.UTime, err = parseTicks(f)
		case fieldSTime:
			st.STime, err = parseTicks(f)
		case fieldCUTime:
			st.CUTime, err = parseTicks(f)
		case fieldCSTime:
			st.CSTime, err = parseTicks(f)
		case fieldThreads:
			var u uint64
			u, err = parseTicks(f)
			// 0 is possible for a process caught exiting.
			if err == nil && u > MaxPid {
				err = fmt.Errorf("num_threads %q", f)
			}
			st.Threads = int(u)
		case fieldStartTime:
			st.StartTime, err = parseTicks(f)
		case fieldVSize:
			st.VSizeBytes, err = parseTicks(f)
		case fieldRSS:
			st.RSSPages, err = parseTicks(f)
		}
		if err != nil {
			if !full {
				// A fake or future line with odd trailing fields still
				// yields the ppid an ancestor walk needs.
				return Stat{State: st.State, PPid: st.PPid, PGrp: st.PGrp}, nil
			}
			return Stat{}, fmt.Errorf("%w: field %d: %v", errBadStat, n, err)
		}
		if n == fieldRSS || (!full && n == fieldPGrp) {
			return st, nil
		}
	}
	switch {
	case n < fieldPPid:
		return Stat{}, fmt.Errorf("%w: no ppid field", errBadStat)
	case full:
		return Stat{}, fmt.Errorf("%w: %d fields, want at least %d", errBadStat, n, fieldRSS)
	}
	return Stat{State: st.State, PPid: st.PPid, PGrp: st.PGrp}, nil
}

// nextField returns the first space-separated field of b and what follows
// it; field is nil when b holds no more fields.
func nextField(b []byte) (field, rest []byte) {
	start := 0
	for start < len(b) && isSpace(b[start]) {
		start++
	}
	if start == len(b) {
		return nil, nil
	}
	end := start
	for end < len(b) && !isSpace(b[end]) {
		end++
	}
	return b[start:end], b[end:]
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' }

// parseTicks parses an unsigned decimal counter. The kernel prints cutime and
// cstime as signed numbers; a '-' never appears in practice and is refused
// like any other non-digit.
func parseTicks(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("%q is not a counter", b)
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a counter", b)
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("%q overflows", b)
		}
		v = v*10 + d
	}
	return v, nil
}
