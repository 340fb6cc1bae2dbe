package spawn

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// These tests run the real System with real processes: the part of the
// supervisor that the fakes stand in for.

// TestMain lets the test binary stand in for gm2-init's own executable:
// workers are started through the ExecArg re-exec, as in production.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ExecArg {
		os.Exit(ExecMain(os.Args[2:]))
	}
	if f := os.Getenv("GM2_TEST_ESCAPE"); f != "" {
		escapeWorker(f)
	}
	os.Exit(m.Run())
}

// skipShort skips the tests that run real processes under -short: `go test
// -short ./internal/spawn` runs the state machine's cases alone, with no
// process, in well under a second.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real processes; -short runs the state machine's cases only")
	}
}

func realSystem(t *testing.T) *osSystem {
	t.Helper()
	self, err := os.Executable() // the test binary handles ExecArg (TestMain)
	if err != nil {
		t.Fatal(err)
	}
	return NewSystem(self, "/proc").(*osSystem)
}

// waitGone waits until pid no longer exists or is a zombie, bounded.
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i+2:]), "Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive after %v", pid, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reap waits for the worker the System started (the test is its parent).
func reap(t *testing.T, p Proc) unix.WaitStatus {
	t.Helper()
	var ws unix.WaitStatus
	done := make(chan struct{})
	go func() {
		unix.Wait4(p.Pid(), &ws, 0, nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("worker %d did not exit", p.Pid())
	}
	return ws
}

// A worker and a child that both left the worker's process group and
// ignore SIGTERM are still reached: the stop signal finds them through the
// tree, and SIGKILL ends both.
func TestSignalReachesWhatLeftTheGroup(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	// The worker: the test binary in escape mode (see escapeWorker).
	self, _ := os.Executable()
	p, err := o.Start(&StartSpec{
		Path: self, Argv: []string{self},
		Env: append(os.Environ(), "GM2_TEST_ESCAPE="+ready),
	})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 1 {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("worker did not start its child")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, err := procfs.StatOf("/proc", p.Pid())
	if err != nil || st.PGrp == p.Pid() {
		t.Fatalf("the worker did not leave its group: %+v %v", st, err)
	}
	o.Signal(p, unix.SIGTERM) // ignored by both, but remembers the child
	if o.Exited(p) || o.RunsNode(p) {
		t.Fatal("the worker exited on an ignored SIGTERM, or is taken for node")
	}
	o.Signal(p, unix.SIGKILL)
	ws := reap(t, p)
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("worker ended with %v", ws)
	}
	waitGone(t, child, 10*time.Second)
	o.Release(p)
}

// Start lays out the descriptors as Layout says, goes through the shim when
// the worker gets listeners (LISTEN_PID is then its own pid), and reports
// the preload's events.
func TestStartLayoutAndShim(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	out := filepath.Join(t.TempDir(), "out")
	layout := NewLayout([]*os.File{lf}, true, true)
	events := make(chan preload.Event, 4)
	ready := make(chan struct{}, 1)
	script := `{ echo "pid=$$ listen_pid=$LISTEN_PID"; ls /proc/self/fd; } > ` + out +
		`; echo "listening 3 $$" >&4; printf '"ready"\n' >&5; sleep 60`
	p, err := o.Start(&StartSpec{
		Path: "/bin/sh", Argv: []string{"sh", "-c", script},
		Env: append(os.Environ(), "LISTEN_FDS=1"), Layout: layout,
		Events: WorkerEvents{
			Preload:   func(ev preload.Event) { events <- ev },
			NodeReady: func() { ready <- struct{}{} },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { o.Signal(p, unix.SIGKILL); reap(t, p); o.Release(p) }()
	select {
	case ev := <-events:
		if ev.Kind != preload.KindListening || ev.FD != 3 || ev.Pid != p.Pid() {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no preload event")
	}
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no process.send('ready')")
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "pid=" + strconv.Itoa(p.Pid()) + " listen_pid=" + strconv.Itoa(p.Pid())
	if !strings.HasPrefix(string(b), want) {
		t.Errorf("worker says %q, want %q", b, want)
	}
	if layout.PreloadFD != 4 || layout.ChannelFD != 5 {
		t.Errorf("layout %+v", layout)
	}
	if m, err := o.Memory(p); err != nil || m <= 0 {
		t.Errorf("memory %d %v", m, err)
	}
}

// Without listeners or preload, the program is exec'd directly.
func TestStartWithoutShim(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	p, err := o.Start(&StartSpec{Path: "/bin/sh", Argv: []string{"sh", "-c", "exit 7"}, Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	if ws := reap(t, p); ws.ExitStatus() != 7 {
		t.Errorf("status %v", ws)
	}
	o.Release(p)
	if _, err := o.Start(&StartSpec{Path: "/nonexistent/prog", Argv: []string{"prog"}}); err == nil {
		t.Error("starting a missing program did not fail")
	}
}

func TestRemainsAndExited(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	// The worker leaves a child in its group and exits.
	p, err := o.Start(&StartSpec{Path: "/bin/sh", Argv: []string{"sh", "-c", "sleep 60 & echo $! ; exit 0"}, Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !o.Exited(p) {
		if time.Now().After(deadline) {
			t.Fatal("Exited never true")
		}
		time.Sleep(2 * time.Millisecond)
	}
	reap(t, p)
	// Reaped (as the reaper's wait4(-1) does before the loop hears of the
	// exit): it has still exited.
	if !o.Exited(p) {
		t.Fatal("a reaped worker is taken for a running one")
	}
	if !o.Remains(p) {
		t.Fatal("the sleep left in the group is not seen")
	}
	o.Signal(p, unix.SIGKILL)
	deadline = time.Now().Add(10 * time.Second)
	for o.Remains(p) {
		if time.Now().After(deadline) {
			t.Fatal("remains survived SIGKILL")
		}
		time.Sleep(2 * time.Millisecond)
	}
	o.Release(p)
}

func TestWorkerOfAndRunsNode(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	sleeper, _ := strconv.Atoi(strings.TrimSpace(line))
	if w, ok := o.WorkerOf(sleeper, func(p int) bool { return p == cmd.Process.Pid }); !ok || w != cmd.Process.Pid {
		t.Errorf("WorkerOf(sleep) = %d %v", w, ok)
	}
	if o.RunsNode(&osProc{pid: cmd.Process.Pid, members: map[int]memberOf{}}) {
		t.Error("sh and sleep taken for node")
	}
	// Signal 0 finds the test's own descendants: the sh and its sleep.
	if !o.SignalOthers(0, nil) {
		t.Error("SignalOthers found none of the test's descendants")
	}
}

func TestSelfExecutable(t *testing.T) {
	skipShort(t)
	if p, err := SelfExecutable("/proc"); err != nil || p != "/proc/self/exe" {
		t.Errorf("with /proc: %q %v", p, err)
	}
	if p, err := SelfExecutable(t.TempDir()); err != nil || !filepath.IsAbs(p) {
		t.Errorf("without /proc: %q %v", p, err)
	}
}

// escapeWorker is the test binary as the worker of
// TestSignalReachesWhatLeftTheGroup: it starts a child in a process group of
// its own, moves itself into that group, ignores SIGTERM, writes the
// child's pid to file and waits.
func escapeWorker(file string) {
	signal.Ignore(unix.SIGTERM)
	cmd := exec.Command("sleep", "60") // SIG_IGN survives the exec
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.Exit(3)
	}
	if err := unix.Setpgid(0, cmd.Process.Pid); err != nil {
		os.Exit(4)
	}
	if err := os.WriteFile(file, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		os.Exit(5)
	}
	select {}
}

// CheckPorts finds whether the worker's tree holds the passed socket.
func TestCheckPortsOnARealWorker(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	passed := []*sockets.Listener{{Spec: sockets.Spec{Name: "http", Network: sockets.TCP, Addr: ln.Addr().String()}, Bound: ln.Addr().String(), File: f}}
	for _, c := range []struct {
		script    string
		holdsNone bool
	}{
		{"echo ok > $OUT; sleep 60", false},
		{"exec 3>&-; echo ok > $OUT; sleep 60", true},
	} {
		out := filepath.Join(t.TempDir(), "out")
		p, err := o.Start(&StartSpec{Path: "/bin/sh", Argv: []string{"sh", "-c", c.script},
			Env: append(os.Environ(), "LISTEN_FDS=1", "OUT="+out), Layout: NewLayout([]*os.File{f}, false, false)})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if _, err := os.Stat(out); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("worker did not start")
			}
		}
		r := o.CheckPorts(p, passed)
		if !r.Checked || r.HoldsNone != c.holdsNone {
			t.Errorf("%q: %+v", c.script, r)
		}
		o.Signal(p, unix.SIGKILL)
		reap(t, p)
		o.Release(p)
	}
}

// Once a worker's pid names another process (pid reuse after the worker
// was reaped), the group and the descendants of that number are not the
// worker's: Signal and Remains leave them alone. The "other process" here
// is a group leader with a child; the worker is the same pid with another
// start time, which is what reuse looks like.
func TestReusedPidIsLeftAlone(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	cmd := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(line))
	defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }()
	st, err := procfs.StatOf("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	same := &osProc{pid: cmd.Process.Pid, start: st.StartTime, members: map[int]memberOf{}}
	other := &osProc{pid: cmd.Process.Pid, start: st.StartTime + 1, members: map[int]memberOf{}}
	if o.Remains(other) {
		t.Error("the group of a reused pid is taken for the worker's remains")
	}
	o.Signal(other, syscall.SIGCONT)
	if len(other.members) != 0 {
		t.Errorf("the descendants of a reused pid were taken for the worker's: %v", other.members)
	}
	// The control: with the right start time, the same calls see both.
	if !o.Remains(same) {
		t.Error("the worker's own group is not seen")
	}
	o.Signal(same, syscall.SIGCONT)
	if _, ok := same.members[child]; !ok {
		t.Errorf("the worker's child %d is not remembered: %v", child, same.members)
	}
}

// Release returns while a handler of the worker's Node IPC channel is
// still busy (in gm2-init, posting to the very loop that calls Release):
// it ends the channel's goroutine without waiting for it.
func TestReleaseDoesNotWaitForABusyChannelHandler(t *testing.T) {
	skipShort(t)
	o := realSystem(t)
	called, unblock := make(chan struct{}), make(chan struct{})
	defer close(unblock)
	p, err := o.Start(&StartSpec{
		Path: "/bin/sh", Argv: []string{"sh", "-c", `printf '"ready"\n' >&3; exit 0`},
		Env: os.Environ(), Layout: NewLayout(nil, false, true),
		Events: WorkerEvents{NodeReady: func() { close(called); <-unblock }},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("no process.send('ready')")
	}
	reap(t, p)
	released := make(chan struct{})
	go func() { o.Release(p); close(released) }()
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("Release waits for the channel's handler: the loop would deadlock")
	}
}

// A timer stopped after its time came, while its function waits in the
// loop's queue, does not run it: the loop has moved on (a restart timer
// replaced by a newer one must not start the worker early).
func TestLoopTimerStoppedWhileQueued(t *testing.T) {
	queue := make(chan func(), 1)
	c := loopClock{post: func(f func()) { queue <- f }}
	ran := 0
	tm := c.AfterFunc(time.Millisecond, func() { ran++ })
	var queued func()
	select {
	case queued = <-queue:
	case <-time.After(10 * time.Second):
		t.Fatal("the timer never fired")
	}
	if !tm.Stop() {
		t.Error("Stop of a timer whose function had not run returned false")
	}
	queued()
	if ran != 0 {
		t.Fatal("a stopped timer's queued function ran")
	}
	if tm.Stop() {
		t.Error("a second Stop returned true")
	}
	// Not stopped: it runs once, and Stop then says it was too late.
	tm = c.AfterFunc(time.Millisecond, func() { ran++ })
	select {
	case queued = <-queue:
	case <-time.After(10 * time.Second):
		t.Fatal("the timer never fired")
	}
	queued()
	if ran != 1 || tm.Stop() {
		t.Fatalf("ran %d times; Stop after it ran must return false", ran)
	}
}

// The periodic timer posts f at every tick; stopped while a tick waits in
// the loop's queue (and while its goroutine is blocked posting the next),
// Stop returns at once and no queued tick runs.
func TestLoopEveryTicksAndStops(t *testing.T) {
	queue := make(chan func()) // unbuffered: a second tick blocks in post
	c := loopClock{post: func(f func()) { queue <- f }}
	ran := 0
	ev := c.Every(time.Millisecond, func() { ran++ })
	for i := 0; i < 3; i++ {
		select {
		case f := <-queue:
			f()
		case <-time.After(10 * time.Second):
			t.Fatalf("tick %d never came", i+1)
		}
	}
	if ran != 3 {
		t.Fatalf("ran %d times after 3 ticks", ran)
	}
	stopped := make(chan bool)
	go func() { stopped <- ev.Stop() }()
	select {
	case ok := <-stopped:
		if !ok {
			t.Error("the first Stop returned false")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop waited for the loop: the loop would deadlock")
	}
	// A tick that was being posted when Stop came does not run.
	select {
	case f := <-queue:
		f()
	case <-time.After(100 * time.Millisecond):
	}
	if ran != 3 {
		t.Errorf("a tick ran after Stop (%d runs)", ran)
	}
	if ev.Stop() {
		t.Error("a second Stop returned true")
	}
}
