package preload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNode writes an executable named node into a new directory: a shell
// script that refuses NODE_OPTIONS containing refuse (as a Node < 18.18
// refuses --import, with exit status 9) and runs the real node otherwise.
func fakeNode(t *testing.T, real, refuse string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "node")
	script := "#!/bin/sh\ncase \" $NODE_OPTIONS \" in *\"" + refuse + "\"*)\n" +
		"  echo \"node: " + refuse + " is not allowed in NODE_OPTIONS\" >&2; exit 9;;\nesac\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestChoose: the data: URL when node takes it, a --require file for a node
// without --import, off (with node's reason) when node takes neither.
func TestChoose(t *testing.T) {
	real := nodePath(t)
	t.Parallel()
	ctx := ctxWithLimit(t)
	const user = "--max-old-space-size=100"

	c := Choose(ctx, user, []string{real, "app.js"}, []string{t.TempDir()})
	defer c.Cleanup()
	if c.Mode != ModeImport || c.NodeOptions != NodeOptions(user) || c.File != "" || c.Reason != "" || !strings.HasPrefix(c.Version, "v") {
		t.Errorf("real node: %+v", c)
	}

	old := fakeNode(t, real, "--import")
	bad := filepath.Join(t.TempDir(), "with space")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c = Choose(ctx, user, []string{old, "app.js"}, []string{filepath.Join(dir, "missing"), bad, dir})
	if c.Mode != ModeRequire || c.Node != old || !strings.HasPrefix(c.File, dir+"/") {
		t.Fatalf("node without --import: %+v", c)
	}
	if want := user + " --require " + c.File; c.NodeOptions != want {
		t.Errorf("NodeOptions %q, want %q", c.NodeOptions, want)
	}
	if !strings.Contains(c.Reason, "--import is not allowed in NODE_OPTIONS") {
		t.Errorf("reason %q does not carry node's message", c.Reason)
	}
	if b, err := os.ReadFile(c.File); err != nil || string(b) != preloadSource {
		t.Errorf("require file: %v", err)
	}
	c.Cleanup()
	if _, err := os.Stat(filepath.Dir(c.File)); !os.IsNotExist(err) {
		t.Errorf("Cleanup left %s", filepath.Dir(c.File))
	}

	none := fakeNode(t, real, "--")
	c = Choose(ctx, user, []string{none}, []string{t.TempDir()})
	if c.Mode != ModeOff || c.NodeOptions != "" || !strings.Contains(c.Reason, "--import") || !strings.Contains(c.Reason, "is not allowed") {
		t.Errorf("node refusing both: %+v", c)
	}
	if c = Choose(ctx, user, []string{none}, nil); c.Mode != ModeOff || !strings.Contains(c.Reason, "no directory") {
		t.Errorf("no directory: %+v", c)
	}
}

// TestChooseWithoutNode: no node to probe; the data: URL is added, since
// NODE_OPTIONS means nothing to other programs. Not parallel: it sets PATH.
func TestChooseWithoutNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	c := Choose(ctxWithLimit(t), "", []string{"python3", "app.py"}, []string{t.TempDir()})
	if c.Mode != ModeImport || c.Node != "" || c.NodeOptions != ImportOption() || c.Reason == "" {
		t.Errorf("without node: %+v", c)
	}
}
