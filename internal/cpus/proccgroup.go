package cpus

import (
	"fmt"
	"strings"
)

// cgroupRef is the line of /proc/self/cgroup that names the CPU cgroup.
type cgroupRef struct {
	v2   bool   // from the "0::" line (unified hierarchy)
	path string // cgroup path as the kernel shows it, e.g. "/docker/abc"
}

// parseProcCgroup picks the CPU controller's cgroup out of /proc/self/cgroup.
//
// Each line is "hierarchy-ID:controller-list:path". On hybrid hosts both a v1
// hierarchy carrying the cpu controller and the v2 "0::" line appear; a
// controller is attached to exactly one hierarchy, so when a v1 line lists
// `cpu` the v2 hierarchy cannot enforce a CPU quota and the v1 line wins.
// The match is on the exact token: "cpuacct" and "cpuset" are other
// controllers and "name=systemd" is a named hierarchy with no controller.
//
// The path is everything after the second colon, since cgroup names may
// themselves contain colons. Malformed lines are skipped rather than fatal:
// a line for another controller must never stop the computation.
func parseProcCgroup(data string) (cgroupRef, bool) {
	var v2 cgroupRef
	haveV2 := false
	for _, line := range strings.Split(data, "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok || p == "" {
			continue
		}
		if id == "0" && ctrls == "" {
			if !haveV2 {
				v2, haveV2 = cgroupRef{v2: true, path: p}, true
			}
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == "cpu" {
				return cgroupRef{path: p}, true
			}
		}
	}
	return v2, haveV2
}

func (r cgroupRef) String() string {
	if r.v2 {
		return fmt.Sprintf("cgroup v2 %q", r.path)
	}
	return fmt.Sprintf("cgroup v1 cpu %q", r.path)
}
