// Package e2e tests the real gm2-init binary as PID 1 of a new PID
// namespace, with real sockets, signals and child processes.
//
// Tests wait on gm2-init's own JSON log lines (worker started, worker ready,
// reload finished …) instead of sleeping: each log line is an event, and
// every wait has a deadline.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/logline"
	"github.com/gm2-init/gm2-init/internal/procfs"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// Binaries built once by TestMain, in dir (removed when the tests end;
// binaries built later by a test go there too).
var bins struct {
	dir, init, worker, goapp string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gm2-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.init = filepath.Join(dir, "gm2-init")
	bins.worker = filepath.Join(dir, "testworker")
	bins.goapp = filepath.Join(dir, "goapp")
	// Others than root may run the binaries (a worker that drops its
	// privileges with setpriv).
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	for _, b := range []struct{ out, pkg string }{{bins.init, ".."}, {bins.worker, "./testworker"}, {bins.goapp, "../examples/goapp"}} {
		args := []string{"build", "-o", b.out}
		if b.out == bins.init {
			// The hooks the tests use (a frozen supervisor loop); inert
			// unless a test asks (testhooks_on.go).
			args = append(args, "-tags", "gm2testhooks")
		}
		env := append(os.Environ(), "CGO_ENABLED=0")
		if raceEnabled && b.out == bins.init {
			args = append(args, "-race")
			env = append(os.Environ(), "CGO_ENABLED=1")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// namespaceCmd returns the command prefix that runs a program as PID 1 of a
// new PID namespace with its own /proc: directly as root, through a user
// namespace otherwise.
func namespaceCmd(t *testing.T) []string {
	t.Helper()
	testtool.Require(t, "unshare", "Debian package util-linux")
	if os.Geteuid() == 0 {
		return []string{"unshare", "--pid", "--fork", "--kill-child", "--mount-proc"}
	}
	return []string{"unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount-proc"}
}

// logLine is one JSON line of gm2-init's log.
type logLine = logline.Line

// timeOf is the time gm2-init wrote on l: to the millisecond, cut down.
func timeOf(t *testing.T, l logLine) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, l.Str("time"))
	if err != nil {
		t.Fatalf("time of %v: %v", l, err)
	}
	return ts
}

// pidGap is how long after a log line about worker pid a later one came.
type pidGap struct {
	pid int
	gap time.Duration
}

// gapsAfter returns, for each log line with message second that keep
// accepts (nil: every one), the time since the last line with message
// first about the same worker. A second line with no first line before it
// fails the test.
func gapsAfter(t *testing.T, in *Init, first, second string, keep func(logLine) bool) []pidGap {
	t.Helper()
	at := map[int]time.Time{}
	var gaps []pidGap
	for _, l := range in.Lines() {
		pid := l.Int("pid")
		switch {
		case l.Msg() == first:
			at[pid] = timeOf(t, l)
		case l.Msg() == second && (keep == nil || keep(l)):
			from, ok := at[pid]
			if !ok {
				t.Errorf("%q about worker %d with no %q before it", second, pid, first)
				continue
			}
			gaps = append(gaps, pidGap{pid, timeOf(t, l).Sub(from)})
		}
	}
	return gaps
}

// onTime tells whether a timer of d that gm2-init set when it logged one
// line fired gap later, when it logged the next: not before (1 ms for the
// times' cut), and not much later: under 6 × d (a timer late by a second
// on a loaded machine under -race is on time; one that waited 10 × d is
// not).
func onTime(gap, d time.Duration) bool { return gap >= d-time.Millisecond && gap <= 6*d }

// Init is a running gm2-init.
type Init struct {
	t      *testing.T
	cmd    *exec.Cmd
	Pid    int // host pid of gm2-init (PID 1 inside its namespace)
	mu     sync.Mutex
	cond   *sync.Cond
	lines  []logLine
	raw    bytes.Buffer
	exited bool
	code   int
	stdout bytes.Buffer
	// uncleanStopsOK turns off the check that every worker gm2-init
	// stopped exited cleanly (see AllowUncleanStops).
	uncleanStopsOK bool
	// ReadLog starts reading gm2-init's stderr, for a gm2-init started
	// by startInitStalledLog; a no-op otherwise.
	ReadLog func()
}

// startInit runs gm2-init with args in a new PID namespace. Extra
// environment variables are added to the test's environment.
func startInit(t *testing.T, env []string, args ...string) *Init {
	t.Helper()
	return startInitWith(t, bins.init, "", env, nil, args...)
}

// startInitBin is startInit with another gm2-init binary.
func startInitBin(t *testing.T, bin string, env []string, args ...string) *Init {
	t.Helper()
	return startInitWith(t, bin, "", env, nil, args...)
}

// startInitIn is startInit in the working directory dir ("" for the
// test's own), which the workers inherit.
func startInitIn(t *testing.T, dir string, env []string, args ...string) *Init {
	t.Helper()
	return startInitWith(t, bins.init, dir, env, nil, args...)
}

// startInitVia is startInit with gm2-init started through a wrapper
// command (argv before gm2-init's path) that execs it: a shell that opens
// descriptors, systemd-socket-activate.
func startInitVia(t *testing.T, env, wrapper []string, args ...string) *Init {
	t.Helper()
	return startInitWith(t, bins.init, "", env, wrapper, args...)
}

func startInitWith(t *testing.T, bin, dir string, env, wrapper []string, args ...string) *Init {
	t.Helper()
	return startInitNS(t, namespaceCmd(t), bin, dir, env, wrapper, args...)
}

// startInitNS is startInitWith with another command prefix than
// namespaceCmd's (more namespaces: see startInitNetns). With bin "", the
// wrapper itself ends by exec'ing gm2-init.
func startInitNS(t *testing.T, ns []string, bin, dir string, env, wrapper []string, args ...string) *Init {
	t.Helper()
	return startInitFull(t, ns, bin, dir, env, wrapper, startHow{}, args...)
}

// startInitStalledLog is startInit with gm2-init's stderr (its log, which
// its workers share) a pipe of one page, full before gm2-init starts, that
// nobody reads until the test calls in.ReadLog: a log reader that stopped
// reading. Until then the harness sees no log line and no exit; then the
// page of filler comes first (one line, not JSON).
func startInitStalledLog(t *testing.T, env []string, args ...string) *Init {
	t.Helper()
	return startInitFull(t, namespaceCmd(t), bins.init, "", env, nil, startHow{stalledLog: true}, args...)
}

// startInitOnTerminal is startInit with tty, the terminal end of a
// pseudo-terminal (openPty), as gm2-init's stdin and as the controlling
// terminal of the session gm2-init leads (`setsid -c` inside the PID
// namespace, which then execs gm2-init): `docker run -it`, where PID 1
// leads the session and the terminal's foreground process group is
// gm2-init's own until gm2-init hands it to a worker.
func startInitOnTerminal(t *testing.T, tty *os.File, env []string, args ...string) *Init {
	t.Helper()
	testtool.Require(t, "setsid", "Debian package util-linux")
	return startInitFull(t, namespaceCmd(t), bins.init, "", env, []string{"setsid", "-c"}, startHow{tty: tty}, args...)
}

// openPty opens a pseudo-terminal: master is the end a terminal emulator
// (docker's client) holds, tty the terminal a program is given. Both are
// closed when the test ends, after the gm2-init of a startInitOnTerminal
// called later is gone: a terminal hung up under gm2-init is a SIGHUP.
func openPty(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// foregroundGroup returns the terminal's foreground process group
// (tcgetpgrp, asked through master: the test is in none of its sessions),
// as a host pid.
func foregroundGroup(t *testing.T, master *os.File) int {
	t.Helper()
	pgid, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPGRP)
	if err != nil {
		t.Fatalf("tcgetpgrp: %v", err)
	}
	return pgid
}

// groupOf returns the process group of the host pid pid.
func groupOf(t *testing.T, pid int) int {
	t.Helper()
	pgid, err := unix.Getpgid(pid)
	if err != nil {
		t.Fatalf("getpgid(%d): %v", pid, err)
	}
	return pgid
}

// startHow is how startInitFull starts gm2-init, beyond its command.
type startHow struct {
	stalledLog bool     // see startInitStalledLog
	tty        *os.File // see startInitOnTerminal
}

func startInitFull(t *testing.T, ns []string, bin, dir string, env, wrapper []string, how startHow, args ...string) *Init {
	t.Helper()
	argv := append(slices.Clone(ns), wrapper...)
	if bin != "" {
		argv = append(argv, bin)
	}
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if how.tty != nil {
		cmd.Stdin = how.tty
		// A session of its own, without a terminal: the one inside the
		// namespace takes tty as its own (startInitOnTerminal).
		cmd.SysProcAttr.Setsid = true
	}
	in := &Init{t: t, cmd: cmd}
	in.cond = sync.NewCond(&in.mu)
	cmd.Stdout = &in.stdout
	in.ReadLog = func() {}
	var stderr io.Reader
	if how.stalledLog {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, os.Getpagesize()); err != nil {
			t.Fatalf("F_SETPIPE_SZ: %v", err)
		}
		if _, err := w.WriteString(strings.Repeat("x", os.Getpagesize()-1) + "\n"); err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = w
		defer w.Close()
		t.Cleanup(func() { r.Close() }) // after the cleanup below, which waits for the log's end
		gate := make(chan struct{})
		in.ReadLog = sync.OnceFunc(func() { close(gate) })
		stderr = gateReader{gate, r}
	} else {
		p, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr = p
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go in.readLog(stderr)
	t.Cleanup(func() {
		in.ReadLog()
		if !in.hasExited() {
			// A gm2-init killed cannot remove its sockets' directories.
			socketDirs := in.socketDirs()
			// SIGKILL to PID 1 of the namespace ends every process in it;
			// unshare then exits.
			if in.Pid > 0 {
				syscall.Kill(in.Pid, syscall.SIGKILL)
			}
			cmd.Process.Kill()
			in.Wait(10 * time.Second)
			for _, d := range socketDirs {
				os.RemoveAll(d)
			}
		}
		in.removePreloadDirs()
		if strings.Contains(in.rawLog(), "WARNING: DATA RACE") {
			t.Error("the race detector found a data race in gm2-init")
		}
		if bad := in.uncleanStops(); len(bad) > 0 {
			t.Errorf("a worker that gm2-init stopped did not exit cleanly (0, or by the stop signal): %s; "+
				"a test that expects it calls AllowUncleanStops", strings.Join(bad, "; "))
		}
		if t.Failed() {
			in.mu.Lock()
			t.Logf("gm2-init log:\n%s", in.raw.String())
			in.mu.Unlock()
		}
	})
	// gm2-init is the only child of unshare.
	deadline := time.Now().Add(10 * time.Second)
	for in.Pid == 0 {
		if c := childrenOf(cmd.Process.Pid); len(c) > 0 {
			in.Pid = c[0]
			break
		}
		if in.hasExited() {
			break // it already ran to its end; Wait tells how
		}
		if time.Now().After(deadline) {
			t.Fatalf("gm2-init did not start; log:\n%s", in.rawLog())
		}
		time.Sleep(time.Millisecond)
	}
	return in
}

// gateReader reads r once gate is closed.
type gateReader struct {
	gate <-chan struct{}
	r    *os.File
}

func (g gateReader) Read(p []byte) (int, error) {
	<-g.gate
	return g.r.Read(p)
}

func (in *Init) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		in.mu.Lock()
		in.raw.Write(line)
		in.raw.WriteByte('\n')
		if l, ok := logline.Parse(line); ok {
			in.lines = append(in.lines, l)
		}
		in.cond.Broadcast()
		in.mu.Unlock()
	}
	err := in.cmd.Wait()
	in.mu.Lock()
	in.exited = true
	in.code = in.cmd.ProcessState.ExitCode()
	if ws, ok := in.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		in.code = 128 + int(ws.Signal())
	}
	_ = err
	in.cond.Broadcast()
	in.mu.Unlock()
}

