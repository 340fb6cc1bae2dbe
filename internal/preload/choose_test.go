package preload

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeNode writes an executable named node into a new directory: a shell
// script that refuses NODE_OPTIONS containing refuse (as a Node < 18.18
// refuses --import, with exit status 9), answers --version with version
// when that is not "", fails a -p run with loadErr when that is not "" (as
// an old Node whose parser refuses the preload), and runs the real node
// otherwise.
//
// Call it before t.Parallel: writing an executable while other tests fork
// can make its exec fail with ETXTBSY (golang/go#22315).
func fakeNode(t *testing.T, real, refuse, version, loadErr string) string {
	t.Helper()
	return fakeNodeScript(t, real, "", refuse, version, loadErr)
}

// fakeNodeScript is fakeNode with shell lines run first.
func fakeNodeScript(t *testing.T, real, first, refuse, version, loadErr string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "node")
	script := "#!/bin/sh\n" + first + "case \" $NODE_OPTIONS \" in *\"" + refuse + "\"*)\n" +
		"  echo \"node: " + refuse + " is not allowed in NODE_OPTIONS\" >&2; exit 9;;\nesac\n"
	if version != "" {
		script += "[ \"$1\" = --version ] && { echo " + version + "; exit 0; }\n"
	}
	if loadErr != "" {
		script += "[ \"$1\" = -p ] && { echo \"" + loadErr + "\" >&2; exit 1; }\n"
	}
	script += "exec " + real + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

const userOptions = "--max-old-space-size=100"

// unquotableDir returns a new directory whose path NODE_OPTIONS cannot carry
// (it holds a space): WriteFile takes a file there, RequireOption refuses it.
func unquotableDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "with space")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestChooseFile: a --require file in the first directory that takes it;
// the real node is only asked its version.
func TestChooseFile(t *testing.T) {
	real := nodePath(t)
	t.Parallel()
	ctx := ctxWithLimit(t)
	bad := unquotableDir(t)
	dir := t.TempDir()
	c := Choose(ctx, userOptions, []string{real, "app.js"}, []string{filepath.Join(dir, "missing"), bad, dir})
	defer c.Cleanup()
	if c.Mode != ModeRequire || c.Node != real || c.Reason != "" || !strings.HasPrefix(c.Version, "v") || !strings.HasPrefix(c.File, dir+"/") {
		t.Fatalf("real node: %+v", c)
	}
	if want := userOptions + " --require " + c.File; c.NodeOptions != want {
		t.Errorf("NodeOptions %q, want %q", c.NodeOptions, want)
	}
	if env := c.WorkerEnv(); len(env) != 2 || env[0] != "NODE_OPTIONS="+c.NodeOptions || env[1] != EnvFile+"="+c.File {
		t.Errorf("WorkerEnv %q", env)
	}
	if b, err := os.ReadFile(c.File); err != nil || string(b) != preloadSource {
		t.Errorf("require file: %v", err)
	}
	c.Cleanup()
	if _, err := os.Stat(filepath.Dir(c.File)); !os.IsNotExist(err) {
		t.Errorf("Cleanup left %s", filepath.Dir(c.File))
	}
	for _, d := range []string{dir, bad} {
		if left, _ := os.ReadDir(d); len(left) != 0 {
			t.Errorf("%s keeps %d entries after Cleanup", d, len(left))
		}
	}
}

// TestChooseImport: no directory takes the file (a read-only root with no
// tmpfs), so the data: URL, and the reason names why each directory failed.
func TestChooseImport(t *testing.T) {
	real := nodePath(t)
	t.Parallel()
	ctx := ctxWithLimit(t)
	bad := unquotableDir(t)
	missing := filepath.Join(t.TempDir(), "missing")
	c := Choose(ctx, userOptions, []string{real, "app.js"}, []string{missing, bad})
	defer c.Cleanup()
	if c.Mode != ModeImport || c.NodeOptions != NodeOptions(userOptions) || c.File != "" || !strings.HasPrefix(c.Version, "v") {
		t.Fatalf("no directory takes the file: %+v", c)
	}
	for _, want := range []string{"no --require file", missing, "cannot be written in NODE_OPTIONS"} {
		if !strings.Contains(c.Reason, want) {
			t.Errorf("reason %q does not say %q", c.Reason, want)
		}
	}
	// Each directory's error on one line of the log, joined by "; ", not
	// an escaped newline.
	if !strings.Contains(c.Reason, "; ") || strings.Contains(c.Reason, `\n`) {
		t.Errorf("reason %q: want the errors joined by \"; \"", c.Reason)
	}
	if left, _ := os.ReadDir(bad); len(left) != 0 {
		t.Errorf("%s keeps %d entries", bad, len(left))
	}
}

