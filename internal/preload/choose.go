package preload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gm2-init/gm2-init/internal/echo"
)

// Ways of loading the preload, as Choice.Mode reports them.
const (
	ModeImport  = "import"  // --import of a data: URL: no file anywhere
	ModeRequire = "require" // --require of a file written by WriteFile
	ModeOff     = "off"     // the workers get no preload
)

// Choice says how the workers load the preload; Choose makes it once, at
// start, before any worker exists.
type Choice struct {
	// NodeOptions is NODE_OPTIONS for the workers: the user's value with
	// the preload appended, or "" when the preload is off.
	NodeOptions string
	// Mode is ModeImport, ModeRequire or ModeOff.
	Mode string
	// Node is the node that was probed, "" when none was found.
	Node string
	// Version is what that node printed for process.version.
	Version string
	// File is the --require file (ModeRequire only).
	File string
	// Reason says, for the log, why no --require file is used, why the
	// preload is off, or that node was too slow to be probed; "" when the
	// file was written and node accepted it.
	Reason string

	existing string // the user's NODE_OPTIONS, for WorkerEnv
	option   string // the --require option of File (ModeRequire)
	cleanup  func()
}

// For returns the choice for workers whose NODE_OPTIONS before the preload
// is existing: an app of a process file may set its own. What node was
// probed with does not depend on it (the probe runs with the preload's
// option alone), so one probe and one file serve every app of a node.
func (c Choice) For(existing string) Choice {
	switch c.Mode {
	case ModeRequire:
		c.NodeOptions = AppendOption(existing, c.option)
	case ModeImport:
		c.NodeOptions = NodeOptions(existing)
	}
	c.existing = existing
	return c
}

// WorkerEnv returns the environment entries that give a worker the
// preload, nil when it is off. For ModeImport they are the user's
// NODE_OPTIONS and EnvImport, which the worker's exec shim turns into
// NodeOptions with ExpandImport: the data: URL is 30 kB, and building each
// worker's environment in the supervisor would copy it on every fork, a
// cost that grows with the number of workers and with every reload. The
// shim runs in the worker's own process, whose memory the app replaces at
// exec. For ModeRequire they are NODE_OPTIONS and EnvFile, with which the
// shim writes the file again if it was removed (RestoreFile).
func (c Choice) WorkerEnv() []string {
	switch {
	case c.NodeOptions == "":
		return nil
	case c.Mode == ModeImport:
		env := []string{EnvImport + "=1"}
		if c.existing != "" {
			env = append(env, envNodeOptions+c.existing)
		}
		return env
	}
	if c.Mode == ModeRequire && c.File != "" {
		return []string{envNodeOptions + c.NodeOptions, EnvFile + "=" + c.File}
	}
	return []string{envNodeOptions + c.NodeOptions}
}

// Cleanup removes the file of ModeRequire; it does nothing otherwise.
// Call it when gm2-init exits.
func (c Choice) Cleanup() {
	if c.cleanup != nil {
		c.cleanup()
	}
}