// AllowUncleanStops is for the tests whose workers are meant to fail their
// stop (ignore the stop signal, exit non-zero while draining): it turns off
// the check that every stopped worker exited cleanly.
func (in *Init) AllowUncleanStops() {
	in.mu.Lock()
	in.uncleanStopsOK = true
	in.mu.Unlock()
}

// uncleanStops lists the workers that gm2-init stopped ("stopping worker",
// with the signal it sent) and that then exited neither with status 0 nor
// by that signal (status 128+N, or "killed by" it): a draining worker that
// fails its graceful stop, as examples/goapp/drain once did with exit 1 in
// a third of the stops. Workers that crashed on their own are not counted:
// other tests are about those.
func (in *Init) uncleanStops() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.uncleanStopsOK {
		return nil
	}
	stopSig := map[int]unix.Signal{}
	var bad []string
	for _, l := range in.lines {
		switch l.Msg() {
		case "stopping worker":
			stopSig[l.Int("pid")] = unix.SignalNum(l.Str("signal"))
		case "worker exited":
			pid := l.Int("pid")
			sig, stopped := stopSig[pid]
			if !stopped {
				continue
			}
			delete(stopSig, pid)
			if code := l.Int("code"); code != 0 && (sig == 0 || code != 128+int(sig)) {
				bad = append(bad, fmt.Sprintf("slot %s pid %d stopped with %s: %s", l.Str("slot"), pid, unix.SignalName(sig), l.Str("status")))
			}
		}
	}
	return bad
}

