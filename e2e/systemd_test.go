package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// waitRaw waits for text in gm2-init's stderr (lines that are not
// gm2-init's JSON: a wrapper's messages).
func (in *Init) waitRaw(timeout time.Duration, text string) {
	in.t.Helper()
	in.waitFor(timeout, fmt.Sprintf("%q on stderr", text), func() bool {
		if in.exited {
			in.t.Fatalf("exited (%d) before %q; log:\n%s", in.code, text, in.raw.String())
		}
		return strings.Contains(in.raw.String(), text)
	})
}

// TestNoInheritedFDReachesWorkers is issue 17's first case: a descriptor
// open in whatever starts gm2-init (here fd 7, as `exec 7</etc/hostname`
// leaves it) is not passed on to the workers.
func TestNoInheritedFDReachesWorkers(t *testing.T) {
	t.Parallel()
	wrapper := []string{"sh", "-c", `exec 7</etc/hostname; exec "$@"`, "sh"}
	in := startInitVia(t, nil, wrapper, "--health-addr", "off", "--restart", "never", "--", "sh", "-c", "ls -l /proc/self/fd")
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	out := in.stdout.String()
	if !strings.Contains(out, " 2 -> ") {
		t.Fatalf("the worker's listing is not there:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " 7 -> ") || strings.Contains(line, "/etc/hostname") {
			t.Errorf("the worker inherited gm2-init's fd 7: %s", line)
		}
	}
	closed, _ := in.WaitLog(time.Second, 0, "closed descriptors inherited from the parent process, so that workers do not inherit them", nil)
	if fds, _ := closed["fds"].([]any); !containsNumber(fds, 7) {
		t.Errorf("log says fds %v were closed, want 7 among them", closed["fds"])
	}
}

func containsNumber(xs []any, n float64) bool {
	for _, x := range xs {
		if f, ok := x.(float64); ok && f == n {
			return true
		}
	}
	return false
}

// freePorts returns n loopback ports that were free a moment ago (the
// caller retries if one is taken meanwhile).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startSocketActivated runs `systemd-socket-activate -l 127.0.0.1:PORT …
// gm2-init ARGS`, as the README shows, on free ports (retried when one was
// taken in between), and returns once the sockets are bound; gm2-init
// starts at the first connection, which the caller makes.
func startSocketActivated(t *testing.T, env []string, nports int, names string, args func(ports []int) []string) (*Init, []int) {
	t.Helper()
	activate := testtool.Require(t, "systemd-socket-activate", "Debian package systemd")
	for attempt := 0; ; attempt++ {
		ports := freePorts(t, nports)
		wrapper := []string{activate}
		for _, p := range ports {
			wrapper = append(wrapper, "-l", "127.0.0.1:"+strconv.Itoa(p))
		}
		if names != "" {
			wrapper = append(wrapper, "--fdname="+names)
		}
		in := startInitVia(t, env, wrapper, args(ports)...)
		last := fmt.Sprintf("127.0.0.1:%d as %d.", ports[nports-1], 2+nports)
		var bound bool
		in.waitFor(10*time.Second, "systemd-socket-activate to listen", func() bool {
			bound = strings.Contains(in.raw.String(), last)
			return bound || in.exited
		})
		if bound {
			return in, ports
		}
		if attempt == 2 || !strings.Contains(in.rawLog(), "in use") {
			t.Fatalf("systemd-socket-activate did not listen; log:\n%s", in.rawLog())
		}
	}
}

