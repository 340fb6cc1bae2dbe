package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Line is one line of a process's output with the time the driver read it.
type Line struct {
	At   time.Time
	Text string
}

// Proc is a process the driver started. Its stdout and stderr share one
// pipe (like 2>&1); every line is timestamped on arrival, kept in memory and
// copied to a log file. Procs are stopped by pid, never by name.
type Proc struct {
	Name    string
	Pid     int
	Started time.Time // just before fork+exec
	Execed  time.Time // when exec had succeeded (exec.Cmd.Start returned)

	Exited time.Time // when the driver saw it exit

	cmd      *exec.Cmd
	done     chan struct{}
	readDone chan struct{}
	err      error

	mu    sync.Mutex
	lines []Line
}

var (
	liveMu sync.Mutex
	live   = map[*Proc]bool{}
)

// start runs argv with env added to the driver's environment. The log goes
// to logPath ("" = none).
func start(name string, argv []string, env []string, dir, logPath string) (*Proc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = w, w
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), readDone: make(chan struct{})}
	var logf *os.File
	if logPath != "" {
		if logf, err = os.Create(logPath); err != nil {
			r.Close()
			w.Close()
			return nil, err
		}
		fmt.Fprintf(logf, "# %s\n", strings.Join(argv, " "))
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.Execed = time.Now()
	w.Close()
	p.Pid = cmd.Process.Pid
	liveMu.Lock()
	live[p] = true
	liveMu.Unlock()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			l := Line{At: time.Now(), Text: sc.Text()}
			p.mu.Lock()
			p.lines = append(p.lines, l)
			p.mu.Unlock()
			if logf != nil {
				fmt.Fprintf(logf, "[+%.6f] %s\n", l.At.Sub(p.Started).Seconds(), l.Text)
			}
		}
		r.Close()
		if logf != nil {
			logf.Close()
		}
		close(p.readDone)
	}()
	go func() {
		p.err = cmd.Wait()
		p.Exited = time.Now()
		liveMu.Lock()
		delete(live, p)
		liveMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Mark is the number of lines read so far, for WaitLines.
func (p *Proc) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// Lines returns a copy of the lines read from index from on.
func (p *Proc) Lines(from int) []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from > len(p.lines) {
		from = len(p.lines)
	}
	return append([]Line(nil), p.lines[from:]...)
}

// WaitLines waits until n lines after index from match, and returns the n-th.
func (p *Proc) WaitLines(from int, match func(string) bool, n int, timeout time.Duration) (Line, error) {
	deadline := time.Now().Add(timeout)
	next, seen := from, 0
	for {
		p.mu.Lock()
		for ; next < len(p.lines); next++ {
			if match(p.lines[next].Text) {
				seen++
				if seen == n {
					l := p.lines[next]
					p.mu.Unlock()
					return l, nil
				}
			}
		}
		p.mu.Unlock()
		if !p.Alive() {
			// Let the reader catch up with what the process printed last.
			time.Sleep(50 * time.Millisecond)
			p.mu.Lock()
			more := next < len(p.lines)
			p.mu.Unlock()
			if !more {
				return Line{}, fmt.Errorf("%s exited (%v) after %d of %d matching lines", p.Name, p.err, seen, n)
			}
			continue
		}
		if time.Now().After(deadline) {
			return Line{}, fmt.Errorf("%s: %d of %d matching lines after %s", p.Name, seen, n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Signal sends sig to the process (by pid) while it runs.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("%s has exited", p.Name)
	}
	return syscall.Kill(p.Pid, sig)
}

// Wait waits up to d for the process to exit.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop sends sig to the process, waits up to grace, then SIGKILLs it. Every
// descendant seen before the signal that is still there afterwards (same pid
// and start time) is then killed by pid too. It returns how many
// descendants had to be killed that way.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) int {
	if !p.Alive() {
		return 0
	}
	desc := descendants(p.Pid)
	syscall.Kill(p.Pid, sig)
	if !p.Wait(grace) {
		logf("warning: %s (pid %d) still running %s after %s; SIGKILL", p.Name, p.Pid, grace, signalName(sig))
		syscall.Kill(p.Pid, syscall.SIGKILL)
		p.Wait(5 * time.Second)
	}
	left := 0
	deadline := time.Now().Add(2 * time.Second)
	for _, d := range desc {
		for sameProcess(d) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if sameProcess(d) {
			syscall.Kill(d.pid, syscall.SIGKILL)
			left++
		}
	}
	if left > 0 {
		logf("warning: %d processes started under %s outlived it; killed by pid", left, p.Name)
	}
	return left
}

// stopAll stops every process still running (on interrupt or error).
func stopAll() {
	liveMu.Lock()
	ps := make([]*Proc, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	for _, p := range ps {
		p.Stop(syscall.SIGTERM, 10*time.Second)
	}
}

type procID struct {
	pid   int
	start uint64 // start time in clock ticks since boot: tells a reused pid apart
}

func sameProcess(id procID) bool {
	st, ok := readStat(id.pid)
	return ok && st.start == id.start && st.state != 'Z'
}

type stat struct {
	ppid         int
	state        byte
	utime, stime uint64
	start        uint64
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return stat{}, false
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 20 {
		return stat{}, false
	}
	var st stat
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(f[1])
	st.utime, _ = strconv.ParseUint(f[11], 10, 64)
	st.stime, _ = strconv.ParseUint(f[12], 10, 64)
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, true
}

// descendants lists every process below pid.
func descendants(pid int) []procID {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]procID{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(n); ok {
			kids[st.ppid] = append(kids[st.ppid], procID{n, st.start})
		}
	}
	var out []procID
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			out = append(out, k)
			queue = append(queue, k.pid)
		}
	}
	return out
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

// runTool runs a command that ends by itself (a load tool, a CLI) and
// returns its combined output; it is killed (by pid) after timeout.
func runTool(timeout time.Duration, env []string, argv ...string) (string, time.Duration, error) {
	p, err := start(argv[0], argv, env, "", "")
	if err != nil {
		return "", 0, err
	}
	if !p.Wait(timeout) {
		syscall.Kill(p.Pid, syscall.SIGKILL)
		p.Wait(5 * time.Second)
		return joinLines(p.Lines(0)), p.Exited.Sub(p.Started), fmt.Errorf("%s: killed after %s", argv[0], timeout)
	}
	// The output reader may still be draining the pipe.
	select {
	case <-p.readDone:
	case <-time.After(time.Second):
	}
	return joinLines(p.Lines(0)), p.Exited.Sub(p.Started), p.err
}

func joinLines(ls []Line) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}
