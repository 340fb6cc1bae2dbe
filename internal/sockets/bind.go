package sockets

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Listener is a bound socket that gm2-init holds for its workers.
type Listener struct {
	Spec Spec
	// Bound is the address the kernel reports (the real port when the spec
	// asked for port 0; the path for unix sockets).
	Bound string
	// File holds gm2-init's descriptor. It is a plain blocking descriptor that
	// is never registered with the Go runtime's poller: gm2-init never
	// accepts or reads on it, and must not be woken by the traffic it serves.
	File *os.File
	// Inherited marks a socket gm2-init's own parent passed (LISTEN_FDS)
	// rather than one it bound: its unix socket file, if any, is the
	// parent's, and gm2-init never removes it.
	Inherited bool
}

// BindError is a failure to bind one listener. Usage tells whether the value
// itself is wrong (exit status 2: a missing directory, a path that is not a
// socket) rather than the system state (exit status 1: the port is in use).
type BindError struct {
	Spec  Spec
	Err   error
	Usage bool
}

func (e *BindError) Error() string { return fmt.Sprintf("bind %s: %v", e.Spec.Raw, e.Err) }
func (e *BindError) Unwrap() error { return e.Err }

// Bind binds every spec, in order. On error nothing stays bound: the
// listeners already opened are closed (and their unix socket files removed).
func Bind(specs []Spec) ([]*Listener, error) {
	out := make([]*Listener, 0, len(specs))
	for _, s := range specs {
		l, err := bindOne(s)
		if err != nil {
			CloseAll(out)
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// CloseAll closes the listeners and removes the unix socket files gm2-init
// created, so that the next start does not find a stale file.
func CloseAll(ls []*Listener) {
	for _, l := range ls {
		l.File.Close()
		if !l.Inherited && (l.Spec.Network == Unix || l.Spec.Network == Unixgram) {
			os.Remove(l.Spec.Addr)
		}
	}
}

// Files returns the descriptors in order, for a worker's ExtraFiles.
func Files(ls []*Listener) []*os.File {
	fs := make([]*os.File, len(ls))
	for i, l := range ls {
		fs[i] = l.File
	}
	return fs
}

// Names returns the LISTEN_FDNAMES value.
func Names(ls []*Listener) string {
	n := make([]string, len(ls))
	for i, l := range ls {
		n[i] = l.Spec.Name
	}
	return strings.Join(n, ":")
}

// listenBacklog asks for the largest queue; the kernel caps it at
// net.core.somaxconn. A deep queue is what absorbs connections while every
// worker of a slot is being replaced.
const listenBacklog = 65535

func bindOne(s Spec) (*Listener, error) {
	switch s.Network {
	case Unix, Unixgram:
		return bindUnix(s)
	default:
		return bindInet(s)
	}
}

func bindInet(s Spec) (*Listener, error) {
	host, portStr, _ := net.SplitHostPort(s.Addr)
	port, _ := strconv.Atoi(portStr)
	typ := unix.SOCK_STREAM
	if s.Network == UDP {
		typ = unix.SOCK_DGRAM
	}
	if host == "localhost" {
		host = "127.0.0.1"
		if s.Family == "6" {
			host = "::1"
		}
	}
	var ip net.IP
	dual := false
	switch {
	case host != "":
		ip = net.ParseIP(host)
		dual = s.DualStack && ip.Equal(net.IPv6unspecified)
	case s.Family == "4":
		ip = net.IPv4zero
	default:
		// Every interface: IPv6 with V6ONLY off accepts IPv4 too; fall back
		// to IPv4 on hosts (or containers) without IPv6.
		ip, dual = net.IPv6unspecified, s.Family == ""
	}
	fd, err := inetSocket(ip, typ)
	if err != nil && host == "" && s.Family == "" {
		ip, dual = net.IPv4zero, false
		fd, err = inetSocket(ip, typ)
	}
	if err != nil {
		return nil, &BindError{Spec: s, Err: err}
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	family, sa := inetSockaddr(ip, port)
	if family == unix.AF_INET6 {
		v6only := 1
		if dual {
			v6only = 0
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return nil, &BindError{Spec: s, Err: fmt.Errorf("set IPV6_V6ONLY: %w", err)}
		}
	}
	if typ == unix.SOCK_STREAM || s.ReuseAddr {
		// Lets a restarted gm2-init bind while old connections sit in TIME_WAIT.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return nil, &BindError{Spec: s, Err: fmt.Errorf("set SO_REUSEADDR: %w", err)}
		}
	}
	if typ == unix.SOCK_STREAM {
		// Accepted connections inherit TCP_NODELAY from the listener.
		// Go, Node and gunicorn set it on every connection themselves; a
		// server that takes a passed socket for a unix one does not, and
		// Nagle's algorithm then meets the client's delayed ACK: about
		// 40 ms on every keep-alive response (uvicorn --fd 3, which wraps
		// the descriptor as AF_UNIX).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return nil, &BindError{Spec: s, Err: fmt.Errorf("set TCP_NODELAY: %w", err)}
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, &BindError{Spec: s, Err: explain(err)}
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, listenBacklog); err != nil {
			return nil, &BindError{Spec: s, Err: fmt.Errorf("listen: %w", err)}
		}
	}
	bound := s.Addr
	if got, err := unix.Getsockname(fd); err == nil {
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			bound = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
		case *unix.SockaddrInet6:
			bound = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
		}
	}
	ok = true
	return &Listener{Spec: s, Bound: bound, File: os.NewFile(uintptr(fd), s.String())}, nil
}

// inetSockaddr is ip and port as bind(2) and connect(2) take them, with
// the socket family they need: IPv4 for an IPv4 (or IPv4-mapped) address.
func inetSockaddr(ip net.IP, port int) (int, unix.Sockaddr) {
	if ip4 := ip.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip4)
		return unix.AF_INET, sa
	}
	sa := &unix.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip.To16())
	return unix.AF_INET6, sa
}

