package appspec

import (
	"fmt"
	"strings"
)

// Split resolves the worker count of every app against the usable CPUs of
// the container, which all apps of one gm2-init share (PM2 would give each
// app of a process file every CPU of the host: three `instances: "max"`
// apps on 8 CPUs are 24 processes there).
//
// The rule, in order:
//
//  1. A fork app runs 1 worker; an app with a fixed count (N) runs N.
//  2. The CPUs those leave (never below 0) are divided equally among the
//     apps with a relative count (max, 0, -N), the first apps of the list
//     getting one more when the division leaves a remainder; -N then takes
//     N off that app's share.
//  3. Every app runs at least 1 worker, even when no CPU is left (the
//     explanation then says the CPUs are oversubscribed).
//  4. The relative apps never make the total exceed MaxWorkers; fixed
//     counts above it are refused earlier (procfile).
//
// counts[i] is apps[i]'s count. explain is one line for the log, e.g.
// "8 usable CPUs: worker 1 (fork), api 7 (max: the 7 CPUs left)".
// oversubscribed tells whether the total exceeds cpus.
func Split(apps []App, cpus int) (counts []int, explain string, oversubscribed bool) {
	if cpus < 1 {
		cpus = 1
	}
	counts = make([]int, len(apps))
	why := make([]string, len(apps))
	fixed, relative := 0, 0
	for i, a := range apps {
		switch {
		case a.ExecMode == Fork:
			counts[i], why[i] = 1, "fork"
			fixed++
		case !a.Instances.Relative:
			counts[i], why[i] = max(1, a.Instances.N), "fixed"
			fixed += counts[i]
		default:
			relative++
		}
	}
	if relative > 0 {
		free := max(0, cpus-fixed)
		// The cap: relative apps together stay within MaxWorkers.
		free = min(free, max(0, MaxWorkers-fixed))
		share, extra := free/relative, free%relative
		k := 0
		for i, a := range apps {
			if a.ExecMode == Fork || !a.Instances.Relative {
				continue
			}
			s := share
			if k < extra {
				s++
			}
			k++
			counts[i] = max(1, s-a.Instances.N)
			left := "the " + plural(s, "CPU") + " left"
			switch {
			case s == 0:
				left = "no CPU left"
			case relative > 1:
				left = fmt.Sprintf("%d of the %s left", s, plural(free, "CPU"))
			}
			switch {
			case s-a.Instances.N < 1:
				why[i] = fmt.Sprintf("%s: %s, at least 1", a.Instances, left)
			case a.Instances.N > 0:
				why[i] = fmt.Sprintf("%s: %s, minus %d", a.Instances, left, a.Instances.N)
			default:
				why[i] = fmt.Sprintf("%s: %s", a.Instances, left)
			}
		}
	}
	total := 0
	parts := make([]string, len(apps))
	for i, a := range apps {
		total += counts[i]
		parts[i] = fmt.Sprintf("%s %d (%s)", a.Name, counts[i], why[i])
	}
	explain = plural(cpus, "usable CPU") + ": " + strings.Join(parts, ", ")
	if total > cpus {
		oversubscribed = true
		explain += fmt.Sprintf("; %d workers on %s: they compete for the same CPU quota", total, plural(cpus, "CPU"))
	}
	return counts, explain, oversubscribed
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
