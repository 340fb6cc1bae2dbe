package spawn

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"
)

// takeTerminalBack makes gm2-init's own process group the foreground group
// of the terminal on its stdin again, if the worker group pgid still holds
// it, or a group with no process left does (a shell the worker ran, such as
// bash -i, gives the terminal to each job's own group). It is called once
// nothing of a worker given the terminal is left (Release): otherwise the
// terminal would stay with a group that no longer exists, and Ctrl-C typed
// into `docker run -it` would reach nobody — after a scale-up from one
// worker, whose restarted or reloaded worker does not get the terminal, or
// while a single worker waits out its restart delay. A worker started later
// with Foreground takes it again. When a live group holds the terminal (the
// next worker already took it), nothing changes.
//
// A process outside the foreground group that calls tcsetpgrp is sent
// SIGTTOU, unless SIGTTOU is blocked or ignored by the calling thread
// (tty_check_change); gm2-init handles SIGTTOU (one worker fewer), so it is
// blocked on this locked thread for the call. Errors are left unreported:
// stdin is no terminal, or one that hung up, and nothing else can be done.
func takeTerminalBack(pgid int) {
	fg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	if err != nil || fg <= 0 || fg != pgid && !errors.Is(unix.Kill(-fg, 0), unix.ESRCH) {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var block, old unix.Sigset_t
	sig := uint(unix.SIGTTOU) - 1
	block.Val[sig/64] |= 1 << (sig % 64)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &block, &old); err != nil {
		return
	}
	_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
}
