package spawn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/portcheck"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/tick"
)

// System is everything the supervisor does to the operating system. The
// real one (NewSystem) forks, signals and reads /proc; the unit tests use a
// fake that records what was asked and hands out fake pids. The supervisor
// calls it only from its loop.
type System interface {
	// Start starts one worker as described. The readiness channels it
	// opens report through spec.Events, from goroutines of the System's
	// own, which end when the worker's channels close (Release).
	Start(spec *StartSpec) (Proc, error)
	// Signal sends sig to the worker's whole tree: its process group, the
	// worker itself (it may have left its group) and every descendant it
	// has now (they may have left it too), and remembers those
	// descendants so that Signal and Remains still find them after the
	// worker is gone.
	Signal(p Proc, sig syscall.Signal)
	// Remains tells whether any process of an exited worker's tree is
	// still alive: its group, or a descendant remembered by Signal.
	Remains(p Proc) bool
	// Exited tells, without reaping it, whether the worker has exited:
	// its exit may be queued behind the event being handled.
	Exited(p Proc) bool
	// RunsNode tells whether a process of the worker's tree runs node
	// (the app itself, or npm/yarn, which are node too).
	RunsNode(p Proc) bool
	// Release frees what the System holds for an exited worker (its ends
	// of the readiness channels, its pidfd).
	Release(p Proc)
	// WorkerOf walks up from pid through its ancestors (pid included) and
	// returns the first for which isWorker is true.
	WorkerOf(pid int, isWorker func(int) bool) (int, bool)
	// SignalOthers sends sig to every process gm2-init is responsible for
	// that belongs to no live worker's tree (exclude): as PID 1 every
	// process of the namespace, else its own descendants. It reports
	// whether any was signalled.
	SignalOthers(sig syscall.Signal, exclude []Proc) bool
	// SignalAll sends sig to every process gm2-init is responsible for:
	// as PID 1 every process of the namespace at once (kill(-1), which no
	// fork can escape), else its own children. The final sweep uses it
	// once no worker is left; sig 0 asks whether any is still there.
	SignalAll(sig syscall.Signal) bool
	// Memory returns the resident memory of the worker's tree in bytes.
	Memory(p Proc) (int64, error)
	// CheckPorts looks, once the worker says it is ready, at which of the
	// passed listeners its tree holds and on which ports of its own it
	// listens (see internal/portcheck).
	CheckPorts(p Proc, passed []*sockets.Listener) PortCheck
}

// PortCheck is what CheckPorts found.
type PortCheck struct {
	// Checked is false when nothing could be learned (no /proc): the
	// worker is then taken at its word.
	Checked bool
	// HoldsNone: listeners were passed and the tree holds none of them,
	// so it cannot be serving them: it is not ready.
	HoldsNone bool
	// Wrong: something is certainly amiss (a passed socket closed, the
	// server's default port bound, LISTEN_PID ignored); Odd: something
	// worth a line (a port of its own next to the passed ones).
	Wrong, Odd bool
	Message    string // one line for the log, with the fix for known servers
	Server     string // the server detected (gunicorn, puma …), "" if unknown
}

// Proc is a started worker as the System knows it.
type Proc interface{ Pid() int }

// StartSpec describes one worker to start.
type StartSpec struct {
	App        string
	Slot       int
	Path       string   // the program, resolved
	Argv       []string // Argv[0] as the user wrote it
	Dir        string   // working directory; "" = gm2-init's
	Env        []string // the complete environment, fd variables included
	Layout     Layout   // the descriptors from 3 on
	Foreground bool     // give it the terminal on stdin (one worker, docker run -it)
	Events     WorkerEvents
}

// WorkerEvents are how a worker's readiness channels report. The supervisor
// fills them with functions that post into its loop; they may be called
// from any goroutine.
type WorkerEvents struct {
	Preload   func(preload.Event) // the Node preload's pipe (GM2_PRELOAD_FD)
	NodeReady func()              // process.send('ready') on the Node IPC channel
	// Query answers the worker's listen() on the Node IPC channel (Node's
	// cluster protocol: see internal/nodeipc). It runs on the channel's
	// goroutine, not in the loop.
	Query func(nodeipc.Query) nodeipc.Reply
	// Held and Released say which sockets Query gave the worker's servers
	// hold (see nodeipc.Handler); they run on the channel's goroutine.
	Held, Released func(id int)
}

