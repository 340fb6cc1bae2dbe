package container

import (
	"strings"
	"testing"
)

const memoryBudgetWarning = "the workers' --max-memory-restart limits add up to more than the container's memory limit: the kernel's OOM killer may act before gm2-init replaces a worker"

// TestMemoryLimitLogged: under `podman run --memory 256m`, gm2-init logs the
// container's memory limit at start next to the worker count, and warns
// when the workers' --max-memory-restart limits add up to more than it
// (2 × 200M > 256M): the kernel's OOM killer would act first. One worker
// under the same limit fits, and gets no warning.
func TestMemoryLimitLogged(t *testing.T) {
	t.Parallel()
	img := needImage(t, "go", buildGoImage)
	for _, tc := range []struct {
		name, instances, sum string
		warn                 bool
	}{
		{"2 workers of 200M in 256m", "2", "400M", true},
		{"1 worker of 200M in 256m", "1", "200M", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Run(t, RunOpts{Image: img, Flags: []string{"--memory", "256m"}, Publish: []int{8080, 9000},
				Args: goArgs("-i", tc.instances, "--max-memory-restart", "200M")})
			l, pos := c.WaitLog(stepTimeout, 0, "memory limit", nil)
			if l.Str("limit") != "256M" || l.Str("instances") != tc.instances || l.Str("workers_limit_sum") != tc.sum ||
				!strings.Contains(l.Str("source"), "memory.") {
				t.Fatalf("memory limit line %v: want limit 256M, instances %s, workers_limit_sum %s, and the cgroup file it came from",
					l, tc.instances, tc.sum)
			}
			t.Logf("podman run --memory 256m, -i %s --max-memory-restart 200M: %v", tc.instances, l)
			// Both lines come before the first worker starts.
			c.WaitLog(stepTimeout, pos, "worker started", nil)
			var warnings []logLine
			for _, l := range c.Lines() {
				if l.Msg() == memoryBudgetWarning {
					warnings = append(warnings, l)
				}
			}
			switch {
			case tc.warn && (len(warnings) != 1 || warnings[0].Str("workers_limit_sum") != tc.sum || warnings[0].Str("container_limit") != "256M" || warnings[0].Str("level") != "warn"):
				t.Errorf("warnings %v: want one, workers_limit_sum %s, container_limit 256M", warnings, tc.sum)
			case !tc.warn && len(warnings) != 0:
				t.Errorf("warnings %v: want none (%s fit in 256M)", warnings, tc.sum)
			}
			stopClean(t, c)
		})
	}
}
