// Package preload carries the small Node.js module that lets an unmodified
// Node app run as one of gm2-init's workers, and the Go helpers gm2-init
// needs around it.
//
// # Why
//
// gm2-init binds every --listen address once and passes the sockets to each
// worker by the systemd socket-activation protocol. A PM2 app does not look
// for inherited sockets: it calls server.listen(3000) and would get
// EADDRINUSE, since gm2-init holds the port. The preload, loaded into every
// Node process of a worker through NODE_OPTIONS, turns that listen() into a
// listen({fd: N}) on the inherited socket, and so makes
// `gm2-init -i max --listen :3000 -- node app.js` a drop-in replacement for
// `pm2-runtime start app.js -i max`.
//
// # Contract with gm2-init
//
// A worker receives, besides the standard LISTEN_FDS, LISTEN_FDNAMES and
// LISTEN_PID (fds from 3):
//
//   - GM2_LISTENERS (EnvListeners): comma-separated entries FD=PROTO:ADDR,
//     PROTO one of tcp, udp, unix, unixgram, ADDR as bound, for example
//     "3=tcp:0.0.0.0:3000,4=tcp:[::]:8443,5=udp:127.0.0.1:5353,6=unix:/run/app.sock".
//     An abstract unix address starts with '@'. ListenersEnv builds it; a
//     listener it cannot describe (a unix path containing ',', a unixpacket
//     socket) is left out, and Node never takes that fd over.
//
//   - GM2_PRELOAD_FD (EnvReportFD): the write end of a pipe, passed right
//     after the listeners. The preload writes one line per event with a
//     single write(2), each far below PIPE_BUF so lines from several
//     processes never interleave: "hello PID" when it becomes active in a
//     process, "listening FD PID" when a server or socket it redirected to
//     inherited fd FD is listening, "shared ID PID" when a server or socket
//     listens on the socket gm2-init shares on demand with registry id ID
//     (sockets.Shared.ID). ParseLine and Read decode them. gm2-init
//     must keep reading until the worker is gone: a full pipe drops lines
//     (the write end may be non-blocking) or, if blocking, stalls the app.
//
//   - NODE_CHANNEL_FD (with NODE_CHANNEL_SERIALIZATION_MODE=json) and
//     GM2_NODE_CLUSTER=ID, from nodeipc.Env: the worker's IPC channel to
//     gm2-init, its cluster primary (package nodeipc). When the channel
//     really is a socket, the preload makes the process a cluster worker
//     with id ID (what Node does for NODE_UNIQUE_ID, which gm2-init does not
//     set: see nodeipc), so that Node's cluster module asks gm2-init for
//     every port the app listens on. The preload keeps port 0, unix paths,
//     fds and handles private (exclusive), references the channel only
//     while a query waits (a one-shot script still ends), tags each query
//     {pid, ref} and reports "shared ID PID". In a process that has not
//     listened (npm, yarn, a launcher) it gives each child an IPC channel
//     of its own, GM2_NODE_CLUSTER and GM2_NODE_RELAYED=1, and relays the
//     child's queries up as NODE_GM2 messages and the sockets back down,
//     plus the child's process.send('ready').
//
// The preload is active only in a process whose environment has
// GM2_LISTENERS or GM2_NODE_CLUSTER, and only for entries it can prove: the process gm2-init
// started (LISTEN_PID equal to its pid) only needs a socket at that fd;
// any other process (a descendant started by a wrapper) needs the fd's inode
// listed in /proc/self/net as a socket of that kind, listening on that port,
// because GM2_LISTENERS is inherited also by processes that received none of
// the fds, where fd 3 is Node's own epoll fd or an IPC channel. LISTEN_PID is
// therefore not required to match. Without /proc a descendant stays inactive.
//
// # What the preload does
//
//   - net.Server.prototype.listen, which http, https, http2, tls and net
//     servers all use: a listen() in any form whose TCP port equals a
//     passed tcp listener's port, or whose path equals a passed unix path, is
//     redirected to {fd: N}. The port alone identifies the listener: an app
//     asking for 127.0.0.1:3000 gets gm2-init's :3000, because --listen, not
//     the app, decides the address (server.address() reports the real one).
//     Port 0, other ports, other paths, handles and fds are left to Node.
//     Each inherited fd serves one server per process: closing that server
//     closes the fd, so listening again on that port in the same process
//     fails with EADDRINUSE as it would without gm2-init's socket.
//   - dgram.Socket.prototype.bind: bind(port) and bind({port}) of a passed
//     udp listener's port, for a socket of the listener's address family.
//     Node has no unix datagram sockets: unixgram fds are never taken over,
//     so gm2-init's readiness must not wait for them.
//   - child processes: Node passes a child no fd above 2, so under
//     `npm start` the app would never see the sockets. A process that has
//     not taken over a listener itself (a wrapper: npm, yarn, a Node
//     launcher, a cluster primary) hands the inherited listener fds and the
//     report pipe to every child it spawns, at the same numbers, by
//     extending the child's stdio array (spawn, exec, execFile, fork,
//     spawnSync; execSync and execFileSync only when called with a stdio
//     option). A process that took over a listener (the app) hands nothing
//     on, so its own subprocesses do not keep listening sockets open.
//     Shell wrappers (`sh -c`, an entrypoint script that execs node) pass
//     fds on by themselves.
//   - signals: gm2-init stops workers with SIGTERM, apps written for PM2
//     handle SIGINT. While an app listens for SIGINT and not for SIGTERM, the
//     preload listens for SIGTERM and runs the app's SIGINT listeners
//     (once: a second SIGTERM is the same stop request forwarded by a
//     wrapper such as npm, and the kill timeout remains the backstop). An app
//     with its own SIGTERM listener keeps it, an app with neither dies by
//     SIGTERM as Node makes it. While it exists, that listener shows in
//     process.listeners('SIGTERM'): hiding it would mean patching
//     listenerCount, which Node's own signal code relies on.
//
// Nothing else changes: no output, no global, no handle that keeps a process
// alive (events are written with fs.writeSync), process.env and process.argv
// untouched. It runs in the main thread only.
//
// # Loading: a file with --require, or a data: URL with --import
//
// RequireOption loads the preload written by WriteFile into a new directory
// of gm2-init's own (/dev/shm, /run, TMPDIR, /tmp: /dev/shm is the tmpfs
// every container engine mounts, also with a read-only root), with
// --require, which every Node since 8 accepts. Node loads it as any
// preload, and the app's main file as without gm2-init. Choose probes the
// node that will run (Probe, `node --version` with the option; ProbeLoad
// for a Node older than the tested majors).
//
// When no directory takes the file, ImportOption loads the preload as a
// data: URL (NodeOptions appends it to the user's NODE_OPTIONS): no file
// anywhere. It needs a Node with --import (18.18+, 19+); an older Node
// refuses it in NODE_OPTIONS and exits at once (status 9), and the preload
// is then off: Choose says why, for the log. A worker must never be broken
// by the preload.
//
// The data: URL is the fallback for what it costs: every Node process that
// loads the preload with --import spends 30 to 37 ms more CPU at start than
// with --require (Node 18, 20, 22; BENCHMARKS.md, section 4b), and with any --import
// Node 20 loads a CommonJS main file through its ESM loader, so a main file
// whose extension only a --require hook understands (node -r
// ts-node/register app.ts) fails with ERR_UNKNOWN_FILE_EXTENSION.
package preload

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Environment variable names of the contract with the worker.
const (
	// EnvListeners describes the passed fds, see ListenersEnv.
	EnvListeners = "GM2_LISTENERS"
	// EnvReportFD names the fd of the event pipe's write end.
	EnvReportFD = "GM2_PRELOAD_FD"
	// EnvImport asks the worker's exec shim to append ImportOption to
	// NODE_OPTIONS (see Choice.WorkerEnv and ExpandImport).
	EnvImport = "GM2_PRELOAD_IMPORT"
)