// Clock is the supervisor's time. AfterFunc's f runs in the supervisor's
// loop, never concurrently with an event.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
	// Every runs f every d until Stop: the --max-memory-restart check,
	// the one long periodic timer of an idle supervisor. The real clock
	// ticks from a timerfd (package tick says why).
	Every(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop cancels the timer, from the loop: its function does not run
	// after Stop, even when its time has come and it already waits in
	// the loop's queue. False if the function ran, or Stop was called
	// before.
	Stop() bool
}

// loopClock is the real Clock: time.AfterFunc whose function is posted into
// the supervisor's loop.
type loopClock struct{ post func(func()) }

func (c loopClock) Now() time.Time { return time.Now() }
func (c loopClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &loopTimer{}
	t.timer = time.AfterFunc(d, func() {
		c.post(func() {
			if !t.done {
				t.done = true
				f()
			}
		})
	})
	return t
}

func (c loopClock) Every(d time.Duration, f func()) Timer {
	t := &loopTicker{tick: tick.New(d)}
	// The goroutine ends when Stop closes the ticker's channel; it never
	// holds Stop up (a tick it is posting waits for the loop, which may
	// be the caller of Stop).
	go func() {
		for range t.tick.C {
			c.post(func() {
				if !t.done {
					f()
				}
			})
		}
	}()
	return t
}

// loopTicker is loopClock's periodic Timer; done, as in loopTimer, is only
// touched in the loop, so that a tick already queued does not run after
// Stop.
type loopTicker struct {
	tick *tick.Ticker
	done bool
}

func (t *loopTicker) Stop() bool {
	if t.done {
		return false
	}
	t.done = true
	t.tick.Stop()
	return true
}

// loopTimer is loopClock's Timer. A time.Timer alone cannot be stopped
// once it fired, and its function posted to the loop would still run after
// the handler that stopped it had moved on (a stale restart starting a
// worker before its backoff ended). done is read and written only in the
// loop: by the posted function and by Stop.
type loopTimer struct {
	timer *time.Timer
	done  bool
}

func (t *loopTimer) Stop() bool {
	t.timer.Stop()
	if t.done {
		return false
	}
	t.done = true
	return true
}

// NewSystem returns the real System. self is the executable that workers
// are started through (the LISTEN_PID shim, see ExecArg); procRoot is where
// /proc is mounted.
func NewSystem(self, procRoot string) System {
	return &osSystem{self: self, proc: procRoot}
}

// SelfExecutable names the running gm2-init for the exec shim: the
// /proc/self/exe magic link when /proc has it, which resolves to the binary
// that is running even after the file was deleted or replaced on disk (an
// image layer update, a package upgrade, a bind mount), and the path
// os.Executable reports otherwise.
func SelfExecutable(procRoot string) (string, error) {
	link := procRoot + "/self/exe"
	if _, err := os.Stat(link); err == nil {
		return link, nil
	}
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find gm2-init's own executable: %w", err)
	}
	return p, nil
}

type osSystem struct {
	self string
	proc string
	// inodes caches the socket inode of each listener (CheckPorts).
	inodes map[*sockets.Listener]uint64
	// noFg: the terminal could not be handed over once; stop trying.
	noFg bool
}

// osProc is a worker started by osSystem.
type osProc struct {
	pid     int
	start   uint64 // start time of the worker (procfs.Stat.StartTime)
	proc    *os.Process
	closers []*os.File // our ends of the readiness channels
	// stopChannel ends the goroutine that serves our end of the Node IPC
	// channel; that goroutine closes the channel when it ends. Release
	// calls it only after the worker is gone, because a Node cluster
	// worker exits when it disconnects. Release does not wait for the
	// goroutine: a handler of it may be posting to the loop that calls
	// Release.
	stopChannel context.CancelFunc
	// members are the descendants seen by Signal, with their start times
	// (a pid reused by another process has another start time).
	members map[int]memberOf
	// foreground: it was given the terminal (StartSpec.Foreground), which
	// Release takes back.
	foreground bool
}

func (p *osProc) Pid() int { return p.pid }

// memberOf is what is remembered of a worker's descendant.
type memberOf struct{ start uint64 }

