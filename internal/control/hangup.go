package control

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// watchHangup calls hangup when the client goes away while its command
// runs (Ctrl-C on `gm2-init reload`): the wait ends, the command does not.
// stop ends the watch and returns once its goroutine is gone.
//
// A client that only shuts down its write side after the request (socat,
// `nc -N`, a script that closes stdin) still waits for the answer, so end
// of file alone is not a hang-up. On a unix stream socket the two differ
// in poll(2): the peer's shutdown(SHUT_WR) raises POLLRDHUP only, its
// close (or exit) raises POLLHUP. After end of file the watch therefore
// polls the socket for POLLHUP, next to a pipe with which stop wakes it.
func watchHangup(c *net.UnixConn, hangup func()) (stop func()) {
	var wake [2]int
	pipeErr := unix.Pipe2(wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [64]byte
		for {
			_, err := c.Read(b[:])
			switch {
			case err == nil:
				continue // bytes after the request: not a hang-up
			case errors.Is(err, io.EOF) && pipeErr == nil:
				if waitHUP(c, wake[0]) {
					hangup()
				}
			case errors.Is(err, io.EOF):
				hangup() // no pipe to wake a poll: end of file must do
			case errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded):
				// stop, or the server closing the connection.
			default:
				hangup() // ECONNRESET and the like
			}
			return
		}
	}()
	return func() {
		c.SetReadDeadline(time.Now())
		if pipeErr == nil {
			unix.Write(wake[1], []byte{0})
		}
		<-done
		if pipeErr == nil {
			unix.Close(wake[0])
			unix.Close(wake[1])
		}
	}
}

// waitHUP polls the connection (for POLLHUP, which poll always reports)
// and wake (for input); it tells whether the connection hung up.
func waitHUP(c *net.UnixConn, wake int) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	hup := true
	cerr := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}, {Fd: int32(wake), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			hup = err != nil || fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
			return
		}
	})
	return cerr != nil || hup
}
