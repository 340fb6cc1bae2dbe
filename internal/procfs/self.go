package procfs

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Usage is the resource usage of one process (gm2-init itself in /metrics'
// process_* families).
type Usage struct {
	CPUSeconds    float64 // user + system, its own threads only
	VirtualBytes  uint64
	ResidentBytes uint64
	OpenFDs       int
	StatErr       error // CPUSeconds, VirtualBytes and ResidentBytes unknown
	FDErr         error // OpenFDs unknown
}

// ReadSelf reads the usage of the calling process from procRoot/self. Each
// part may fail on its own (a hardened /proc can hide fd/); what could be read
// is still returned.
func ReadSelf(procRoot string) Usage {
	var u Usage
	self := procRoot + "/self"
	if data, err := readFile(self+"/stat", nil, maxStatSize); err != nil {
		u.StatErr = err
	} else if st, err := parseStat(data, true); err != nil {
		u.StatErr = fmt.Errorf("%s/stat: %w", self, err)
	} else {
		// Not cutime/cstime: for PID 1 those hold every reaped
		// worker and orphan, which is not gm2-init's own work.
		u.CPUSeconds = TicksToSeconds(st.UTime + st.STime)
		u.VirtualBytes = st.VSizeBytes
		u.ResidentBytes = st.RSSPages * pageSize()
	}
	// Listed rather than taken from the directory's size, as
	// client_golang does, so that the figure compares with other
	// exporters': the descriptor used to list the directory counts.
	u.OpenFDs, u.FDErr = countDirEntries(self+"/fd", nil)
	return u
}

// StartTime returns the start time of the calling process in Unix seconds
// (process_start_time_seconds): the boot time from procRoot/stat plus the
// start time in ticks from procRoot/self/stat. It never changes, so read it
// once.
func StartTime(procRoot string) (float64, error) {
	data, err := readFile(procRoot+"/stat", nil, 1<<20)
	if err != nil {
		return 0, err
	}
	btime, err := parseBootTime(data)
	if err != nil {
		return 0, fmt.Errorf("%s/stat: %w", procRoot, err)
	}
	data, err = readFile(procRoot+"/self/stat", nil, maxStatSize)
	if err != nil {
		return 0, err
	}
	st, err := parseStat(data, true)
	if err != nil {
		return 0, fmt.Errorf("%s/self/stat: %w", procRoot, err)
	}
	return float64(btime) + TicksToSeconds(st.StartTime), nil
}

// parseBootTime returns the btime line of /proc/stat: the boot time in Unix
// seconds, which start times in ticks are relative to.
func parseBootTime(b []byte) (uint64, error) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			v, err := parseTicks(bytes.TrimSpace(rest))
			if err != nil {
				return 0, fmt.Errorf("btime: %w", err)
			}
			return v, nil
		}
	}
	return 0, errors.New("no btime line")
}

// pageSize is the kernel's page size, the unit of the rss field of stat.
func pageSize() uint64 { return uint64(unix.Getpagesize()) }