func (o *osSystem) Start(spec *StartSpec) (Proc, error) {
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	files = append(files, spec.Layout.Listeners...)
	var mine, theirs []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	var preloadR, channel *os.File
	if spec.Layout.PreloadFD != 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("preload pipe: %w", err)
		}
		if len(files) != spec.Layout.PreloadFD {
			r.Close()
			w.Close()
			return nil, fmt.Errorf("preload pipe at fd %d, layout says %d", len(files), spec.Layout.PreloadFD)
		}
		files = append(files, w)
		mine, theirs = append(mine, r), append(theirs, w)
		preloadR = r
	}
	if spec.Layout.ChannelFD != 0 {
		parent, child, err := nodeipc.NewChannel()
		if err != nil {
			closeAll(mine)
			closeAll(theirs)
			return nil, fmt.Errorf("node IPC channel: %w", err)
		}
		if len(files) != spec.Layout.ChannelFD {
			closeAll(append(mine, parent))
			closeAll(append(theirs, child))
			return nil, fmt.Errorf("node IPC channel at fd %d, layout says %d", len(files), spec.Layout.ChannelFD)
		}
		files = append(files, child)
		theirs = append(theirs, child)
		channel = parent
	}
	path, argv, env := spec.Path, spec.Argv, spec.Env
	if spec.Layout.NeedsShim() {
		path = o.self
		argv = append([]string{spec.Argv[0], ExecArg, spec.Path}, spec.Argv...)
	}
	// Its own process group, so that the stop signal reaches what a
	// wrapper (sh -c, npm start) started too.
	sys := &syscall.SysProcAttr{Setpgid: true}
	if spec.Foreground && !o.noFg {
		sys.Foreground, sys.Ctty = true, 0
	}
	attr := &os.ProcAttr{Dir: spec.Dir, Env: env, Files: files, Sys: sys}
	proc, err := os.StartProcess(path, argv, attr)
	if err != nil && sys.Foreground {
		o.noFg = true
		sys.Foreground = false
		proc, err = os.StartProcess(path, argv, attr)
	}
	closeAll(theirs)
	if err != nil {
		closeAll(mine)
		if channel != nil {
			channel.Close()
		}
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	p := &osProc{pid: proc.Pid, proc: proc, closers: mine, members: map[int]memberOf{}, foreground: sys.Foreground}
	// The start time names this process for as long as gm2-init may
	// signal by its pid, after it was reaped too (see reused). A worker
	// already reaped here leaves 0, which no live process has.
	if st, err := procfs.StatOf(o.proc, p.pid); err == nil {
		p.start = st.StartTime
	}
	if preloadR != nil && spec.Events.Preload != nil {
		go preload.Read(preloadR, spec.Events.Preload)
	}
	if channel != nil {
		ctx, stop := context.WithCancel(context.Background())
		p.stopChannel = stop
		h := nodeipc.Handler{Query: spec.Events.Query, Ready: spec.Events.NodeReady, Held: spec.Events.Held, Released: spec.Events.Released}
		go func() {
			defer channel.Close()
			_ = nodeipc.Serve(ctx, channel, h)
		}()
	}
	return p, nil
}

func (o *osSystem) Signal(pr Proc, sig syscall.Signal) {
	p := pr.(*osProc)
	// The group first: the worker and what its wrapper started, in one
	// call. Then, one by one, only the processes that are not in it any
	// more (the worker itself included): a process must get the signal
	// once, because a second SIGTERM is often read as "stop now" (npm, a
	// shell, an app counting its signals). Once the worker's pid names
	// another process, only the remembered members are its.
	if !o.reused(p) {
		unix.Kill(-p.pid, sig)
		for _, d := range procfs.Descendants(o.proc, p.pid) {
			p.members[d.Pid] = memberOf{start: d.StartTime}
		}
		if st, err := procfs.StatOf(o.proc, p.pid); err == nil && st.PGrp != p.pid {
			unix.Kill(p.pid, sig)
		}
	}
	for pid, m := range p.members {
		st, err := procfs.StatOf(o.proc, pid)
		if err != nil || st.StartTime != m.start {
			delete(p.members, pid)
			continue
		}
		if st.PGrp != p.pid {
			unix.Kill(pid, sig)
		}
	}
}

// same tells whether pid still names the process that started at start.
func (o *osSystem) same(pid int, start uint64) bool {
	st, err := procfs.StatOf(o.proc, pid)
	return err == nil && st.StartTime == start
}

// reused tells whether the worker's pid now names another process. The
// kernel does not hand out a pid while a process group of that number has
// members, so as long as nothing else holds the pid, a group of that
// number is the worker's; once another process holds it, the group of
// that number (if any) is that process's, and must not be signalled.
func (o *osSystem) reused(p *osProc) bool {
	st, err := procfs.StatOf(o.proc, p.pid)
	return err == nil && st.StartTime != p.start
}