// FileName is the name WriteFile gives the preload file.
const FileName = "preload.cjs"

// preloadSource is the preload as a CommonJS script.
//
//go:embed preload.cjs
var preloadSource string

// importHeader turns preloadSource into an ES module: it imports the
// builtins the script uses and provides a require for them.
//
//go:embed import-header.mjs
var importHeader string

// importPrefix is what Node's data: URL loader expects for an ES module.
const importPrefix = "--import=data:text/javascript;base64,"

// importTrailer names the data: module in stack traces. A module's name is
// its URL, so without it every frame of the preload's code (the wrapped
// listen() an app's EADDRINUSE goes through, for one) printed the whole
// data: URL, about 50 KB of base64: an app crashing on listen logged 100 KB
// per crash. V8 shows a sourceURL comment's name instead, on Node 18, 20
// and 22 alike.
const importTrailer = "\n//# sourceURL=gm2-init-preload.mjs\n"

// ImportOption returns the NODE_OPTIONS token that loads the preload as a
// data: URL, base64-encoded because NODE_OPTIONS is split at spaces. It
// needs Node ≥ 18.18; see the package doc for its cost on Node 20.
func ImportOption() string {
	return importPrefix + base64.StdEncoding.EncodeToString([]byte(importHeader+preloadSource+importTrailer))
}

