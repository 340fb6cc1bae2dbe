// Package reaper collects the exit status of every child of gm2-init: its
// workers, and the orphans the kernel re-parents to it as PID 1 (or as a
// child subreaper).
//
// Exactly one goroutine calls wait4(-1, WNOHANG). Nothing else in gm2-init
// ever waits for a process — not os.Process.Wait, not exec.Cmd.Wait — because
// whichever waiter runs first takes the status and the other fails with
// "no child processes". The reaper hands every (pid, status) to the
// supervisor, which knows which pids are workers; the rest are orphans.
//
// SIGCHLD is the trigger, but os/signal keeps one pending notification per
// signal, so several exits can arrive as one wake-up: the reaper therefore
// loops wait4 until nothing is left. A slow ticker is the safety net for a
// notification lost to a full channel; it fires rarely enough, and from a
// timerfd rather than a runtime timer (see package tick), that an idle gm2-init
// stays asleep.
package reaper

import (
	"errors"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/tick"
)

// Exit is one reaped process.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
}

// Code is the conventional exit code for the status: the exit status, or
// 128+N for a process killed by signal N (143 after SIGTERM, 137 after
// SIGKILL).
func (e Exit) Code() int {
	switch {
	case e.Status.Exited():
		return e.Status.ExitStatus()
	case e.Status.Signaled():
		return 128 + int(e.Status.Signal())
	}
	return 1
}

// String describes the status the way a user reads it.
func (e Exit) String() string {
	switch {
	case e.Status.Exited():
		return "exit status " + strconv.Itoa(e.Status.ExitStatus())
	case e.Status.Signaled():
		s := "killed by " + unix.SignalName(e.Status.Signal())
		if e.Status.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return "status " + strconv.Itoa(int(e.Status))
}

// Drain reaps every child that has exited, appending to buf. It returns
// when no exited child is left (children may still be running) or when there
// are no children at all (noChildren true).
func Drain(buf []Exit) (out []Exit, noChildren bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return buf, true
		case err != nil:
			return buf, false
		case pid <= 0:
			return buf, false
		}
		buf = append(buf, Exit{Pid: pid, Status: ws})
	}
}

// SafetyInterval is how often the reaper looks for exits without a SIGCHLD.
// Tens of seconds: an idle init must not wake up every second.
const SafetyInterval = 30 * time.Second

// Run is the reaper goroutine. It reaps on every value from sigchld (a
// channel registered with signal.Notify for SIGCHLD before the first fork)
// and every interval, and sends each non-empty batch to out. It returns when
// stop is closed.
func Run(stop <-chan struct{}, sigchld <-chan os.Signal, interval time.Duration, out chan<- []Exit) {
	t := tick.New(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-sigchld:
		case <-t.C:
		}
		batch, _ := Drain(nil)
		if len(batch) == 0 {
			continue
		}
		select {
		case out <- batch:
		case <-stop:
			return
		}
	}
}

// IsPID1 reports whether gm2-init is the init of its PID namespace.
func IsPID1() bool { return os.Getpid() == 1 }

// BecomeSubreaper makes orphaned descendants re-parent to this process
// instead of to the namespace's init, so that gm2-init still reaps them (and
// can stop them) when it is not PID 1: under `docker run --init`, in a
// Kubernetes pod with a shared process namespace, or in a terminal.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// SignalAll sends sig to every process gm2-init may stop at the end: with
// PID 1, every process of the namespace (kill(-1) skips the caller); else
// every direct child (workers are gone by then, so these are adopted
// orphans; their own children come to gm2-init, the subreaper, when they
// die, and are signalled by the next call). It reports whether any process
// was there to be signalled.
//
// kill(-1) is only right for PID 1: in a shared process namespace it would
// hit the sidecars too.
func SignalAll(sig unix.Signal) bool {
	if IsPID1() {
		return unix.Kill(-1, sig) == nil
	}
	any := false
	for _, pid := range Children() {
		if unix.Kill(pid, sig) == nil {
			any = true
		}
	}
	return any
}

// Children lists the direct children of this process.
func Children() []int { return procfs.Children("/proc", os.Getpid()) }
