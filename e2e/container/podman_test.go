package container

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/logline"
)

// podmanGlobal are the flags every podman command gets: runc, because the
// default crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not
// supported"), which is what CI machines of this project are.
var podmanGlobal = []string{"--runtime", "runc"}

// runLimits are passed to every `podman run`: without them podman asks for
// rlimits above what an unprivileged CI sandbox allows, and runc fails with
// EPERM in setrlimit.
var runLimits = []string{"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"}

// podmanCmd returns `podman <global flags> args...`, ended by ctx.
func podmanCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, suite.podman, append(append([]string(nil), podmanGlobal...), args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// podmanOut runs one podman command with a deadline and returns its
// stdout; stderr goes into the error.
func podmanOut(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := podmanCmd(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// mustPodman is podmanOut that fails the test on error.
func mustPodman(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := podmanOut(timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunOpts describes one container.
type RunOpts struct {
	Image string
	// Flags are extra `podman run` flags (`--cpus 2`, `--init`,
	// `--read-only`, `--sdnotify=container` …), given before the image.
	Flags []string
	// Publish lists container TCP ports to publish on 127.0.0.1 at a port
	// the kernel picks; Container.Addr tells which.
	Publish []int
	// Args follow the image: the command, or the entrypoint's arguments.
	Args []string
	// Env is added to the environment of the podman process itself (not
	// the container's: use `-e` in Flags for that), e.g. NOTIFY_SOCKET for
	// `--sdnotify=container`.
	Env []string
}

// Container is a container started by Run: `podman run` attached, so that
// the container's stderr (gm2-init's JSON log) streams into the test as it
// happens and podman's own exit status is the container's.
type Container struct {
	t    *testing.T
	Name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	cond   *sync.Cond
	lines  []logLine
	raw    bytes.Buffer // stderr: gm2-init's log and podman's messages
	stdout bytes.Buffer
	exited bool
	code   int

	portMu sync.Mutex
	ports  map[int]string
}

var containerSeq atomic.Int64

// containerName makes a name unique to this run and test; cleanup removes
// containers by this exact name, never by a pattern.
func containerName(t *testing.T) string {
	clean := regexp.MustCompile(`[^a-zA-Z0-9_.-]+`).ReplaceAllString(t.Name(), "-")
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return fmt.Sprintf("%s-%s-%d", suite.prefix, strings.ToLower(clean), containerSeq.Add(1))
}

// Run starts a container and returns once podman has created it (its first
// output line or its exit, whichever comes first). The container is removed
// by name when the test ends.
func Run(t *testing.T, o RunOpts) *Container {
	t.Helper()
	c := &Container{t: t, Name: containerName(t), ports: map[int]string{}}
	c.cond = sync.NewCond(&c.mu)
	args := []string{"run", "--name", c.Name}
	args = append(args, runLimits...)
	for _, p := range o.Publish {
		args = append(args, "-p", fmt.Sprintf("127.0.0.1::%d", p))
	}
	args = append(args, o.Flags...)
	args = append(args, o.Image)
	args = append(args, o.Args...)
	// The attached podman lives at most as long as the test binary; the
	// cleanup below removes the container first, which ends it.
	c.cmd = podmanCmd(context.Background(), args...)
	c.cmd.Env = append(os.Environ(), o.Env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.cmd.Stdout = &lockedWriter{mu: &c.mu, w: &c.stdout}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("podman run: %v", err)
	}
	go c.read(stderr)
	t.Cleanup(func() {
		// By the exact name this test created; -t 0: the test is over.
		if out, err := podmanOut(time.Minute, "rm", "-f", "-t", "0", c.Name); err != nil {
			t.Errorf("cleanup of container %s: %v\n%s", c.Name, err, out)
		}
		c.waitExit(30 * time.Second)
		if t.Failed() {
			t.Logf("container %s, podman run %s\nlog:\n%s", c.Name, strings.Join(args, " "), c.Log())
		}
	})
	return c
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logLine is one JSON line of gm2-init's log.
type logLine = logline.Line

func (c *Container) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		c.mu.Lock()
		c.raw.Write(line)
		c.raw.WriteByte('\n')
		if l, ok := logline.Parse(line); ok {
			c.lines = append(c.lines, l)
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	c.cmd.Wait()
	c.mu.Lock()
	c.exited = true
	c.code = c.cmd.ProcessState.ExitCode()
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Log returns everything the container and podman wrote to stderr so far.
func (c *Container) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raw.String()
}

// Stdout returns what the container wrote to stdout so far.
func (c *Container) Stdout() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdout.String()
}

// waitCond blocks until cond holds (checked at every log line and at
// exit) or timeout passes; it reports whether cond held.
func (c *Container) waitCond(timeout time.Duration, cond func() bool) bool {
	timer := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		c.cond.Wait()
	}
	return true
}

// WaitLog waits for the first log line at index from or later with message
// msg that match accepts (nil: any), and returns it with the index after it.
// It fails the test when the container exits first or timeout passes.
func (c *Container) WaitLog(timeout time.Duration, from int, msg string, match func(logLine) bool) (logLine, int) {
	c.t.Helper()
	var found logLine
	next := from
	var exited bool
	ok := c.waitCond(timeout, func() bool {
		for ; next < len(c.lines); next++ {
			if l := c.lines[next]; l.Msg() == msg && (match == nil || match(l)) {
				found = l
				next++
				return true
			}
		}
		exited = c.exited
		return exited
	})
	if found == nil {
		why := fmt.Sprintf("timed out after %v", timeout)
		if ok && exited {
			why = fmt.Sprintf("the container exited (%d)", c.ExitCode())
		}
		c.t.Fatalf("%s: %s waiting for log %q; log:\n%s", c.Name, why, msg, c.Log())
	}
	return found, next
}

// WaitCount waits until at least n log lines with message msg were
// logged in total.
func (c *Container) WaitCount(timeout time.Duration, msg string, n int) {
	c.t.Helper()
	pos := 0
	for i := 0; i < n; i++ {
		_, pos = c.WaitLog(timeout, pos, msg, nil)
	}
}

// Lines returns a copy of gm2-init's log lines so far.
func (c *Container) Lines() []logLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]logLine(nil), c.lines...)
}

func (c *Container) waitExit(timeout time.Duration) bool {
	return c.waitCond(timeout, func() bool { return c.exited })
}

// Wait waits for `podman run` to end and returns its exit status, which is
// the container's.
func (c *Container) Wait(timeout time.Duration) int {
	c.t.Helper()
	if !c.waitExit(timeout) {
		c.t.Fatalf("%s: still running after %v; log:\n%s", c.Name, timeout, c.Log())
	}
	return c.ExitCode()
}

// ExitCode is podman run's exit status (-1 while it runs).
func (c *Container) ExitCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.exited {
		return -1
	}
	return c.code
}

