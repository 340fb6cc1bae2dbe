package sockets

import (
	"errors"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// fdScanLimit bounds the fallback scan of descriptor numbers when /proc is
// not mounted: RLIMIT_NOFILE may be a million.
const fdScanLimit = 1 << 16

// CloseInherited makes sure that no descriptor gm2-init inherited reaches
// its workers except the sockets it takes over, fds FirstFD …
// FirstFD+keep-1 (LISTEN_FDS, when LISTEN_PID is gm2-init's). It must run
// before anything else is opened, and never in the exec shim, whose fds 3…
// are the worker's listeners.
//
// Whatever a container runtime, a wrapper script (`exec 7<file`) or a
// parent left open would otherwise be inherited by every worker, for its
// whole life: files, pipes whose reader then never sees EOF, sockets. So:
//
//   - every descriptor above 2 that is not close-on-exec and not kept is
//     closed. Close-on-exec is how the inherited ones are told from
//     gm2-init's own: whatever survived the execve of gm2-init lacks the
//     flag, while the Go runtime opens everything with O_CLOEXEC — and does
//     open files before main (Go 1.25+ keeps the cgroup CPU limit files open
//     to follow the limit), which must not be closed;
//   - then every descriptor above 2, the kept sockets included, is marked
//     close-on-exec with close_range(2) (Linux 5.11+), or one by one for the
//     kept sockets on older kernels. Workers get the sockets explicitly, at
//     fixed numbers (os.StartProcess clears the flag on the copies it
//     places).
//
// The list of descriptors comes from /proc/self/fd, or, without /proc, from
// trying every number up to the descriptor limit (at most 65,536).
// CloseInherited returns the descriptors it closed.
func CloseInherited(keep int) ([]int, error) {
	return closeInherited(keep, openFDs)
}

// closeInherited is CloseInherited with the listing of open descriptors as
// a parameter (tests take the path without /proc).
func closeInherited(keep int, list func() ([]int, error)) ([]int, error) {
	var closed []int
	check := func(fd int) {
		if fd <= 2 || (fd >= FirstFD && fd < FirstFD+keep) {
			return
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			return // not open (the listing's own fd, closed by now), or gm2-init's
		}
		if unix.Close(fd) == nil {
			closed = append(closed, fd)
		}
	}
	if fds, err := list(); err == nil {
		for _, fd := range fds {
			check(fd)
		}
	} else {
		limit := uint64(fdScanLimit)
		var rl unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < limit {
			limit = rl.Cur
		}
		for fd := range int(limit) {
			check(fd)
		}
	}
	if err := unix.CloseRange(FirstFD, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return closed, nil
	}
	// ENOSYS or EINVAL: a kernel older than 5.11. Everything inherited but
	// the kept sockets is closed by now.
	var errs []error
	for fd := FirstFD; fd < FirstFD+keep; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			errs = append(errs, &os.SyscallError{Syscall: "fcntl F_SETFD fd " + strconv.Itoa(fd), Err: err})
		}
	}
	return closed, errors.Join(errs...)
}

// openFDs lists the open descriptors.
func openFDs() ([]int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	fds := make([]int, 0, len(names))
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}
