package testtool

import (
	"strings"
	"testing"
)

// recorder stands in for a *testing.T: it records the skip or the failure
// instead of ending the goroutine.
type recorder struct {
	skipped, failed string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = sprint(args) }
func (r *recorder) Fatal(args ...any) { r.failed = sprint(args) }

func sprint(args []any) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(a.(string))
	}
	return b.String()
}

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{
		{"true", true}, {"1", true}, {"TRUE", true},
		{"", false}, {"false", false}, {"0", false}, {"yes", false},
	} {
		t.Setenv("CI", tc.value)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.value, got, tc.want)
		}
	}
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ci       string
		tool     string
		wantSkip bool
		wantFail bool
	}{
		{"present, CI", "true", "sh", false, false},
		{"present, not CI", "", "sh", false, false},
		{"missing, CI", "true", "gm2-no-such-tool", false, true},
		{"missing, not CI", "", "gm2-no-such-tool", true, false},
		{"missing, CI=false", "false", "gm2-no-such-tool", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			var r recorder
			p := Require(&r, tc.tool, "Debian package example")
			if (r.skipped != "") != tc.wantSkip || (r.failed != "") != tc.wantFail {
				t.Fatalf("skipped %q, failed %q; want skip %v, fail %v", r.skipped, r.failed, tc.wantSkip, tc.wantFail)
			}
			if !tc.wantSkip && !tc.wantFail && p == "" {
				t.Fatal("a present tool returned no path")
			}
			if msg := r.skipped + r.failed; msg != "" && !strings.Contains(msg, tc.tool) {
				t.Errorf("the reason %q does not name the tool", msg)
			}
			if r.failed != "" && !strings.Contains(r.failed, "Debian package example") {
				t.Errorf("the reason %q does not say how to get the tool", r.failed)
			}
		})
	}
}

func TestMissingAndRequireFile(t *testing.T) {
	t.Setenv("CI", "")
	var r recorder
	RequireFile(&r, t.TempDir(), "made by the test")
	if r.skipped != "" || r.failed != "" {
		t.Fatalf("an existing directory was reported missing: %+v", r)
	}
	RequireFile(&r, "/nonexistent/gm2-testtool", "run `npm ci`")
	if !strings.Contains(r.skipped, "/nonexistent/gm2-testtool") || !strings.Contains(r.skipped, "npm ci") {
		t.Fatalf("skip reason %q", r.skipped)
	}
	t.Setenv("CI", "true")
	r = recorder{}
	Missing(&r, "podman cannot start a container: %s", "boom")
	if r.skipped != "" || !strings.HasPrefix(r.failed, "podman cannot start a container: boom") {
		t.Fatalf("under CI: %+v", r)
	}
}
