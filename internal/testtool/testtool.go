// Package testtool decides what a test does when something it needs from
// the machine (a program, an engine, an installed dependency) is missing.
//
// On a developer's machine the test skips and says why. Under CI=true it
// fails instead: scripts/test.sh installs every tool the tests use, so a
// tool missing in CI is a broken install step, and a suite that quietly
// skipped would let CI go green without having tested anything.
//
// It also holds what the tests of several packages need from a socket
// (Recvmsg: a bounded wait that a signal does not cut short).
//
// Only tests import this package; it is compiled into no binary.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// TB is the part of testing.TB this package uses (testing.TB itself cannot
// be implemented outside the testing package, which the package's own
// tests need to do).
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// InCI reports whether the tests run in CI: the CI variable holds a true
// value (`true`, `1`, as strconv.ParseBool reads it).
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Missing ends the test because something it needs is not there: a
// failure under CI=true, a skip otherwise. The message is the reason, in
// both cases. Like t.Skip and t.Fatal, it does not return on a real
// *testing.T.
func Missing(t TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal(reason + " (CI=true: scripts/test.sh installs this, so its absence is a failure)")
		return
	}
	t.Skip(reason)
}

// Require returns the path of the program name on PATH, or ends the test
// through Missing. hint says what provides it (a Debian package, `npm
// ci`…), and may be empty.
func Require(t TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if hint != "" {
		Missing(t, "%s is not on PATH (%s): %v", name, hint, err)
	} else {
		Missing(t, "%s is not on PATH: %v", name, err)
	}
	return ""
}

// RequireFile ends the test through Missing when path does not exist; hint
// says how to get it.
func RequireFile(t TB, path, hint string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s is missing (%s): %v", path, hint, err)
	}
}