// TestSocketActivationOfGm2Init: gm2-init started by
// systemd-socket-activate serves on the socket it was given, with no
// --listen and nothing bound by itself; its workers see LISTEN_FDS=1, the
// socket's name and their own pid as LISTEN_PID; /status lists it.
func TestSocketActivationOfGm2Init(t *testing.T) {
	t.Parallel()
	in, ports := startSocketActivated(t, nil, 1, "", func(p []int) []string {
		return []string{"-i", "2", "--health-addr", "127.0.0.1:0", "--", bins.worker}
	})
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	// The first connection is what makes systemd-socket-activate exec
	// gm2-init: it waits in the socket's backlog for the first worker.
	seen := map[string]workerInfo{}
	for i := 0; i < 400 && len(seen) < 2; i++ {
		wi := getInfo(t, addr)
		seen[wi.Pid] = wi
	}
	if len(seen) != 2 {
		t.Fatalf("answers from %d workers, want 2: %v", len(seen), seen)
	}
	name := "tcp-" + strconv.Itoa(ports[0])
	for pid, wi := range seen {
		if wi.ListenPid != pid || wi.ListenFDs != "1" || wi.FDNames != name {
			t.Errorf("worker %s: LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s; want its own pid, 1, %s", pid, wi.ListenPid, wi.ListenFDs, wi.FDNames, name)
		}
	}
	l, _ := in.WaitLog(time.Second, 0, "listening", nil)
	if l.Str("address") != addr || l["inherited"] != true || l.Int("fd") != 3 {
		t.Errorf("listening line %v, want %s inherited at fd 3", l, addr)
	}
	listeners := statusListeners(t, in.HealthAddr())
	if len(listeners) != 1 || listeners[0].Name != name || listeners[0].Address != addr || !listeners[0].Inherited || listeners[0].Network != "tcp" {
		t.Errorf("/status listeners %+v, want the inherited %s", listeners, addr)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestSocketActivationWithListen: a --listen of an address the parent
// passed uses that socket (binding it again would fail: in use) in its own
// place and name; the other inherited sockets follow gm2-init's own, in
// LISTEN_FDNAMES order.
func TestSocketActivationWithListen(t *testing.T) {
	t.Parallel()
	in, ports := startSocketActivated(t, nil, 2, "first:second", func(p []int) []string {
		return []string{"-i", "1", "--health-addr", "127.0.0.1:0", "--listen", "own=127.0.0.1:0",
			"--listen", "127.0.0.1:" + strconv.Itoa(p[1]), "--", bins.worker}
	})
	// Wake systemd-socket-activate; this connection stays unanswered in
	// the backlog of "first", which testworker does not serve.
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	own := in.Addr("own")
	in.WaitReady(1, 10*time.Second)
	second := "tcp-" + strconv.Itoa(ports[1])
	wi := getInfo(t, own)
	if wi.ListenFDs != "3" || wi.FDNames != "own:"+second+":first" {
		t.Errorf("worker: LISTEN_FDS=%s LISTEN_FDNAMES=%s; want 3, own:%s:first", wi.ListenFDs, wi.FDNames, second)
	}
	var got []string
	for _, l := range statusListeners(t, in.HealthAddr()) {
		got = append(got, fmt.Sprintf("%s %s %v", l.Name, l.Address, l.Inherited))
	}
	want := []string{"own " + own + " false", fmt.Sprintf("%s 127.0.0.1:%d true", second, ports[1]), fmt.Sprintf("first 127.0.0.1:%d true", ports[0])}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("/status listeners %q, want %q", got, want)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

type listenerView struct {
	Name      string `json:"name"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	Inherited bool   `json:"inherited"`
}

func statusListeners(t *testing.T, health string) []listenerView {
	t.Helper()
	code, body, err := httpGet(health, "/status")
	if err != nil || code != 200 {
		t.Fatalf("/status: %d %v", code, err)
	}
	var st struct {
		Listeners []listenerView `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return st.Listeners
}

// notifyReceiver is gm2-init's own service manager: a datagram socket with
// SO_PASSCRED, as systemd's.
type notifyReceiver struct {
	t    *testing.T
	fd   int
	path string
}

func newNotifyReceiver(t *testing.T) *notifyReceiver {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	// gm2-init may run as the mapped root of a user namespace.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	return &notifyReceiver{t: t, fd: fd, path: path}
}

type datagram struct {
	text string
	pid  int
}

// next waits (up to 20 s) for the next datagram.
func (r *notifyReceiver) next() datagram {
	r.t.Helper()
	d, err := r.recv(20 * time.Second)
	if err != nil {
		r.t.Fatalf("notify receiver: %v", err)
	}
	return d
}

// pending returns what has arrived, without waiting.
func (r *notifyReceiver) pending() []datagram {
	r.t.Helper()
	var out []datagram
	for {
		d, err := r.recv(0)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, d)
	}
}

// recv returns the next datagram, waiting at most wait for it (0: what has
// arrived; os.ErrDeadlineExceeded when none has).
func (r *notifyReceiver) recv(wait time.Duration) (datagram, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, err := testtool.Recvmsg(r.fd, buf, oob, 0, wait)
	if err != nil {
		return datagram{}, err
	}
	d := datagram{text: string(buf[:n])}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for i := range msgs {
		if cred, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			d.pid = int(cred.Pid)
		}
	}
	return d, nil
}

// until waits for a datagram that starts with prefix and returns it with
// the ones before it.
func (r *notifyReceiver) until(prefix string) (datagram, []datagram) {
	r.t.Helper()
	var before []datagram
	for {
		d := r.next()
		if strings.HasPrefix(d.text, prefix) {
			return d, before
		}
		before = append(before, d)
	}
}

// readyWithin returns the datagrams that arrive in the next d, or up to
// the first READY=1 if one arrives sooner: for a check that no READY=1
// comes while the test holds a worker back, when no later message can
// show that everything sent before it has arrived.
func (r *notifyReceiver) readyWithin(d time.Duration) []datagram {
	r.t.Helper()
	out := r.pending()
	for deadline := time.Now().Add(d); !hasReady(out); {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			r.t.Fatalf("notify receiver: poll: %v", err)
		}
		out = append(out, r.pending()...)
	}
	return out
}

