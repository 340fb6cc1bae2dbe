package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// The harness fails a test when a worker that gm2-init stopped exits
// neither with 0 nor by the stop signal (see uncleanStops). This test
// proves the check sees such a worker — and that a clean stop passes it.
func TestHarnessCatchesAnUncleanStop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, exit string
		bad        bool
	}{
		{"exit 1 after the drain", "1", true},
		{"exit 143 after the drain (128+SIGTERM, a shell's way)", "143", false},
		{"exit 0 after the drain", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := startInit(t, []string{"TW_EXIT_ON_TERM=" + tc.exit}, baseArgs("-i", "1", "--wait-ready", "--", bins.worker)...)
			in.WaitReady(1, 10*time.Second)
			in.Signal(syscall.SIGTERM)
			in.Wait(15 * time.Second)
			bad := in.uncleanStops()
			if tc.bad {
				if len(bad) != 1 || !strings.Contains(bad[0], "exit status "+tc.exit) {
					t.Errorf("uncleanStops = %q, want the worker that exited %s", bad, tc.exit)
				}
				in.AllowUncleanStops()
			} else if len(bad) != 0 {
				t.Errorf("uncleanStops = %q, want none", bad)
			}
		})
	}
}
