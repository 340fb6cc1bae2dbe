package cgroup

import (
	"fmt"
	"strings"
)

// Ref is the line of /proc/self/cgroup that names a controller's cgroup.
type Ref struct {
	Controller string // "cpu", "memory"
	V2         bool   // from the "0::" line (unified hierarchy)
	Path       string // cgroup path as the kernel shows it, e.g. "/docker/abc"
}

// ParseProcCgroup picks the cgroup of controller ("cpu", "memory") out of
// /proc/self/cgroup.
//
// Each line is "hierarchy-ID:controller-list:path". On hybrid hosts both a v1
// hierarchy carrying the controller and the v2 "0::" line appear; a
// controller is attached to exactly one hierarchy, so when a v1 line lists
// it the v2 hierarchy cannot enforce its limit and the v1 line wins.
// The match is on the exact token: for "cpu", "cpuacct" and "cpuset" are other
// controllers and "name=systemd" is a named hierarchy with no controller.
//
// The path is everything after the second colon, since cgroup names may
// themselves contain colons. Malformed lines are skipped rather than fatal:
// a line for another controller must never stop the computation.
func ParseProcCgroup(data, controller string) (Ref, bool) {
	var v2 Ref
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
				v2, haveV2 = Ref{Controller: controller, V2: true, Path: p}, true
			}
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == controller {
				return Ref{Controller: controller, Path: p}, true
			}
		}
	}
	return v2, haveV2
}

func (r Ref) String() string {
	if r.V2 {
		return fmt.Sprintf("cgroup v2 %q", r.Path)
	}
	return fmt.Sprintf("cgroup v1 %s %q", r.Controller, r.Path)
}