func (in *Init) hasExited() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exited
}

func (in *Init) rawLog() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.raw.String()
}

// waitFor blocks until cond holds (checked under the lock at every log line
// and at exit) or the timeout passes.
func (in *Init) waitFor(timeout time.Duration, what string, cond func() bool) {
	in.t.Helper()
	timer := time.AfterFunc(timeout, func() {
		in.mu.Lock()
		in.cond.Broadcast()
		in.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	in.mu.Lock()
	defer in.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			in.t.Fatalf("timed out after %v waiting for %s; log:\n%s", timeout, what, in.raw.String())
		}
		in.cond.Wait()
	}
}

// WaitLog waits for the n-th log line (counting from index from) that
// matches, and returns it with the index after it.
// anyMessage as WaitLog's msg matches every line (match decides).
const anyMessage = "\x00any"

func (in *Init) WaitLog(timeout time.Duration, from int, msg string, match func(logLine) bool) (logLine, int) {
	in.t.Helper()
	var found logLine
	next := from
	in.waitFor(timeout, fmt.Sprintf("log %q", msg), func() bool {
		for ; next < len(in.lines); next++ {
			l := in.lines[next]
			if (msg == anyMessage || l.Msg() == msg) && (match == nil || match(l)) {
				found = l
				next++
				return true
			}
		}
		if in.exited {
			in.t.Fatalf("gm2-init exited (%d) before log %q; log:\n%s", in.code, msg, in.raw.String())
		}
		return false
	})
	return found, next
}

