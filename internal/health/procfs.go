package health

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// userHZ is the unit of the tick counts in /proc/<pid>/stat. The kernel
// reports them in USER_HZ, which is 100 on every architecture Linux's
// userspace ABI exposes, whatever CONFIG_HZ the kernel was built with; asking
// sysconf(_SC_CLK_TCK) would need cgo for the same answer.
const userHZ = 100

// procStat holds the fields of /proc/<pid>/stat that /metrics reports.
type procStat struct {
	utime, stime uint64 // CPU time in user and kernel mode, in ticks
	starttime    uint64 // start time after boot, in ticks
}

// parseProcStat parses /proc/<pid>/stat. The second field (comm) is in
// parentheses and may itself hold spaces and ')', so the fields are counted
// from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procStat{}, fmt.Errorf("parse stat: no ')' after comm")
	}
	// fields[0] is field 3 (state) of proc(5); field n is fields[n-3].
	fields := bytes.Fields(b[end+1:])
	const (
		utimeField     = 14
		stimeField     = 15
		starttimeField = 22
	)
	if len(fields) < starttimeField-2 {
		return procStat{}, fmt.Errorf("parse stat: %d fields after comm, want at least %d", len(fields), starttimeField-2)
	}
	var st procStat
	for _, f := range []struct {
		n   int
		dst *uint64
	}{{utimeField, &st.utime}, {stimeField, &st.stime}, {starttimeField, &st.starttime}} {
		v, err := strconv.ParseUint(string(fields[f.n-3]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse stat field %d: %w", f.n, err)
		}
		*f.dst = v
	}
	return st, nil
}

// parseStatm parses /proc/<pid>/statm, whose first two fields are the total
// program size and the resident set size, in pages.
func parseStatm(b []byte, pageSize int) (virtual, resident uint64, err error) {
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0, 0, fmt.Errorf("parse statm: %d fields, want at least 2", len(fields))
	}
	size, err := strconv.ParseUint(string(fields[0]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse statm size: %w", err)
	}
	rss, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse statm resident: %w", err)
	}
	return size * uint64(pageSize), rss * uint64(pageSize), nil
}

// parseBootTime returns the btime line of /proc/stat: the boot time in Unix
// seconds, which the start time in ticks is relative to.
func parseBootTime(b []byte) (uint64, error) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			v, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse btime: %w", err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("parse /proc/stat: no btime line")
}

// processStartTime returns the start time of this process, from the proc
// filesystem mounted at procRoot, in Unix seconds, as process_start_time_seconds wants
// it. It never changes, so the server reads it once.
func processStartTime(procRoot string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return 0, err
	}
	btime, err := parseBootTime(b)
	if err != nil {
		return 0, err
	}
	b, err = os.ReadFile(filepath.Join(procRoot, "self", "stat"))
	if err != nil {
		return 0, err
	}
	st, err := parseProcStat(b)
	if err != nil {
		return 0, err
	}
	return float64(btime) + float64(st.starttime)/userHZ, nil
}

// procUsage is the resource usage of gm2-init itself, read at each scrape.
type procUsage struct {
	cpuSeconds    float64
	virtualBytes  uint64
	residentBytes uint64
	openFDs       int
	statErr       error // cpuSeconds unknown
	statmErr      error // virtualBytes and residentBytes unknown
	fdErr         error // openFDs unknown
}

// readProcUsage reads /proc/self/{stat,statm,fd}. Each part may fail on its
// own (e.g. a hardened /proc hides fd); the metrics that could be read are
// still reported.
func readProcUsage(procRoot string) procUsage {
	var u procUsage
	self := filepath.Join(procRoot, "self")
	if b, err := os.ReadFile(filepath.Join(self, "stat")); err != nil {
		u.statErr = err
	} else if st, err := parseProcStat(b); err != nil {
		u.statErr = err
	} else {
		u.cpuSeconds = float64(st.utime+st.stime) / userHZ
	}
	if b, err := os.ReadFile(filepath.Join(self, "statm")); err != nil {
		u.statmErr = err
	} else {
		u.virtualBytes, u.residentBytes, u.statmErr = parseStatm(b, os.Getpagesize())
	}
	u.openFDs, u.fdErr = countFDs(filepath.Join(self, "fd"))
	return u
}

// countFDs counts the entries of /proc/self/fd. The descriptor used to read
// the directory is among them, as in client_golang, so that the figure
// compares with other exporters'.
func countFDs(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	return len(names), nil
}