func hasReady(ds []datagram) bool {
	for _, d := range ds {
		if strings.Contains(d.text, "READY=1") {
			return true
		}
	}
	return false
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// TestReadinessToOwnSupervisor: with NOTIFY_SOCKET set for gm2-init itself
// (systemd Type=notify, podman --sdnotify=container), READY=1 comes from
// gm2-init's own pid only once every worker is ready — here slot 1 is held
// back until the test lets it go — then RELOADING=1 (with MONOTONIC_USEC)
// and READY=1 around a SIGHUP, STOPPING=1 at SIGTERM.
func TestReadinessToOwnSupervisor(t *testing.T) {
	t.Parallel()
	r := newNotifyReceiver(t)
	gate := filepath.Join(t.TempDir(), "gate")
	if err := unix.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInit(t, []string{"NOTIFY_SOCKET=" + r.path, "TW_READY_GATE=" + gate, "TW_GATE_SLOT=1"},
		baseArgs("-i", "2", "--wait-ready", "--listen-timeout", "60s", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitLog(20*time.Second, 0, "worker ready", func(l logLine) bool { return l.Int("slot") == 0 })
	_, before := r.until("STATUS=1/2 workers ready")
	// Every event the loop handled so far is done once a round trip
	// through it returns (/livez): whatever gm2-init sent for slot 0's
	// readiness has arrived by then.
	if code, _, err := httpGet(health, "/livez"); err != nil || code != 200 {
		t.Fatalf("/livez: %d %v", code, err)
	}
	if early := append(before, r.pending()...); hasReady(early) {
		t.Fatalf("READY=1 while slot 1 was not ready: %+v", early)
	}
	// Let slot 1 say READY=1.
	w, err := os.OpenFile(gate, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ready, _ := r.until("READY=1")
	if ready.text != "READY=1\nSTATUS=2/2 workers ready" || ready.pid != in.Pid {
		t.Errorf("got %q from pid %d; want READY=1 with 2/2 from gm2-init (pid %d)", ready.text, ready.pid, in.Pid)
	}
	in.waitFor(10*time.Second, "2 ready workers in the log", func() bool {
		n := 0
		for _, l := range in.lines {
			if l.Msg() == "worker ready" {
				n++
			}
		}
		return n >= 2
	})

	// A reload: RELOADING=1 with the monotonic clock, READY=1 at its end.
	t0 := monotonicUsec()
	in.Signal(syscall.SIGHUP)
	reloading, _ := r.until("RELOADING=1")
	lines := strings.Split(reloading.text, "\n")
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if len(lines) < 2 || err != nil || usec < t0 || usec > monotonicUsec() || reloading.pid != in.Pid {
		t.Errorf("got %q from %d; want RELOADING=1 and MONOTONIC_USEC between %d and now, from gm2-init", reloading.text, reloading.pid, t0)
	}
	ready, _ = r.until("READY=1")
	if ready.text != "READY=1\nSTATUS=2/2 workers ready" || ready.pid != in.Pid {
		t.Errorf("after the reload: %q from pid %d", ready.text, ready.pid)
	}
	// READY=1 ends the reload: the supervisor's loop, which answers
	// /status, has finished it by then (not only begun it).
	code, body, err := httpGet(health, "/status")
	var st struct {
		Reload struct {
			Generation int    `json:"generation"`
			InProgress bool   `json:"in_progress"`
			LastResult string `json:"last_result"`
		} `json:"reload"`
	}
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &st) != nil ||
		st.Reload.Generation != 1 || st.Reload.InProgress || st.Reload.LastResult != "ok" {
		t.Errorf("/status when READY=1 came after the reload: %d %v %s; want reload generation 1 finished ok", code, err, body)
	}
	in.WaitLog(10*time.Second, 0, "reload finished", nil)

	in.Signal(syscall.SIGTERM)
	stopping, before := r.until("STOPPING=1")
	if stopping.pid != in.Pid || hasReady(before) {
		t.Errorf("STOPPING=1 from %d after %+v", stopping.pid, before)
	}
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if after := r.pending(); hasReady(after) {
		t.Errorf("READY=1 after STOPPING=1: %+v", after)
	}
}

// TestWatchdogStopsWhenLoopIsStuck: with WATCHDOG_USEC, WATCHDOG=1 arrives
// every half period while the supervisor's loop answers, stops while the
// loop is frozen (a test hook), and comes back when it runs again.
func TestWatchdogStopsWhenLoopIsStuck(t *testing.T) {
	t.Parallel()
	r := newNotifyReceiver(t)
	ctl := filepath.Join(t.TempDir(), "ctl")
	in := startInit(t, []string{"NOTIFY_SOCKET=" + r.path, "WATCHDOG_USEC=1000000", "GM2TEST_CONTROL=" + ctl},
		baseArgs("-i", "1", "--", bins.worker)...)
	in.WaitLog(10*time.Second, 0, "watchdog: WATCHDOG=1 to gm2-init's own supervisor while the supervisor loop answers", nil)
	for range 2 {
		if d, _ := r.until("WATCHDOG=1"); d.pid != in.Pid {
			t.Fatalf("WATCHDOG=1 from %d, want gm2-init %d", d.pid, in.Pid)
		}
	}
	c, err := net.Dial("unix", ctl)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	answers := bufio.NewReader(c)
	command := func(cmd, want string) {
		t.Helper()
		if _, err := fmt.Fprintln(c, cmd); err != nil {
			t.Fatal(err)
		}
		got, err := answers.ReadString('\n')
		if err != nil || got != want+"\n" {
			t.Fatalf("%s: %q, %v; want %s", cmd, got, err, want)
		}
	}
	failed := "cannot notify gm2-init's own supervisor"
	command("freeze", "frozen")
	_, next := in.WaitLog(10*time.Second, 0, failed, func(l logLine) bool { return strings.Contains(l.Str("error"), "no WATCHDOG=1") })
	// The ping of a check that passed before the freeze went out before this
	// failed check began; from here on, none may come.
	r.pending()
	_, next = in.WaitLog(10*time.Second, next, failed, nil)
	in.WaitLog(10*time.Second, next, failed, nil)
	if got := r.pending(); len(got) != 0 {
		t.Errorf("pings while the loop was stuck: %+v", got)
	}
	command("thaw", "thawed")
	if d, _ := r.until("WATCHDOG=1"); d.pid != in.Pid {
		t.Errorf("WATCHDOG=1 from %d", d.pid)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestNotifyFromWorkerOfAnotherUser: a worker that drops its privileges
// with setpriv still says READY=1 (issue 12: the notify directory was 0700,
// so only --listen-timeout made it ready).
func TestNotifyFromWorkerOfAnotherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the worker switches to uid 65534")
	}
	setpriv := testtool.Require(t, "setpriv", "Debian package util-linux")
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--listen-timeout", "30s", "--",
		setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bins.worker)...)
	l, _ := in.WaitLog(40*time.Second, 0, "worker ready", nil)
	if l.Str("by") != "READY=1" {
		t.Errorf("worker ready by %q, want READY=1 (its datagram did not get through)", l.Str("by"))
	}
	getInfo(t, in.Addr(""))
	for _, pid := range in.Children() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err == nil && !strings.Contains(string(b), "\nUid:\t65534\t") {
			t.Errorf("worker %d does not run as uid 65534:\n%s", pid, b)
		}
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// activated runs gm2-init ARGS with files as fds 3, 4, … and the
// socket-activation variables a service manager sets (LISTEN_PID is the
// shell's pid, which exec gives to gm2-init).
func activated(files []*os.File, fds, names string, args ...string) *exec.Cmd {
	script := `LISTEN_PID=$$ LISTEN_FDS=` + fds + ` LISTEN_FDNAMES=` + names + ` exec "$0" "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, bins.init}, args...)...)
	cmd.ExtraFiles = files
	return cmd
}

// TestDryRunShowsInheritedSockets: --dry-run lists the sockets the parent
// passed, with the --listen value that uses each, and binds nothing.
func TestDryRunShowsInheritedSockets(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tf, _ := tcp.(*net.TCPListener).File()
	defer tf.Close()
	uf, _ := udp.(*net.UDPConn).File()
	defer uf.Close()
	out, err := activated([]*os.File{tf, uf}, "2", "web:dns", "--dry-run", "--listen", tcp.Addr().String(), "--", "true").Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var cfg struct {
		Listen    []map[string]string `json:"listen"`
		Inherited []struct {
			FD      int    `json:"fd"`
			Name    string `json:"name"`
			Network string `json:"network"`
			Address string `json:"address"`
			Listen  string `json:"listen"`
		} `json:"inherited"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	inh := cfg.Inherited
	if len(inh) != 2 || inh[0].FD != 3 || inh[0].Name != "web" || inh[0].Address != tcp.Addr().String() || inh[0].Listen != tcp.Addr().String() ||
		inh[1].FD != 4 || inh[1].Name != "dns" || inh[1].Network != "udp" || inh[1].Address != udp.LocalAddr().String() || inh[1].Listen != "" {
		t.Errorf("inherited: %+v", inh)
	}
	if len(cfg.Listen) != 1 || cfg.Listen[0]["inherited_fd"] != "3" {
		t.Errorf("listen: %v", cfg.Listen)
	}
}

// TestBadActivation: socket-activation variables or descriptors gm2-init
// cannot use are one line naming the variable, exit status 2, nothing
// started.
func TestBadActivation(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name       string
		files      []*os.File
		fds, names string
		want       string
	}{
		{"count", nil, "x", "", `LISTEN_FDS="x": not a number`},
		{"names", []*os.File{r}, "1", "a:b", `LISTEN_FDNAMES="a:b": 2 names for LISTEN_FDS=1`},
		{"not a socket", []*os.File{r}, "1", "", "LISTEN_FDS: fd 3: not a socket (a FIFO)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			cmd := activated(tc.files, tc.fds, tc.names, "--", "touch", marker)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; stderr:\n%s", err, stderr.String())
			}
			if got := strings.TrimSpace(stderr.String()); strings.Count(got, "\n") != 0 || !strings.Contains(got, tc.want) {
				t.Errorf("stderr %q, want one line with %q", got, tc.want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the command was started")
			}
		})
	}
	// LISTEN_PID of another process: the variables leaked from an ancestor;
	// the descriptor is not taken over (and not passed on).
	out, err := exec.Command("sh", "-c", `LISTEN_PID=1 LISTEN_FDS=1 exec "$0" --dry-run -- true`, bins.init).Output()
	if err != nil || !strings.Contains(string(out), `"inherited":[]`) {
		t.Errorf("LISTEN_PID of another process: %v\n%s", err, out)
	}
}