// TestChooseOldNode: a node older than the majors the tests run loads the
// file for real; if it cannot, and refuses --import as such a Node does,
// the preload is off with node's own messages.
func TestChooseOldNode(t *testing.T) {
	real := nodePath(t)
	old := fakeNode(t, real, "--import", "v16.20.2", "")
	loads := filepath.Join(t.TempDir(), "loads")
	broken := fakeNodeScript(t, real, "[ \"$1\" = -p ] && echo load >> "+loads+"\n", "--import", "v12.22.12", "SyntaxError: Unexpected token '?'")
	t.Parallel()
	ctx := ctxWithLimit(t)

	c := Choose(ctx, userOptions, []string{old}, []string{t.TempDir()})
	defer c.Cleanup()
	// The version comes from the load (-p process.version), which the fake
	// hands to the real node: proof that the file was loaded.
	if c.Mode != ModeRequire || c.Version == "v16.20.2" || !strings.HasPrefix(c.Version, "v") {
		t.Errorf("old node that loads the file: %+v", c)
	}

	dir := t.TempDir()
	c = Choose(ctx, userOptions, []string{broken}, []string{dir, t.TempDir()})
	// node refusing the file ends the search: another directory's copy
	// would be refused the same way.
	if b, _ := os.ReadFile(loads); string(b) != "load\n" {
		t.Errorf("the file was loaded %q times, want once", b)
	}
	if c.Mode != ModeOff || c.NodeOptions != "" {
		t.Fatalf("old node that cannot load the file: %+v", c)
	}
	for _, want := range []string{"SyntaxError: Unexpected token", "--import is not allowed"} {
		if !strings.Contains(c.Reason, want) {
			t.Errorf("reason %q does not carry node's %q", c.Reason, want)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the refused file was not removed: %d entries in %s", len(left), dir)
	}
}

// TestChooseRefused: a node that takes neither option; and no directory at
// all with a node that has no --import.
func TestChooseRefused(t *testing.T) {
	real := nodePath(t)
	none := fakeNode(t, real, "--", "", "")
	old := fakeNode(t, real, "--import", "", "")
	t.Parallel()
	ctx := ctxWithLimit(t)
	c := Choose(ctx, userOptions, []string{none}, []string{t.TempDir()})
	if c.Mode != ModeOff || c.NodeOptions != "" || !strings.Contains(c.Reason, "--import") || !strings.Contains(c.Reason, "is not allowed") {
		t.Errorf("node refusing both: %+v", c)
	}
	if c = Choose(ctx, userOptions, []string{old}, nil); c.Mode != ModeOff || !strings.Contains(c.Reason, "no directory") || !strings.Contains(c.Reason, "--import is not allowed") {
		t.Errorf("no directory, no --import: %+v", c)
	}
}

// TestChooseTimeout: a node too slow to answer its probe keeps the file,
// unprobed, whether the quick probe or the load of an old node times out.
func TestChooseTimeout(t *testing.T) {
	real := nodePath(t)
	slow := fakeNodeScript(t, real, "sleep 5 & wait\n", "--gm2-never", "", "")
	slowLoad := fakeNodeScript(t, real, "[ \"$1\" = -p ] && { sleep 5 & wait; }\n", "--gm2-never", "v16.20.2", "")
	t.Parallel()
	for name, node := range map[string]string{"probe": slow, "load": slowLoad} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		dir := t.TempDir()
		c := Choose(ctx, userOptions, []string{node}, []string{dir})
		cancel()
		if c.Mode != ModeRequire || !strings.HasPrefix(c.File, dir+"/") || !strings.Contains(c.Reason, "timed out") {
			t.Errorf("%s times out: %+v", name, c)
		}
		c.Cleanup()
	}
}