func (o *osSystem) Remains(pr Proc) bool {
	p := pr.(*osProc)
	if !o.reused(p) && unix.Kill(-p.pid, 0) == nil {
		return true
	}
	for pid, m := range p.members {
		if o.same(pid, m.start) {
			return true
		}
		delete(p.members, pid)
	}
	return false
}

func (o *osSystem) Exited(pr Proc) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pr.Pid(), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if errors.Is(err, unix.ECHILD) {
		// Not our child any more: the reaper's wait4(-1) has reaped it,
		// and its exit is on its way to the loop.
		return true
	}
	return err == nil && info.Signo != 0
}

func (o *osSystem) RunsNode(pr Proc) bool {
	pids := []int{pr.Pid()}
	for _, d := range procfs.Descendants(o.proc, pr.Pid()) {
		pids = append(pids, d.Pid)
	}
	for _, pid := range pids {
		if strings.HasPrefix(procfs.ExeName(o.proc, pid), "node") {
			return true
		}
	}
	return false
}

func (o *osSystem) Release(pr Proc) {
	p := pr.(*osProc)
	for _, f := range p.closers {
		f.Close()
	}
	p.closers = nil
	if p.stopChannel != nil {
		p.stopChannel()
		p.stopChannel = nil
	}
	if p.foreground {
		p.foreground = false
		takeTerminalBack(p.pid)
	}
	p.proc.Release()
}

func (o *osSystem) WorkerOf(pid int, isWorker func(int) bool) (int, bool) {
	return procfs.FindAncestor(o.proc, pid, isWorker)
}

func (o *osSystem) SignalAll(sig syscall.Signal) bool { return reaper.SignalAll(sig) }

func (o *osSystem) SignalOthers(sig syscall.Signal, exclude []Proc) bool {
	skip := map[int]bool{os.Getpid(): true}
	for _, pr := range exclude {
		p := pr.(*osProc)
		skip[p.pid] = true
		for pid := range p.members {
			skip[pid] = true
		}
	}
	var targets []int
	if reaper.IsPID1() {
		for _, pid := range procfs.Pids(o.proc) {
			if pid > 1 {
				targets = append(targets, pid)
			}
		}
	} else {
		for _, d := range procfs.Descendants(o.proc, os.Getpid()) {
			targets = append(targets, d.Pid)
		}
	}
	any := false
	for _, pid := range targets {
		if skip[pid] {
			continue
		}
		if st, err := procfs.StatOf(o.proc, pid); err == nil && skip[st.PGrp] {
			continue // in a live worker's group
		}
		if unix.Kill(pid, sig) == nil {
			any = true
		}
	}
	return any
}

func (o *osSystem) CheckPorts(pr Proc, passed []*sockets.Listener) PortCheck {
	ls := make([]portcheck.Listener, 0, len(passed))
	for _, l := range passed {
		if l.Spec.Network != sockets.TCP && l.Spec.Network != sockets.UDP && l.Spec.Network != sockets.Unix && l.Spec.Network != sockets.Unixgram {
			continue
		}
		ino, err := o.inodeOf(l)
		if err != nil {
			continue
		}
		ls = append(ls, portcheck.Listener{Name: l.Spec.Name, Addr: l.Bound, Inode: ino})
	}
	r := portcheck.Check(o.proc, pr.Pid(), ls)
	if !r.Checked {
		return PortCheck{}
	}
	return PortCheck{
		Checked: true, HoldsNone: !r.Ready(), Wrong: r.Wrong(), Odd: !r.OK(),
		Message: r.Message(), Server: string(r.Server),
	}
}

// inodeOf returns (and remembers) the inode of a listener's socket.
func (o *osSystem) inodeOf(l *sockets.Listener) (uint64, error) {
	if ino, ok := o.inodes[l]; ok {
		return ino, nil
	}
	ino, err := portcheck.InodeOf(l.File.Fd())
	if err != nil {
		return 0, err
	}
	if o.inodes == nil {
		o.inodes = map[*sockets.Listener]uint64{}
	}
	o.inodes[l] = ino
	return ino, nil
}

func (o *osSystem) Memory(pr Proc) (int64, error) {
	st, err := procfs.TreeStats(o.proc, pr.Pid())
	if err != nil {
		return 0, err
	}
	return int64(min(st.RSSBytes, 1<<62)), nil
}
