package preload

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRestoreFile: the exec shim's side of a --require file. Present: the
// environment only loses EnvFile. Removed with its directory: written again,
// the same content and modes. In a directory that is not gm2-init's own, or
// under a parent everyone may write to without the sticky bit: not written,
// and NODE_OPTIONS loses the --require, so that node still starts.
func TestRestoreFile(t *testing.T) {
	t.Parallel()
	const user = "--max-old-space-size=100"
	env := func(path string) []string {
		opt, err := RequireOption(path)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"A=1", "NODE_OPTIONS=" + user + " " + opt, EnvFile + "=" + path}
	}

	path, cleanup, err := WriteFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	want := env(path)[:2]
	if got := RestoreFile(env(path)); !slices.Equal(got, want) {
		t.Errorf("file present: %q, want %q", got, want)
	}

	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	if got := RestoreFile(env(path)); !slices.Equal(got, want) {
		t.Errorf("file removed: %q, want %q", got, want)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != preloadSource {
		t.Fatalf("not written again: %v", err)
	}
	for p, mode := range map[string]os.FileMode{path: 0o444, filepath.Dir(path): 0o755 | os.ModeDir} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v, %v; want mode %v", p, fi.Mode(), err, mode)
		}
	}

	// Someone else's directory at the predictable path: group and others
	// may write to it.
	foreign := filepath.Join(t.TempDir(), "gm2-init-preload-1", FileName)
	if err := os.Mkdir(filepath.Dir(foreign), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(foreign), 0o777); err != nil {
		t.Fatal(err)
	}
	// A parent that every user may write to, without the sticky bit.
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	unsafe := filepath.Join(open, "gm2-init-preload-2", FileName)
	for name, p := range map[string]string{"foreign directory": foreign, "non-sticky parent": unsafe} {
		got := RestoreFile(env(p))
		if !slices.Equal(got, []string{"A=1", "NODE_OPTIONS=" + user}) {
			t.Errorf("%s: %q, want the --require dropped", name, got)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s: %s was written", name, p)
		}
	}
	if _, _, err := WriteFile(open); err == nil || !strings.Contains(err.Error(), "not sticky") {
		t.Errorf("WriteFile under a non-sticky world-writable directory: %v", err)
	}

	if got := RestoreFile([]string{"A=1"}); !slices.Equal(got, []string{"A=1"}) {
		t.Errorf("without %s: %q", EnvFile, got)
	}
}
