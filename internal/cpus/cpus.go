// Package cpus works out how many CPUs the container may really use, which is
// what `-i max` means.
//
// PM2 counts the host's CPUs, so a pod limited to 2 CPUs on a 64-core node
// starts 64 workers that the kernel then throttles together. The number that
// matters is the smaller of two limits the kernel enforces:
//
//   - the affinity mask (sched_getaffinity), which already reflects cpusets
//     and taskset, and
//   - the CFS bandwidth quota of the process's CPU cgroup and of every
//     ancestor up to the visible root (cgroup v1 cpu.cfs_quota_us /
//     cpu.cfs_period_us, cgroup v2 cpu.max).
//
// The quota is a fraction (quota/period CPUs); it is rounded down by default
// because workers are whole processes: N+1 busy workers on N.5 CPUs exhaust
// the quota and the kernel stalls every process in the container until the
// next period, which shows up as tail latency rather than as an error.
//
// Nothing here may stop gm2-init: every I/O or parse failure degrades to the
// affinity count with a warning the caller logs.
package cpus

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/gm2-init/gm2-init/internal/echo"
)

// Rounding says how a fractional CPU quota becomes a whole number of workers.
type Rounding int

const (
	// Floor rounds a fractional quota down (minimum 1): never oversubscribe.
	Floor Rounding = iota
	// Ceil rounds it up, for workloads that idle a lot and would rather use
	// the fraction than leave it idle.
	Ceil
)

// ParseRounding reads the --cpu-rounding / GM2_CPU_ROUNDING value.
func ParseRounding(s string) (Rounding, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "floor":
		return Floor, nil
	case "ceil":
		return Ceil, nil
	}
	return Floor, fmt.Errorf("invalid CPU rounding %q: want \"floor\" or \"ceil\"", s)
}

// String returns the spelling ParseRounding accepts.
func (r Rounding) String() string {
	switch r {
	case Floor:
		return "floor"
	case Ceil:
		return "ceil"
	}
	return fmt.Sprintf("Rounding(%d)", int(r))
}

// Options are the user's settings that affect the count.
type Options struct {
	Override int // GM2_CPUS / --cpus; >0 wins over everything
	Rounding Rounding
}

// Result is the count and the explanation the caller logs once at start-up
// (and reports in --dry-run), so that a surprising worker count can be traced
// to the file that caused it without a shell in the container.
type Result struct {
	Max      int      // >= 1 always
	Affinity int      // CPUs in the affinity mask (A)
	Source   string   // one human line: where Max came from
	Warnings []string // each a one-line warning, to be logged by the caller
}

// Detect computes the usable CPU count from the files in fsys and the given
// affinity count. It is pure so that every host layout can be tested from
// fixture trees: it reads only "proc/self/cgroup", "proc/self/mountinfo" and
// the cgroup files under the mount points mountinfo names (absolute paths
// with the leading "/" removed).
func Detect(fsys fs.FS, affinity int, opt Options) Result {
	res := detect(fsys, affinity, opt)
	res.Source = echo.Line(res.Source)
	for i, w := range res.Warnings {
		res.Warnings[i] = echo.Line(w)
	}
	return res
}

func cpuCount(n int) string {
	if n == 1 {
		return "1 CPU"
	}
	return fmt.Sprintf("%d CPUs", n)
}

func detect(fsys fs.FS, affinity int, opt Options) Result {
	var warns []string
	if affinity < 1 {
		warns = append(warns, fmt.Sprintf("affinity mask reports %d CPUs; assuming 1", affinity))
		affinity = 1
	}
	res := Result{Affinity: affinity}

	// The override exists for pods with a CPU request but no limit, where
	// nothing in the container says how much CPU is intended. Reading the
	// cgroup anyway would only produce warnings about a number the user
	// already chose to ignore.
	if opt.Override > 0 {
		res.Max = opt.Override
		res.Source = fmt.Sprintf("GM2_CPUS/--cpus override → %d", opt.Override)
		res.Warnings = warns
		return res
	}

	rounding := opt.Rounding
	if rounding != Floor && rounding != Ceil {
		warns = append(warns, fmt.Sprintf("unknown CPU rounding %v; using floor", rounding))
		rounding = Floor
	}

	lim, ok, cgWarns := findQuota(fsys)
	warns = append(warns, cgWarns...)
	res.Warnings = warns

	if !ok {
		res.Max = affinity
		if len(cgWarns) > 0 {
			res.Source = fmt.Sprintf("affinity mask (%s), cgroup CPU limit unknown", cpuCount(affinity))
		} else {
			res.Source = fmt.Sprintf("affinity mask (%s), no cgroup CPU limit", cpuCount(affinity))
		}
		return res
	}

	whole := lim.frac.floor()
	if rounding == Ceil {
		whole = lim.frac.ceil()
	}
	// whole is a uint64 that can exceed any int; compare before converting.
	if whole >= uint64(affinity) {
		res.Max = affinity
		res.Source = fmt.Sprintf("affinity mask (%s), within %s", cpuCount(affinity), lim.describe())
		return res
	}
	res.Max = int(whole)
	note := ""
	switch {
	case whole == 0:
		res.Max = 1
		note = " (quota below one CPU)"
	case rounding == Ceil && lim.frac.q%lim.frac.p != 0:
		note = " (rounded up)"
	}
	res.Source = fmt.Sprintf("%s → %d%s", lim.describe(), res.Max, note)
	return res
}
