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
	// Reason says, for the log, why the data: URL is not used or why the
	// preload is off; "" when the data: URL was accepted.
	Reason string

	existing string // the user's NODE_OPTIONS, for WorkerEnv
	cleanup  func()
}

// WorkerEnv returns the environment entries that give a worker the
// preload, nil when it is off. For ModeImport they are the user's
// NODE_OPTIONS and EnvImport, which the worker's exec shim turns into
// NodeOptions with ExpandImport: the data: URL is 30 kB, and building each
// worker's environment in the supervisor would copy it on every fork, a
// cost that grows with the number of workers and with every reload. The
// shim runs in the worker's own process, whose memory the app replaces at
// exec.
func (c Choice) WorkerEnv() []string {
	switch {
	case c.NodeOptions == "":
		return nil
	case c.Mode == ModeImport:
		env := []string{EnvImport + "=1"}
		if c.existing != "" {
			env = append(env, "NODE_OPTIONS="+c.existing)
		}
		return env
	}
	return []string{"NODE_OPTIONS=" + c.NodeOptions}
}

// Cleanup removes the file of ModeRequire; it does nothing otherwise.
// Call it when gm2-init exits.
func (c Choice) Cleanup() {
	if c.cleanup != nil {
		c.cleanup()
	}
}

// DefaultDirs lists where Choose may write the --require file, in order:
// TMPDIR (or /tmp), then /dev/shm and /run, which are tmpfs mounts that
// Docker and Kubernetes keep writable with a read-only root filesystem.
func DefaultDirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range []string{os.TempDir(), "/dev/shm", "/run", "/tmp"} {
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
//  1. The data: URL (ImportOption), when the node that will run accepts it
//     in NODE_OPTIONS: Node 18.18+ and 19+. No file is written, so a
//     read-only root filesystem needs nothing else.
//  2. Otherwise (an older Node, which exits at once on --import) a file
//     written by WriteFile into the first of dirs that takes it, loaded with
//     --require, which every Node since 8 accepts.
//  3. Otherwise the preload is off, and Reason carries node's own message:
//     the workers must never be broken by the preload.
//
// The node probed is command[0] when it is named node or nodejs, else the
// node found on PATH. With no node at all the data: URL is chosen unprobed:
// a program that is not Node ignores NODE_OPTIONS.
//
// Choose waits for its probes with exec.Cmd.Wait: call it before gm2-init
// starts reaping with wait4(-1).
func Choose(ctx context.Context, existing string, command []string, dirs []string) Choice {
	node := findNode(command)
	if node == "" {
		return Choice{
			NodeOptions: NodeOptions(existing),
			Mode:        ModeImport,
			Reason:      "no node on PATH to probe; the data: URL is added unprobed",
			existing:    existing,
		}
	}
	v, err := Probe(ctx, node, ImportOption())
	if err == nil {
		return Choice{NodeOptions: NodeOptions(existing), Mode: ModeImport, Node: node, Version: v, existing: existing}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// A node too slow to answer (a throttled container) says nothing
		// about its version: keep the data: URL every supported Node takes,
		// rather than turn the preload off and break listen(PORT).
		return Choice{
			NodeOptions: NodeOptions(existing), Mode: ModeImport, Node: node,
			Reason:   "probe of " + node + " timed out; the data: URL is added unprobed",
			existing: existing,
		}
	}
	why := []error{fmt.Errorf("--import of a data: URL refused (Node < 18.18 has no --import): %w", err)}
	for _, dir := range dirs {
		path, cleanup, werr := WriteFile(dir)
		if werr != nil {
			why = append(why, werr)
			continue
		}
		opt, oerr := RequireOption(path)
		if oerr == nil {
			v, oerr = Probe(ctx, node, opt)
		}
		if oerr != nil {
			cleanup()
			why = append(why, oerr)
			// A path NODE_OPTIONS cannot carry: another directory may do.
			// node refusing the file itself: another one will not help.
			if errors.Is(oerr, errRequirePath) {
				continue
			}
			break
		}
		return Choice{
			NodeOptions: AppendOption(existing, opt),
			Mode:        ModeRequire,
			Node:        node,
			Version:     v,
			File:        path,
			Reason:      reasonLine(why[0].Error()),
			cleanup:     cleanup,
		}
	}
	if len(dirs) == 0 {
		why = append(why, errors.New("no directory to write the --require file into"))
	}
	return Choice{Mode: ModeOff, Node: node, Reason: reasonLine(errors.Join(why...).Error())}
}

// findNode returns the node that will run the workers, or "".
func findNode(command []string) string {
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