// TestChooseNodeGivesNoAnswer: a probe that could not run node (too many
// open files, a full pids cgroup: here a file the kernel cannot execute)
// or whose node was killed by a signal says nothing of the Node version:
// the preload stays on, unprobed, as after a timeout, and the reason says
// what happened rather than blame the version.
func TestChooseNodeGivesNoAnswer(t *testing.T) {
	real := nodePath(t)
	killed := fakeNodeScript(t, real, "kill -KILL $$\n", "--gm2-never", "", "")
	broken := filepath.Join(t.TempDir(), "node")
	if err := os.WriteFile(broken, []byte("\x7fELF not a program"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Parallel()
	for name, node := range map[string]string{"killed": killed, "cannot exec": broken} {
		dir := t.TempDir()
		c := Choose(ctxWithLimit(t), userOptions, []string{node}, []string{dir})
		if c.Mode != ModeRequire || !strings.HasPrefix(c.File, dir+"/") || !strings.Contains(c.Reason, "could not run") || strings.Contains(c.Reason, "18.18") {
			t.Errorf("%s, a directory: %+v", name, c)
		}
		c.Cleanup()
		if c = Choose(ctxWithLimit(t), userOptions, []string{node}, nil); c.Mode != ModeImport || !strings.Contains(c.Reason, "could not run") || strings.Contains(c.Reason, "18.18") {
			t.Errorf("%s, no directory: %+v", name, c)
		}
	}
}

// TestChooseWithoutNode: no node to probe; the data: URL is added, since
// NODE_OPTIONS means nothing to other programs, and no file is written. Not
// parallel: it sets PATH.
func TestChooseWithoutNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir()
	c := Choose(ctxWithLimit(t), "", []string{"python3", "app.py"}, []string{dir})
	if c.Mode != ModeImport || c.Node != "" || c.NodeOptions != ImportOption() || c.Reason == "" {
		t.Errorf("without node: %+v", c)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a file was written without node: %d entries in %s", len(left), dir)
	}
}

func TestMajorOf(t *testing.T) {
	for v, want := range map[string]int{"v20.20.2": 20, "v8.0.0": 8, "v22": 22, "": 0, "vx.1": 0, "v-3.1": 0, "18.1.0": 18} {
		if got := majorOf(v); got != want {
			t.Errorf("majorOf(%q) = %d, want %d", v, got, want)
		}
	}
}

// TestDefaultDirs: /dev/shm and /run first (never aged by tmp cleaners),
// then TMPDIR, then /tmp, each once. Not parallel: it sets TMPDIR.
func TestDefaultDirs(t *testing.T) {
	t.Setenv("TMPDIR", "/var/tmp")
	if got := strings.Join(DefaultDirs(), " "); got != "/dev/shm /run /var/tmp /tmp" {
		t.Errorf("DefaultDirs() = %q", got)
	}
	t.Setenv("TMPDIR", "/dev/shm")
	if got := strings.Join(DefaultDirs(), " "); got != "/dev/shm /run /tmp" {
		t.Errorf("DefaultDirs() with TMPDIR=/dev/shm = %q", got)
	}
}

// One choice per node serves apps with NODE_OPTIONS of their own: the
// preload is appended to each app's.
func TestChoiceFor(t *testing.T) {
	req := Choice{Mode: ModeRequire, File: "/x/p.cjs", option: "--require /x/p.cjs", NodeOptions: "--require /x/p.cjs"}
	got := req.For("--max-old-space-size=64")
	if got.NodeOptions != "--max-old-space-size=64 --require /x/p.cjs" || !slices.Contains(got.WorkerEnv(), "NODE_OPTIONS=--max-old-space-size=64 --require /x/p.cjs") {
		t.Errorf("require: %q, env %q", got.NodeOptions, got.WorkerEnv())
	}
	if req.NodeOptions != "--require /x/p.cjs" {
		t.Errorf("For changed the choice it was called on: %q", req.NodeOptions)
	}
	imp := Choice{Mode: ModeImport, NodeOptions: NodeOptions("")}.For("--a")
	if imp.NodeOptions != NodeOptions("--a") {
		t.Errorf("import: NodeOptions %.40q…, want the app's options with the data: URL", imp.NodeOptions)
	}
	if env := imp.WorkerEnv(); !slices.Equal(env, []string{EnvImport + "=1", "NODE_OPTIONS=--a"}) {
		t.Errorf("import: env %q", env)
	}
	if off := (Choice{Mode: ModeOff}).For("--a"); off.NodeOptions != "" || off.WorkerEnv() != nil {
		t.Errorf("off: %q %q", off.NodeOptions, off.WorkerEnv())
	}
}

// TestChooseLoadsBelowTestedMajor: only a node older than the oldest major
// the tests run (18) loads the file at start; 18 itself is only asked its
// version, which costs no node start.
func TestChooseLoadsBelowTestedMajor(t *testing.T) {
	real := nodePath(t)
	type fake struct {
		version string
		loads   string // what the load log holds after Choose
		node    string
		log     string
	}
	cases := []*fake{{version: "v18.0.0", loads: ""}, {version: "v17.9.1", loads: "load\n"}}
	for _, c := range cases {
		c.log = filepath.Join(t.TempDir(), "loads")
		c.node = fakeNodeScript(t, real, "[ \"$1\" = -p ] && echo load >> "+c.log+"\n", "--gm2-never", c.version, "")
	}
	t.Parallel()
	for _, c := range cases {
		ch := Choose(ctxWithLimit(t), "", []string{c.node}, []string{t.TempDir()})
		ch.Cleanup()
		b, _ := os.ReadFile(c.log)
		if ch.Mode != ModeRequire || string(b) != c.loads {
			t.Errorf("%s: mode %s, load log %q, want require and %q", c.version, ch.Mode, b, c.loads)
		}
	}
}

// TestChooseReasonKeepsNodeFirst: the reason is clipped, so node's own
// refusal comes before the directories' errors, however long they are.
func TestChooseReasonKeepsNodeFirst(t *testing.T) {
	real := nodePath(t)
	old := fakeNode(t, real, "--import", "", "")
	t.Parallel()
	var dirs []string
	for i := 0; i < 8; i++ {
		dirs = append(dirs, filepath.Join(t.TempDir(), strings.Repeat("missing", 12), strconv.Itoa(i)))
	}
	c := Choose(ctxWithLimit(t), "", []string{old}, dirs)
	if c.Mode != ModeOff || !strings.Contains(c.Reason, "--import is not allowed") {
		t.Errorf("reason %q lost node's refusal", c.Reason)
	}
}

// TestProbeUnexpectedOutput: a "node" whose --version is no version is no
// Node: the probe fails rather than report it.
func TestProbeUnexpectedOutput(t *testing.T) {
	real := nodePath(t)
	odd := fakeNode(t, real, "--gm2-never", "not-a-version", "")
	t.Parallel()
	if v, err := Probe(ctxWithLimit(t), odd, "--require /x.cjs"); err == nil || !strings.Contains(err.Error(), "unexpected output") {
		t.Errorf("Probe = %q, %v; want an unexpected output error", v, err)
	}
}

// TestLimitedBuffer: a probe keeps at most max bytes of node's output.
func TestLimitedBuffer(t *testing.T) {
	b := limitedBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if b.String() != "abcde" {
		t.Errorf("kept %q, want %q", b.String(), "abcde")
	}
}

// TestFindNode: command[0] when it is named node or nodejs (found even off
// PATH), else node on PATH, else nodejs on PATH (Debian's old name). Not
// parallel: it sets PATH.
func TestFindNode(t *testing.T) {
	exe := func(dir, name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	own, path := t.TempDir(), t.TempDir()
	ownNode, ownNodejs := exe(own, "node"), exe(own, "nodejs")
	pathNodejs := exe(path, "nodejs")
	t.Setenv("PATH", path)
	for _, c := range []struct {
		command []string
		want    string
	}{
		{[]string{ownNode, "app.js"}, ownNode},
		{[]string{ownNodejs, "app.js"}, ownNodejs},
		{[]string{"python3", "app.py"}, pathNodejs},
		{nil, pathNodejs},
	} {
		if got := FindNode(c.command); got != c.want {
			t.Errorf("FindNode(%q) = %q, want %q", c.command, got, c.want)
		}
	}
	pathNode := exe(path, "node")
	if got := FindNode([]string{"python3"}); got != pathNode {
		t.Errorf("FindNode with node and nodejs on PATH = %q, want %q", got, pathNode)
	}
}