// Addr returns the host address (127.0.0.1:port) the container port is
// published on. Call it once the container runs (after its first log
// line).
func (c *Container) Addr(port int) string {
	c.t.Helper()
	c.portMu.Lock()
	defer c.portMu.Unlock()
	if a, ok := c.ports[port]; ok {
		return a
	}
	out := strings.TrimSpace(mustPodman(c.t, 30*time.Second, "port", c.Name, fmt.Sprintf("%d/tcp", port)))
	if !strings.HasPrefix(out, "127.0.0.1:") {
		c.t.Fatalf("podman port %s %d: %q", c.Name, port, out)
	}
	c.ports[port] = out
	return out
}

// Kill sends sig with `podman kill -s`.
func (c *Container) Kill(sig string) {
	c.t.Helper()
	mustPodman(c.t, 30*time.Second, "kill", "-s", sig, c.Name)
}

// Stop runs `podman stop -t timeout` and returns how long podman took and
// the container's exit status.
func (c *Container) Stop(timeout int) (time.Duration, int) {
	c.t.Helper()
	start := time.Now()
	mustPodman(c.t, time.Duration(timeout)*time.Second+time.Minute, "stop", "-t", strconv.Itoa(timeout), c.Name)
	took := time.Since(start)
	return took, c.Wait(time.Minute)
}

// Healthcheck runs `podman healthcheck run` once: what it printed and its
// exit status (0 healthy, 1 unhealthy).
func (c *Container) Healthcheck() (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := podmanCmd(ctx, "healthcheck", "run", c.Name).CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("podman healthcheck run %s: %v", c.Name, err)
		}
		code = ee.ExitCode()
	}
	return strings.TrimSpace(string(out)), code
}

// Processes lists the container's processes as `podman top` shows them
// (pid, user, args), read from the host's /proc: the images have no ps.
func (c *Container) Processes() [][3]string {
	c.t.Helper()
	out := mustPodman(c.t, 30*time.Second, "top", c.Name, "pid", "user", "args")
	var ps [][3]string
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		ps = append(ps, [3]string{f[0], f[1], strings.Join(f[2:], " ")})
	}
	return ps
}

// RunToExit runs a container to its end: its stdout, its stderr (with
// podman's own messages) and its exit status. For short-lived containers:
// bad flags, --dry-run, a readiness handshake with the engine.
func RunToExit(t *testing.T, o RunOpts, timeout time.Duration) (stdout, stderr string, code int) {
	t.Helper()
	c := Run(t, o)
	code = c.Wait(timeout)
	return c.Stdout(), c.Log(), code
}