// DefaultDirs lists where Choose may write the --require file, in order:
// /dev/shm and /run, then TMPDIR (or /tmp). /dev/shm is the tmpfs every
// container engine mounts, writable for every uid also with a read-only
// root filesystem. It comes before TMPDIR because a worker started after
// the file is gone cannot start at all, and /tmp is where age-based
// cleaners look (systemd-tmpfiles removes what nobody touched for 10 days,
// on a host where gm2-init runs as a service): /dev/shm and /run are not
// aged by default.
func DefaultDirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range []string{"/dev/shm", "/run", os.TempDir(), "/tmp"} {
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// Choose decides how the workers load the preload and returns NODE_OPTIONS
// for them, existing (the user's NODE_OPTIONS) with the preload appended.
//
//  1. A file written by WriteFile into the first of dirs that takes it,
//     loaded with --require, which every Node since 8 accepts: Node loads it
//     as it loads any preload, and the app's main file as it would without
//     gm2-init. Probed with `node --version` (Probe); a Node older than the
//     majors the tests run loads it for real (ProbeLoad).
//  2. Otherwise (no directory takes the file: a read-only root with no
//     tmpfs) the data: URL (ImportOption), when the node that will run
//     accepts it in NODE_OPTIONS: Node 18.18+ and 19+.
//  3. Otherwise the preload is off, and Reason carries node's own message:
//     the workers must never be broken by the preload.
//
// The file comes first because --import costs every Node process that loads
// it 30 to 37 ms more than --require of the same preload (Node 18, 20 and
// 22 alike, measured in BENCHMARKS.md, section 4b; Node 22 starts in about 50 ms),
// at every start, restart and reload; and because with any --import, Node 20
// loads a CommonJS main file through its ESM loader.
//
// The node probed is command[0] when it is named node or nodejs, else the
// node found on PATH. With no node at all the data: URL is chosen unprobed:
// a program that is not Node ignores NODE_OPTIONS, and nothing is written.
//
// Choose waits for its probes with exec.Cmd.Wait: call it before gm2-init
// starts reaping with wait4(-1).
func Choose(ctx context.Context, existing string, command []string, dirs []string) Choice {
	node := FindNode(command)
	if node == "" {
		return importChoice(existing, "", "", "no node on PATH to probe; the data: URL is added unprobed")
	}
	var why []error
	for _, dir := range dirs {
		c, err := chooseFile(ctx, node, existing, dir)
		if err == nil {
			return c
		}
		why = append(why, err)
		// A directory that takes no file, or a path NODE_OPTIONS cannot
		// carry: another directory may do. node refusing the file itself:
		// another one will not help.
		if !errors.Is(err, errRequirePath) && !errors.Is(err, errWrite) {
			break
		}
	}
	if len(dirs) == 0 {
		why = append(why, errors.New("no directory to write the preload file into"))
	}
	reason := "no --require file: " + reasonLine(errors.Join(why...).Error())
	v, err := Probe(ctx, node, ImportOption())
	if err == nil {
		return importChoice(existing, node, v, reason)
	}
	if why := noAnswer(err); why != "" {
		// A node too slow to answer (a throttled container), or that could
		// not run, says nothing about its version: keep the data: URL
		// every supported Node takes, rather than turn the preload off and
		// break listen(PORT).
		return importChoice(existing, node, "", reason+"; probe of "+node+" "+why+"; the data: URL is added unprobed")
	}
	// node's own refusal first: the directories' errors may be long, and
	// the reason is clipped.
	why = append([]error{fmt.Errorf("--import of a data: URL refused (Node < 18.18 has no --import): %w", err)}, why...)
	return Choice{Mode: ModeOff, Node: node, Reason: reasonLine(errors.Join(why...).Error())}
}

// errWrite is wrapped by chooseFile's errors when dir took no file.
var errWrite = errors.New("another directory may do")

// chooseFile writes the preload into dir and probes node with --require of
// it; the file is removed again on error.
func chooseFile(ctx context.Context, node, existing, dir string) (Choice, error) {
	path, cleanup, err := WriteFile(dir)
	if err != nil {
		return Choice{}, fmt.Errorf("%w (%w)", err, errWrite)
	}
	opt, err := RequireOption(path)
	if err != nil {
		cleanup()
		return Choice{}, err
	}
	reason := ""
	v, err := Probe(ctx, node, opt)
	if err == nil && majorOf(v) < testedMajor {
		v, err = ProbeLoad(ctx, node, opt)
	}
	if why := noAnswer(err); why != "" {
		// As for the data: URL: a node that gives no answer says nothing
		// about the file, and every Node since 8 takes --require.
		v, err, reason = "", nil, "probe of "+node+" "+why+"; the --require file is added unprobed"
	}
	if err != nil {
		cleanup()
		return Choice{}, err
	}
	return Choice{
		NodeOptions: AppendOption(existing, opt),
		Mode:        ModeRequire,
		Node:        node,
		Version:     v,
		File:        path,
		Reason:      reason,
		cleanup:     cleanup,
		existing:    existing,
		option:      opt,
	}, nil
}

// importChoice is the choice of the data: URL.
func importChoice(existing, node, version, reason string) Choice {
	return Choice{NodeOptions: NodeOptions(existing), Mode: ModeImport, Node: node, Version: version, Reason: reason, existing: existing}
}

// noAnswer says why a probe's error tells nothing about what node accepts
// ("timed out", or "could not run: …" with the cause), "" when it is
// node's own refusal.
func noAnswer(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return "timed out"
	case errors.Is(err, errNoAnswer):
		return "could not run (" + reasonLine(err.Error()) + ")"
	}
	return ""
}

// FindNode returns the node that will run the workers of command, the one
// Choose probes: command[0] when it is named node or nodejs, else the node
// on PATH; "" when there is none.
func FindNode(command []string) string {
	if len(command) > 0 {
		if b := filepath.Base(command[0]); b == "node" || b == "nodejs" {
			if p, err := exec.LookPath(command[0]); err == nil {
				return p
			}
		}
	}
	for _, name := range []string{"node", "nodejs"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// reasonLine keeps node's message, a log field, on one readable line: its
// lines joined by "; ", what is left escaped (echo.Line), 600 bytes at most.
func reasonLine(s string) string {
	s, cut := echo.Clip(echo.Line(strings.ReplaceAll(s, "\n", "; ")), 600)
	if cut {
		s += "…"
	}
	return s
}
