// The configuration end to end: what only the real binary shows (the
// environment a worker really gets, the messages of main's own checks,
// signals during start-up).

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A gm2-init started inside a worker of another reads none of what the
// outer one set for that worker as its own configuration: not its worker
// count (GM2_INSTANCES, which it once took as -i), and no warning about
// GM2_NODE_CLUSTER, GM2_NODE_RELAYED or GM2_PRELOAD_IMPORT as unknown
// variables.
func TestConfigNestedInit(t *testing.T) {
	t.Parallel()
	needNode(t) // the preload's variables are set when node is there
	dir := t.TempDir()
	inner := bins.init + " --dry-run -- true >" + dir + "/out.$GM2_INSTANCE 2>" + dir + "/err.$GM2_INSTANCE"
	in := startInit(t, nil, baseArgs("-i", "2", "--restart", "never", "--", "sh", "-c", inner)...)
	if code := in.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for _, slot := range []string{"0", "1"} {
		out, err := os.ReadFile(filepath.Join(dir, "out."+slot))
		if err != nil {
			t.Fatal(err)
		}
		var dry struct {
			Instances int `json:"instances"`
		}
		if err := json.Unmarshal(out, &dry); err != nil || dry.Instances != 1 {
			t.Errorf("slot %s: inner --dry-run has %d instances (%v), want 1: %.300s", slot, dry.Instances, err, out)
		}
		errs, err := os.ReadFile(filepath.Join(dir, "err."+slot))
		if err != nil {
			t.Fatal(err)
		}
		var warnings []string
		for _, line := range strings.Split(strings.TrimSpace(string(errs)), "\n") {
			var l logLine
			if json.Unmarshal([]byte(line), &l) != nil || l["level"] != "warn" {
				t.Errorf("slot %s: inner stderr line %q", slot, line)
				continue
			}
			warnings = append(warnings, l.msg())
		}
		want := `GM2_INSTANCES="2" ignored: an outer gm2-init set it for its workers (its worker count), it is not this gm2-init's -i; give -i/--instances`
		if len(warnings) != 1 || warnings[0] != want {
			t.Errorf("slot %s: inner warnings %q, want only %q", slot, warnings, want)
		}
	}
}