// TestPodmanSocketActivationAndSdnotify runs gm2-init as PID 1 of a podman
// container the way the quadlet example does (examples/systemd): the socket
// comes from a socket unit (here systemd-socket-activate, which podman
// passes into the container with LISTEN_PID=1), the container has no network
// of its own (Network=none), and Notify=true (--sdnotify=container) makes
// podman relay gm2-init's READY=1 — which must come only once both workers
// are ready (slot 1 is held back until the test lets it go).
func TestPodmanSocketActivationAndSdnotify(t *testing.T) {
	t.Parallel()
	podman := testtool.Require(t, "podman", "Debian package podman")
	testtool.Require(t, "runc", "Debian package runc")
	activate := testtool.Require(t, "systemd-socket-activate", "Debian package systemd")
	if os.Geteuid() != 0 {
		t.Skip("needs root for podman with runc here")
	}
	// A static gm2-init (the race-enabled one needs libc) and testworker
	// in an image with nothing else.
	dir := t.TempDir()
	build := exec.Command("go", "build", "-tags", "gm2testhooks", "-o", filepath.Join(dir, "gm2-init"), "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bins.worker)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testworker"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	containerfile := `FROM scratch
COPY gm2-init testworker /
ENTRYPOINT ["/gm2-init", "-i", "2", "--wait-ready", "--listen-timeout", "60s", "--health-addr", "off", "--"]
CMD ["/testworker"]
`
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("gm2-e2e-systemd-%d", os.Getpid())
	image := "localhost/" + name + ":latest"
	if out, err := exec.Command(podman, "build", "-q", "-t", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		exec.Command(podman, "rm", "-f", "-t", "0", name).Run()
		exec.Command(podman, "rmi", "-f", image).Run()
	})

	r := newNotifyReceiver(t)
	gateDir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(gateDir, "gate"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// systemd-socket-activate passes NOTIFY_SOCKET on only when told (-E).
	cmd := exec.Command(activate, "-l", addr, "-E", "NOTIFY_SOCKET",
		podman, "--runtime", "runc", "run", "--rm", "--name", name,
		"--sdnotify=container", "--network", "none",
		"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
		"-v", gateDir+":/gate", "-e", "TW_READY_GATE=/gate/gate", "-e", "TW_GATE_SLOT=1", image)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+r.path)
	// conmon inherits the output pipe and may outlive podman run.
	lc := startLogged(t, cmd)
	out, exited := lc.out, lc.exited
	out.wait(t, 20*time.Second, 0, "Listening on "+addr)

	// The first connection starts podman; a worker answers it.
	answered := make(chan workerInfo, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Get("http://" + addr + "/")
		if err != nil {
			t.Error(err)
			answered <- workerInfo{}
			return
		}
		defer resp.Body.Close()
		var wi workerInfo
		json.NewDecoder(resp.Body).Decode(&wi)
		answered <- wi
	}()
	out.wait(t, 60*time.Second, 0, `"fd":3`, `"inherited":true`, `"listening"`)
	out.wait(t, 60*time.Second, 0, `"worker ready"`, `"slot":0`)
	wi := <-answered
	if wi.ListenFDs != "1" || wi.ListenPid != wi.Pid || wi.FDNames != "tcp-"+strconv.Itoa(port) {
		t.Errorf("worker in the container: %+v; want LISTEN_FDS=1, its own LISTEN_PID, tcp-%d", wi, port)
	}
	// podman relays READY=1 alone (no STATUS=), so nothing that comes
	// after a READY=1 sent too early can show that it would have arrived
	// by now: the gate stays shut for 2 s (far more than conmon takes to
	// relay a datagram), and no READY=1 may come meanwhile.
	if early := r.readyWithin(2 * time.Second); hasReady(early) {
		t.Fatalf("podman relayed READY=1 while slot 1 was not ready: %+v", early)
	}
	gate, err := os.OpenFile(filepath.Join(gateDir, "gate"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	r.until("READY=1")
	out.wait(t, 10*time.Second, 0, `"worker ready"`, `"slot":1`)

	if err := exec.Command(podman, "stop", "-t", "10", name).Run(); err != nil {
		t.Fatalf("podman stop: %v", err)
	}
	select {
	case <-exited:
		if lc.err != nil {
			t.Errorf("podman run: %v", lc.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("podman run did not end after podman stop")
	}
	out.wait(t, time.Second, 0, `"gm2-init exiting"`, `"exit_code":0`)
}

// TestSystemdUnitFiles checks the unit files of examples/systemd with
// `systemd-analyze verify` (offline: no running systemd needed), with the
// binaries' paths pointed at the ones built for the tests (verify checks
// that ExecStart exists). Any message — an unknown key, a typo in a
// section — fails the test. The quadlet file (gm2-app.container) needs
// podman's quadlet generator (podman 4.4+), which Debian 12's podman 4.3
// lacks; its mechanics are TestPodmanSocketActivationAndSdnotify's.
func TestSystemdUnitFiles(t *testing.T) {
	t.Parallel()
	analyze := testtool.Require(t, "systemd-analyze", "Debian package systemd")
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"gm2-app.socket", "gm2-app.service"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.NewReplacer("/usr/local/bin/gm2-init", bins.init, "/usr/local/bin/goapp", bins.goapp).Replace(string(b))
		if name == "gm2-app.service" && !strings.Contains(text, "ExecStart="+bins.init+" ") {
			t.Fatalf("%s: ExecStart does not run /usr/local/bin/gm2-init", name)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestReadmeSocketActivateCommand runs the README's systemd-socket-activate
// command exactly as written — port 8080, gm2-init from PATH, ./goapp — in
// a network namespace of its own, so that port 8080 cannot collide with
// anything on the machine.
func TestReadmeSocketActivateCommand(t *testing.T) {
	t.Parallel()
	testtool.Require(t, "systemd-socket-activate", "Debian package systemd")
	nsenter := testtool.Require(t, "nsenter", "Debian package util-linux")
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace it can enter")
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "    systemd-socket-activate ") {
			line = strings.TrimSpace(l)
		}
	}
	if line != "systemd-socket-activate -l 127.0.0.1:8080 gm2-init -i 2 -- ./goapp" {
		t.Fatalf("README command %q: update this test with it", line)
	}
	dir := t.TempDir()
	bin := gm2InitOnPath(t)
	if err := os.Symlink(bins.goapp, filepath.Join(dir, "goapp")); err != nil {
		t.Fatal(err)
	}
	script := `"$0" lo-up && cd "$1" && export PATH="$2:$PATH" && exec ` + line
	cmd := exec.Command("unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", script, bins.worker, dir, bin)
	lc := startLogged(t, cmd)
	out, exited := lc.out, lc.exited
	out.wait(t, 20*time.Second, 0, "Listening on 127.0.0.1:8080")
	kids := childrenOf(cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("children of unshare: %v", kids)
	}
	pid1 := kids[0] // systemd-socket-activate, then gm2-init: one pid
	workers := map[string]bool{}
	for i := 0; i < 100 && len(workers) < 2; i++ {
		get := exec.Command(nsenter, "--net=/proc/"+strconv.Itoa(pid1)+"/ns/net", bins.worker, "get", "http://127.0.0.1:8080/")
		body, err := get.Output()
		if err != nil {
			t.Fatalf("GET inside the namespace: %v", err)
		}
		if !strings.HasPrefix(string(body), "hello from worker ") {
			t.Fatalf("answer %q", body)
		}
		workers[strings.Fields(string(body))[3]] = true
	}
	if !workers["0"] || !workers["1"] {
		t.Errorf("answers from workers %v, want 0 and 1", workers)
	}
	out.wait(t, time.Second, 0, `"listening"`, `"inherited":true`, `127.0.0.1:8080`)
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("gm2-init did not exit after SIGTERM")
	}
	out.wait(t, time.Second, 0, `"gm2-init exiting"`, `"exit_code":0`)
}

// TestSocketActivationNodeListen: an unmodified Node app's listen(PORT) is
// served on the socket gm2-init's parent passed, by every worker (the
// preload hands it the inherited socket; a bind of its own would fail with
// EADDRINUSE).
func TestSocketActivationNodeListen(t *testing.T) {
	t.Parallel()
	node := testtool.Require(t, "node", "Debian package nodejs")
	app := `require('http').createServer((q, r) => r.end(String(process.pid))).listen(Number(process.argv[1]))`
	in, ports := startSocketActivated(t, nil, 1, "", func(p []int) []string {
		return []string{"-i", "2", "--health-addr", "off", "--", node, "-e", app, strconv.Itoa(p[0])}
	})
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	pids := map[string]bool{}
	for i := 0; i < 400 && len(pids) < 2; i++ {
		code, body, err := httpGet(addr, "/")
		if err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", addr, code, err)
		}
		pids[body] = true
	}
	if len(pids) != 2 {
		t.Errorf("answers from %v, want 2 workers", pids)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// LISTEN_FDS leaked from an ancestor (LISTEN_PID another process's) is
// ignored with a line in the log that says why, as the README says.
func TestLeakedActivationIsLogged(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"LISTEN_PID=999999", "LISTEN_FDS=1"}, "--health-addr", "off", "--restart", "never", "--", "true")
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	l, _ := in.WaitLog(time.Second, 0, "LISTEN_FDS is not for gm2-init; its sockets are not taken over", nil)
	if !strings.Contains(l.Str("reason"), "999999") {
		t.Errorf("reason %q, want it to name LISTEN_PID 999999", l.Str("reason"))
	}
}