// errRequirePath is wrapped by RequireOption's errors.
var errRequirePath = errors.New("path not usable in NODE_OPTIONS")

// RequireOption returns the NODE_OPTIONS tokens that load the preload file
// at path ("--require PATH", two tokens, as every Node since 8 parses them).
// NODE_OPTIONS is split at spaces and only newer Nodes understand quotes, so
// a path with whitespace, quotes or backslashes is refused.
func RequireOption(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("preload: require path %q is not absolute: %w", path, errRequirePath)
	}
	if strings.ContainsAny(path, " \t\n\r\v\f\"'\\\x00") {
		return "", fmt.Errorf("preload: require path %q cannot be written in NODE_OPTIONS: %w", path, errRequirePath)
	}
	return "--require " + path, nil
}

// AppendOption returns existing NODE_OPTIONS with opt appended, keeping
// whatever the user set. When existing already holds opt, as it does in a
// wrapper's child that inherited the extended NODE_OPTIONS, it is returned
// unchanged (trimmed): loading the preload twice would be harmless but
// wasteful.
func AppendOption(existing, opt string) string {
	existing = strings.TrimSpace(existing)
	opt = strings.TrimSpace(opt)
	switch {
	case opt == "":
		return existing
	case existing == "":
		return opt
	case strings.Contains(" "+existing+" ", " "+opt+" "):
		return existing
	}
	return existing + " " + opt
}

// removeOption returns existing without the token opt, AppendOption's
// inverse.
func removeOption(existing, opt string) string {
	return strings.TrimSpace(strings.ReplaceAll(" "+existing+" ", " "+strings.TrimSpace(opt)+" ", " "))
}

// envNodeOptions is the NODE_OPTIONS entry's prefix in an environment.
const envNodeOptions = "NODE_OPTIONS="

// NodeOptions returns existing NODE_OPTIONS extended with ImportOption, the
// variant that needs no file.
func NodeOptions(existing string) string {
	return AppendOption(existing, ImportOption())
}

// ExpandImport returns env for the app's execve: when env holds EnvImport,
// without it and with NODE_OPTIONS extended by ImportOption (NodeOptions);
// otherwise env itself.
func ExpandImport(env []string) []string {
	imported, existing := false, ""
	out := make([]string, 0, len(env))
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, EnvImport+"="):
			imported = true
		case strings.HasPrefix(kv, envNodeOptions):
			existing = kv[len(envNodeOptions):]
		default:
			out = append(out, kv)
		}
	}
	if !imported {
		return env
	}
	return append(out, envNodeOptions+NodeOptions(existing))
}

// WriteFile writes the preload into a new directory below dir and returns
// the file's path and a cleanup that removes the directory.
//
// The directory is 0755 and the file 0444, owned by gm2-init: nobody else
// can change them (a parent that every user may write to must be sticky,
// as /tmp and /dev/shm are: safeParent), and every uid can read them,
// because entrypoints often drop privileges before starting node (gosu,
// su-exec, setpriv); a node that cannot read its --require file refuses to
// start. The content is public anyway.
func WriteFile(dir string) (string, func(), error) {
	if err := safeParent(dir); err != nil {
		return "", nil, fmt.Errorf("preload: %w", err)
	}
	sub, err := os.MkdirTemp(dir, "gm2-init-preload-")
	if err != nil {
		return "", nil, fmt.Errorf("preload: create directory for the preload file: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(sub) }
	path := filepath.Join(sub, FileName)
	if err := writeReadOnly(path, preloadSource); err != nil {
		cleanup()
		return "", nil, err
	}
	if err := os.Chmod(sub, 0o755); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("preload: make %s readable: %w", sub, err)
	}
	return path, cleanup, nil
}

func writeReadOnly(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("preload: create %s: %w", path, err)
	}
	_, werr := f.WriteString(content)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("preload: write %s: %w", path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("preload: close %s: %w", path, cerr)
	}
	// The umask may have taken bits away.
	if err := os.Chmod(path, 0o444); err != nil {
		return fmt.Errorf("preload: chmod %s: %w", path, err)
	}
	return nil
}

