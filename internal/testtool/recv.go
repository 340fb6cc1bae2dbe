package testtool

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Recvmsg receives one message from the socket fd (as unix.Recvmsg with
// flags), waiting at most d for it; an expired wait is
// os.ErrDeadlineExceeded.
//
// The tests' raw sockets must not wait with SO_RCVTIMEO: a blocking recvmsg
// on a socket with a receive timeout fails with EINTR when a signal lands
// on its thread, SA_RESTART or not (signal(7)), and the Go runtime sends
// its threads SIGURG to preempt goroutines, more often on a loaded
// machine. Recvmsg polls instead, and EINTR only means waiting on, within
// the one deadline.
func Recvmsg(fd int, p, oob []byte, flags int, d time.Duration) (n, oobn int, err error) {
	deadline := time.Now().Add(d)
	for {
		n, oobn, _, _, err = unix.Recvmsg(fd, p, oob, flags|unix.MSG_DONTWAIT)
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return n, oobn, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return 0, 0, os.ErrDeadlineExceeded
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, 0, fmt.Errorf("poll: %w", err)
		}
	}
}