// CountLog counts the lines with msg so far.
func (in *Init) CountLog(msg string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, l := range in.lines {
		if l.Msg() == msg {
			n++
		}
	}
	return n
}

// Lines returns a copy of the log lines so far.
func (in *Init) Lines() []logLine {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]logLine(nil), in.lines...)
}

// Wait waits for gm2-init to exit and returns its exit status.
func (in *Init) Wait(timeout time.Duration) int {
	in.t.Helper()
	in.waitFor(timeout, "gm2-init to exit", func() bool { return in.exited })
	return in.code
}

// Signal sends sig to gm2-init.
func (in *Init) Signal(sig syscall.Signal) {
	in.t.Helper()
	if in.Pid <= 0 {
		in.t.Fatalf("gm2-init exited before it could be signalled; log:\n%s", in.rawLog())
	}
	if err := syscall.Kill(in.Pid, sig); err != nil {
		in.t.Fatalf("kill %d %v: %v", in.Pid, sig, err)
	}
}

// Addr waits for the "listening" line of the named listener (or the first
// one when name is "") and returns its address.
func (in *Init) Addr(name string) string {
	l, _ := in.WaitLog(10*time.Second, 0, "listening", func(l logLine) bool { return name == "" || l.Str("name") == name })
	return l.Str("address")
}

// HealthAddr waits for the health endpoint line and returns its address.
func (in *Init) HealthAddr() string {
	l, _ := in.WaitLog(10*time.Second, 0, "health endpoints", nil)
	return l.Str("address")
}