// probeTimeout bounds Probe whatever the caller's context says; node starts
// in well under a second.
const probeTimeout = 10 * time.Second

// Probe runs `node --version` once with NODE_OPTIONS set to opt and returns
// the version node printed. An error means this node refuses opt (a Node
// older than 18.18 refuses --import, and exits 9 with its message for an
// option it does not allow in NODE_OPTIONS); it carries node's own message.
// gm2-init should then start workers without the preload rather than
// workers that cannot start.
//
// node parses NODE_OPTIONS before it prints its version, so this validates
// the option without starting V8: ~10 ms instead of a whole node start
// (~50 to 130 ms) that every container start would otherwise wait before
// its first worker. It does not load the preload: ProbeLoad does.
//
// Probe waits for its child with exec.Cmd.Wait: call it before gm2-init
// starts reaping with wait4(-1), which would take the child's status first.
func Probe(ctx context.Context, node, opt string) (string, error) {
	return probe(ctx, node, opt, "--version")
}

// ProbeLoad is Probe with the preload loaded for real (`node -p
// process.version`): for a Node older than the majors the tests run, whose
// parser might refuse the preload's syntax.
func ProbeLoad(ctx context.Context, node, opt string) (string, error) {
	return probe(ctx, node, opt, "-p", "process.version")
}

func probe(ctx context.Context, node, opt string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	// The probe must not see sockets, and its NODE_OPTIONS holds opt alone:
	// the user's own options (say --require ./tracing.js) may only resolve
	// in the app's directory.
	drop := []string{
		EnvListeners, EnvReportFD, "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID",
		"NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_OPTIONS",
	}
	cmd.Env = append(dropEnv(os.Environ(), drop), envNodeOptions+opt)
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = 4096, 4096
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		msg := nodeMessage(stderr.String())
		if ctx.Err() != nil {
			return "", fmt.Errorf("preload: probe %s: %w", node, ctx.Err())
		}
		if ee, ok := err.(*exec.ExitError); !ok || !ee.Exited() {
			return "", fmt.Errorf("preload: probe %s: %w (%w)", node, err, errNoAnswer)
		}
		return "", fmt.Errorf("preload: probe %s with NODE_OPTIONS=%.60s…: %w: %s", node, opt, err, msg)
	}
	v := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(v, "v") {
		return "", fmt.Errorf("preload: probe %s: unexpected output %q", node, firstLine(v))
	}
	return v, nil
}

// errNoAnswer is wrapped by a probe's error when node could not run (too
// many open files, a full pids cgroup) or was killed by a signal: that
// says nothing of what node takes, unlike an exit with its own message.
var errNoAnswer = errors.New("node gave no answer")

// testedMajor is the oldest Node major the preload's tests run: a newer
// node's parser takes the preload's syntax, an older one is checked by
// loading it (ProbeLoad).
const testedMajor = 18

// majorOf returns the major of a version node printed ("v20.20.2" → 20),
// 0 when it cannot tell.
func majorOf(v string) int {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexByte(v, '.'); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func dropEnv(env, names []string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// nodeMessage picks the line of node's stderr that says what went wrong:
// node's own complaint ("node: --x is not allowed in NODE_OPTIONS") or the
// error line of an exception ("Error: Cannot find module …"), which follows
// source locations and code excerpts.
func nodeMessage(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "node: ") || strings.Contains(l, "Error: ") || strings.Contains(l, "Error [") {
			return l
		}
	}
	return firstLine(stderr)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// limitedBuffer keeps the first max bytes written to it, so that a
// misbehaving node cannot make Probe hold unbounded output.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
