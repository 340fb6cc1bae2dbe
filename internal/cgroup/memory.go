package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// MemoryLimit is the tightest memory limit the kernel enforces on the calling
// process: the smallest over its memory cgroup and every ancestor up to the
// mounted root, since a pod's limit sits above its container's and either can
// be the smaller.
//
// Only the hard limit counts (v2 memory.max, v1 memory.limit_in_bytes), past
// which the OOM killer runs; v2 memory.high only throttles, and swap limits
// are another matter.
type MemoryLimit struct {
	Bytes   uint64 // valid when Limited
	Limited bool
	// Source is one line saying where the limit was found, or that there
	// is none, for the start-up log.
	Source   string
	Warnings []string // one line each, for the caller to log
}

// unlimitedFloor: a value at or above it means "no limit". cgroup v1 shows an
// unset limit as the largest page-aligned value of a signed 64-bit counter
// (9223372036854771712 with 4 KiB pages, 9223372036854710272 with 64 KiB),
// and nobody limits a container to 4 EiB.
const unlimitedFloor = 1 << 62

// Files of the hard memory limit.
const (
	memoryMaxV2 = "memory.max"
	memoryMaxV1 = "memory.limit_in_bytes"
)

// ReadMemoryLimitSystem reads the memory limit of the calling process on the
// live system.
func ReadMemoryLimitSystem() MemoryLimit { return ReadMemoryLimit(os.DirFS("/")) }

// ReadMemoryLimit reads the memory limit from the files in fsys (rooted at
// "/": proc/self/cgroup, proc/self/mountinfo and the cgroup files under the
// mount points). A level whose file is missing has no limit (the root cgroup,
// a controller not delegated); one that cannot be read or parsed is skipped
// with a warning.
func ReadMemoryLimit(fsys fs.FS) MemoryLimit {
	loc, found, err := Locate(fsys, "memory")
	if err != nil {
		return MemoryLimit{Source: "cgroup memory limit unknown", Warnings: []string{err.Error() + "; cgroup memory limit unknown"}}
	}
	if !found {
		return MemoryLimit{Source: "no cgroup memory limit (no memory controller)"}
	}
	file, parse := memoryMaxV1, parseV1MemoryLimit
	if loc.Ref.V2 {
		file, parse = memoryMaxV2, parseMemoryMax
	}
	var res MemoryLimit
	where := ""
	for _, dir := range loc.Levels {
		name := path.Join(dir, file)
		data, err := fs.ReadFile(fsys, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("read %s: %v; ignoring this level", DisplayPath(name), ErrText(err)))
			continue
		}
		n, limited, err := parse(string(data))
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v; ignoring this level", DisplayPath(name), err))
			continue
		}
		if limited && (!res.Limited || n < res.Bytes) {
			res.Bytes, res.Limited, where = n, true, DisplayPath(dir)
		}
	}
	switch {
	case res.Limited:
		res.Source = fmt.Sprintf("%s %d at %s", file, res.Bytes, where)
	case len(res.Warnings) > 0:
		res.Source = "cgroup memory limit unknown"
	default:
		res.Source = "no cgroup memory limit"
	}
	return res
}

// parseMemoryMax parses a cgroup v2 memory.max file: a number of bytes, or
// "max" for no limit.
func parseMemoryMax(data string) (uint64, bool, error) {
	s := strings.TrimSpace(FirstLine(data))
	if s == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("memory.max %q: want a number of bytes or \"max\"", data)
	}
	return n, n < unlimitedFloor, nil
}

// parseV1MemoryLimit parses a cgroup v1 memory.limit_in_bytes file: a number
// of bytes, huge when there is no limit.
func parseV1MemoryLimit(data string) (uint64, bool, error) {
	s := strings.TrimSpace(FirstLine(data))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("memory.limit_in_bytes %q: want a number of bytes", data)
	}
	return n, n < unlimitedFloor, nil
}

// FirstLine returns data up to its first newline: the value of a cgroup
// file, which is one line whose final newline may be missing.
func FirstLine(data string) string {
	line, _, _ := strings.Cut(data, "\n")
	return line
}