func inetSocket(ip net.IP, typ int) (int, error) {
	family, _ := inetSockaddr(ip, 0)
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	return fd, nil
}

// explain turns the common bind errnos into text a user can act on.
func explain(err error) error {
	switch {
	case errors.Is(err, unix.EADDRINUSE):
		return explained("address already in use (another process listens there)", err)
	case errors.Is(err, unix.EACCES):
		return explained("permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)", err)
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return fmt.Errorf("no local interface has that address: %w", err)
	}
	return err
}

// explained is err (an errno, still found by errors.Is) with msg as its
// text: msg starts with the errno's own words, which are not repeated
// after it ("address already in use (…): address already in use").
func explained(msg string, err error) error { return &explainedError{msg, err} }

type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.err }

// socketMode is the mode of a unix socket file: the same default as
// systemd's SocketMode=, so that a client running as another user in the
// container (a sidecar proxy) can connect. Restrict access with the
// permissions of the directory.
const socketMode = 0o666

func bindUnix(s Spec) (*Listener, error) {
	dir := filepath.Dir(s.Addr)
	if st, err := os.Stat(dir); err != nil {
		// The path error names dir again: keep its cause only.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = explained(fmt.Sprintf("directory %s: %v", dir, pe.Err), err)
		} else {
			err = fmt.Errorf("directory %s: %w", dir, err)
		}
		return nil, &BindError{Spec: s, Err: err, Usage: errors.Is(err, os.ErrNotExist)}
	} else if !st.IsDir() {
		return nil, &BindError{Spec: s, Err: fmt.Errorf("%s is not a directory", dir), Usage: true}
	}
	if err := removeStale(s); err != nil {
		return nil, err
	}
	typ := unix.SOCK_STREAM
	if s.Network == Unixgram {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &BindError{Spec: s, Err: fmt.Errorf("socket: %w", err)}
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: s.Addr}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EACCES) {
			err = explained(fmt.Sprintf("permission denied (the directory %s is not writable by this user)", dir), err)
		} else {
			err = explain(err)
		}
		return nil, &BindError{Spec: s, Err: err}
	}
	fail := func(err error) (*Listener, error) {
		unix.Close(fd)
		os.Remove(s.Addr)
		return nil, &BindError{Spec: s, Err: err}
	}
	if err := os.Chmod(s.Addr, socketMode); err != nil {
		return fail(fmt.Errorf("chmod: %w", err))
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, listenBacklog); err != nil {
			return fail(fmt.Errorf("listen: %w", err))
		}
	}
	return &Listener{Spec: s, Bound: s.Addr, File: os.NewFile(uintptr(fd), s.String())}, nil
}

// removeStale deletes a socket file left by a previous run that crashed, but
// never a live socket (someone answers on it) nor a file that is no socket.
func removeStale(s Spec) error {
	st, err := os.Lstat(s.Addr)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &BindError{Spec: s, Err: err}
	}
	if st.Mode()&os.ModeSocket == 0 {
		return &BindError{Spec: s, Err: fmt.Errorf("%s exists and is not a socket; refusing to remove it", s.Addr), Usage: true}
	}
	// Only a refused connection proves that nobody is behind the file. A
	// socket of the other type (EPROTOTYPE), a full backlog (EAGAIN) or a
	// permission error all mean that it may well be alive.
	alive := fmt.Errorf("%s is in use by another process (a live socket); refusing to remove it", s.Addr)
	for _, network := range []string{"unix", "unixgram"} {
		c, err := net.DialUnix(network, nil, &net.UnixAddr{Name: s.Addr, Net: network})
		switch {
		case err == nil:
			c.Close()
			return &BindError{Spec: s, Err: alive}
		case errors.Is(err, unix.EPROTOTYPE):
			// Try the other type: a live socket of one type refuses the
			// other with EPROTOTYPE, and a stale one refuses both.
			continue
		case errors.Is(err, unix.ECONNREFUSED):
			if err := os.Remove(s.Addr); err != nil && !errors.Is(err, os.ErrNotExist) {
				return &BindError{Spec: s, Err: fmt.Errorf("remove stale socket: %w", err)}
			}
			return nil
		case errors.Is(err, unix.EAGAIN):
			return &BindError{Spec: s, Err: alive}
		case errors.Is(err, os.ErrNotExist):
			return nil // removed meanwhile
		default:
			return &BindError{Spec: s, Err: fmt.Errorf("cannot tell whether the socket %s is stale: %w", s.Addr, err)}
		}
	}
	return &BindError{Spec: s, Err: alive}
}
