package sockets

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialTCP connects to addr within ctx, from an address already parsed
// (StdlibTCPAddr; a zone is refused): every net.Dial links net's name
// resolver, about 190 kB of the binary, and gm2-init's one TCP client
// (`gm2-init healthcheck`) never looks a name up. The connect is
// non-blocking and its completion is awaited in Go's poller, as net does.
// Errors read as net's ("dial tcp 127.0.0.1:9000: connect: connection
// refused"); a wait that ctx ended says ctx's error and matches both it
// and os.ErrDeadlineExceeded.
func DialTCP(ctx context.Context, addr *net.TCPAddr) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: err}
	}
	family, sa, err := tcpSockaddr(addr)
	if err != nil {
		return nil, opErr(err)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opErr(os.NewSyscallError("socket", err))
	}
	// f owns fd from here; a non-blocking descriptor is registered with
	// the poller, which is what lets the wait below honour a deadline.
	f := os.NewFile(uintptr(fd), "tcp:"+addr.String())
	defer f.Close()
	switch err := unix.Connect(fd, sa); {
	case err == nil:
	case errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EINTR):
		if err := awaitConnect(ctx, f); err != nil {
			return nil, opErr(err)
		}
	default:
		return nil, opErr(os.NewSyscallError("connect", err))
	}
	// FileConn duplicates the descriptor; f's is closed on return.
	c, err := net.FileConn(f)
	if err != nil {
		return nil, opErr(err)
	}
	return c, nil
}

// awaitConnect waits until the connect in progress on f ends, within ctx.
func awaitConnect(ctx context.Context, f *os.File) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// ctx ends the wait, its deadline and a cancel alike: a deadline in
	// the past wakes the poller. ctx is done by then, so the error below
	// is always ctx's.
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	var connErr error
	werr := rc.Write(func(fd uintptr) bool {
		// (Called once at once, then at every wake-up of the poller.)
		// As net does: SO_ERROR says how a finished connect ended;
		// getpeername tells a finished one from a wake-up before the end.
		n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = os.NewSyscallError("getsockopt", err)
			return true
		case n != 0:
			connErr = os.NewSyscallError("connect", syscall.Errno(n))
			return true
		}
		_, err = unix.Getpeername(int(fd))
		return err == nil
	})
	if werr != nil {
		if cerr := ctx.Err(); cerr != nil {
			return &endedError{ctx: cerr, wait: werr}
		}
		return werr
	}
	return connErr
}

// endedError is a connect wait that ctx ended: it reads as ctx's error
// (context deadline exceeded, context canceled) and matches both that and
// the poller's own os.ErrDeadlineExceeded.
type endedError struct{ ctx, wait error }

func (e *endedError) Error() string   { return e.ctx.Error() }
func (e *endedError) Unwrap() []error { return []error{e.ctx, e.wait} }

// tcpSockaddr is addr as connect(2) takes it; a nil IP is the loopback of
// IPv4, as net.Dial reaches ":PORT".
func tcpSockaddr(addr *net.TCPAddr) (int, unix.Sockaddr, error) {
	if addr.Port < 0 || addr.Port > 65535 {
		return 0, nil, fmt.Errorf("port %d out of range", addr.Port)
	}
	if addr.Zone != "" {
		return 0, nil, fmt.Errorf("address %s: a zone is not supported", addr)
	}
	ip := addr.IP
	if len(ip) == 0 || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip.To16() == nil {
		return 0, nil, fmt.Errorf("address %s is not an IP address", addr)
	}
	family, sa := inetSockaddr(ip, addr.Port)
	return family, sa, nil
}
