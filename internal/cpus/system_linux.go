//go:build linux

package cpus

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// DetectSystem runs Detect on the live system: the root file system and the
// affinity mask of the calling thread. gm2-init calls it once at start-up,
// before it changes any thread's affinity, so the calling thread's mask is the
// process's mask.
func DetectSystem(opt Options) Result {
	affinity, warn := systemAffinity()
	res := Detect(os.DirFS("/"), affinity, opt)
	if warn != "" {
		res.Warnings = append([]string{warn}, res.Warnings...)
	}
	return res
}

// systemAffinity counts the CPUs in the affinity mask. If the call fails
// (seccomp profiles have been known to deny it) it falls back to
// runtime.NumCPU, which the Go runtime computed from the same mask at process
// start, and says so.
func systemAffinity() (int, string) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		n := runtime.NumCPU()
		return n, fmt.Sprintf("sched_getaffinity: %v; using the Go runtime's count (%d CPUs)", err, n)
	}
	return set.Count(), ""
}