// WaitReady waits until n "worker ready" lines have been logged in total.
func (in *Init) WaitReady(n int, timeout time.Duration) {
	in.t.Helper()
	in.waitFor(timeout, fmt.Sprintf("%d ready workers", n), func() bool {
		c := 0
		for _, l := range in.lines {
			if l.Msg() == "worker ready" {
				c++
			}
		}
		if in.exited {
			in.t.Fatalf("gm2-init exited (%d) early; log:\n%s", in.code, in.raw.String())
		}
		return c >= n
	})
}

// Children lists the host pids of gm2-init's children.
func (in *Init) Children() []int { return childrenOf(in.Pid) }

// childrenOf scans /proc for the children of pid (not every kernel has
// /proc/PID/task/TID/children).
func childrenOf(pid int) []int {
	return procfs.Children("/proc", pid)
}

// FDs counts gm2-init's open descriptors.
func (in *Init) FDs() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", in.Pid))
	if err != nil {
		in.t.Fatal(err)
	}
	return len(ents)
}

// workerInfo is what testworker answers.
type workerInfo struct {
	Pid       string `json:"pid"`
	ListenPid string `json:"listen_pid"`
	ListenFDs string `json:"listen_fds"`
	FDNames   string `json:"fdnames"`
	Instance  string `json:"instance"`
	Instances string `json:"instances"`
	NodeApp   string `json:"node_app"`
}

// client makes one request per connection, so that the kernel spreads them
// over the workers, with a bounded timeout.
var noKeepAlive = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getInfo(t *testing.T, addr string) workerInfo {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var wi workerInfo
	if err := json.NewDecoder(resp.Body).Decode(&wi); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return wi
}

func httpGet(addr, path string) (int, string, error) {
	return responseOf(noKeepAlive.Get("http://" + addr + path))
}

// responseOf returns the status and the whole body of the response of a
// request that ended with err, and closes the body.
func responseOf(resp *http.Response, err error) (int, string, error) {
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// procState returns the state letter of a host pid ("" if gone).
// exitedWithin waits at most d for pid, any process of this PID namespace,
// to exit, on a pidfd that becomes readable when it does (a zombie has
// exited; a pid already gone counts too), and tells whether it did.
func exitedWithin(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for deadline := time.Now().Add(d); ; {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err != unix.EINTR {
			return err == nil && n > 0
		}
	}
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// runRejected runs gm2-init with input it must refuse, bounded to 20 s (a
// run past that means the input was accepted), with neither instance
// variable inherited from the test's own environment. It returns the exit
// status, stdout and stderr.
func runRejected(t *testing.T, args, env []string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.init, args...)
	cmd.Env = append(os.Environ(), "NODE_APP_INSTANCE=", "GM2_INSTANCE=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("still running after 20 s: the bad input was accepted; stderr: %.300s", errb.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return code, out.String(), errb.String()
}

// socketDirs returns the directories of the unix sockets gm2-init bound
// in directories of its own, which a gm2-init killed cannot remove: its
// notify socket (DIR/notify.sock, DIR named gm2-init-N) and its control
// socket (DIR/control.sock, DIR named gm2-init-ctl.INODE). They are found
// from gm2-init's own descriptors and the paths /proc/PID/net/unix gives
// their inodes, whatever its workers are doing.
func (in *Init) socketDirs() []string {
	if in.Pid <= 0 {
		return nil
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", in.Pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil
	}
	held := map[string]bool{}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil {
			if ino, ok := strings.CutPrefix(target, "socket:["); ok {
				held[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", in.Pid))
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !held[f[6]] {
			continue
		}
		dir, base := filepath.Split(f[7])
		dir = filepath.Clean(dir)
		if (base == "notify.sock" && strings.HasPrefix(filepath.Base(dir), "gm2-init-")) ||
			(base == "control.sock" && strings.HasPrefix(filepath.Base(dir), "gm2-init-ctl.")) {
			if !slices.Contains(out, dir) {
				out = append(out, dir)
			}
		}
	}
	return out
}

// removePreloadDirs removes the directories of the preload files the log
// names: a gm2-init the cleanup killed could not, and each would stay in
// the machine's /dev/shm.
func (in *Init) removePreloadDirs() {
	for _, l := range in.Lines() {
		if l.Msg() != "node preload" {
			continue
		}
		if dir := filepath.Dir(l.Str("file")); strings.HasPrefix(filepath.Base(dir), "gm2-init-preload-") {
			os.RemoveAll(dir)
		}
	}
}
