package notify

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// EnvNotifySocket is the environment variable that tells a worker where to
// send notify datagrams (the value is Socket.Env()).
const EnvNotifySocket = "NOTIFY_SOCKET"

const (
	// socketFile is the socket's name inside the private directory.
	socketFile = "notify.sock"

	// recvBufSize is the largest datagram accepted. The protocol's messages
	// are a few dozen bytes; the headroom is for long STATUS= texts. A longer
	// datagram is dropped whole (as systemd does) instead of being parsed
	// from a truncated copy, which could cut a line in half.
	recvBufSize = 16 << 10

	// maxSunPath is the longest path a sockaddr_un holds with its
	// terminating NUL. Longer paths cannot be bound portably, and clients
	// (C's strncpy, Ruby) would not reach them anyway.
	maxSunPath = len(unix.RawSockaddrUnix{}.Path) - 1

	// shmDir is tried after the base directory and before the abstract
	// namespace: with a read-only root filesystem Docker and Kubernetes
	// still mount a writable tmpfs there, and a filesystem path works with
	// every client, while some (Ruby's sd_notify, which puma bundles) do
	// not understand "@" and would fail to send — fatal for puma.
	shmDir = "/dev/shm"
)

// errNoCredentials marks a datagram that arrived without SCM_CREDENTIALS.
// With SO_PASSCRED on the receiving socket the kernel always attaches them,
// so this means something odd happened (e.g. a control-buffer truncation).
var errNoCredentials = errors.New("no SCM_CREDENTIALS")

// Config tunes Listen. The zero value is valid.
type Config struct {
	// Dirs are the base directories tried, in order, for the private
	// directory that holds the socket. Empty means DefaultDirs("").
	// When none works, the socket goes to the abstract namespace.
	Dirs []string

	// OnDrop, if set, is called (from Receive's goroutine) for each
	// datagram Receive discards: without credentials, or too long. The
	// error says why and, when known, from which pid. Deciding whether the
	// sender is a worker is the caller's job and is not reported here.
	// OnDrop runs while Receive holds its lock: it must not call Receive.
	OnDrop func(error)
}

// DefaultDirs lists the base directories Listen tries: baseDir (or
// os.TempDir() when empty), then /dev/shm.
func DefaultDirs(baseDir string) []string {
	if baseDir == "" {
		baseDir = os.TempDir()
	}
	dirs := []string{baseDir}
	if filepath.Clean(baseDir) != shmDir {
		dirs = append(dirs, shmDir)
	}
	return dirs
}

// Socket is the notify socket: one unix datagram socket shared by all
// workers. It must stay open until the last worker is gone, because some
// clients treat a failed send as fatal (puma dies, python-systemd raises).
type Socket struct {
	conn     *net.UnixConn
	env      string // NOTIFY_SOCKET value
	dir      string // private directory; "" for the abstract namespace
	fallback error  // why earlier locations were not used; nil if the first worked
	onDrop   func(error)

	// mu serializes Receive, which reuses buf and oob across calls.
	mu  sync.Mutex
	buf []byte
	oob []byte

	closeOnce sync.Once
	closeErr  error
}

// Listen creates a private directory (mode 0700, random name) under baseDir
// ("" means os.TempDir()) and binds a SOCK_DGRAM, close-on-exec unix socket
// with SO_PASSCRED in it. If that fails it tries /dev/shm, then an abstract
// socket with a random, unguessable name; for an abstract socket the
// SCM_CREDENTIALS check done by the caller is the only gate, since abstract
// sockets have no file permissions.
func Listen(baseDir string) (*Socket, error) {
	return Config{Dirs: DefaultDirs(baseDir)}.Listen()
}

// Listen binds the socket as described for the package-level Listen, using
// c.Dirs as the directories to try.
func (c Config) Listen() (*Socket, error) {
	dirs := c.Dirs
	if len(dirs) == 0 {
		dirs = DefaultDirs("")
	}
	var errs []error
	for _, base := range dirs {
		s, err := listenInDir(base)
		if err == nil {
			s.fallback = errors.Join(errs...)
			s.onDrop = c.OnDrop
			return s, nil
		}
		errs = append(errs, err)
	}
	s, err := listenAbstract()
	if err != nil {
		errs = append(errs, err)
		return nil, fmt.Errorf("notify: no socket could be bound: %w", errors.Join(errs...))
	}
	s.fallback = errors.Join(errs...)
	s.onDrop = c.OnDrop
	return s, nil
}

// listenInDir binds the socket in a new private directory under base.
func listenInDir(base string) (*Socket, error) {
	// NOTIFY_SOCKET must be absolute: workers run with their own cwd, and
	// libsystemd rejects relative paths.
	base, err := filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("notify: base directory %q: %w", base, err)
	}
	dir, err := os.MkdirTemp(base, "gm2-init-")
	if err != nil {
		return nil, fmt.Errorf("notify: private directory in %s: %w", base, err)
	}
	path := filepath.Join(dir, socketFile)
	if len(path) > maxSunPath {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("notify: socket path %s: %d bytes, longer than the %d a unix socket address holds",
			path, len(path), maxSunPath)
	}
	conn, err := bindPassCred(path)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// The private directory is the access gate; a fixed socket mode makes
	// the result independent of the umask gm2-init was started with.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = conn.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("notify: chmod %s: %w", path, err)
	}
	return newSocket(conn, path, dir), nil
}

// listenAbstract binds a socket in the abstract namespace.
func listenAbstract() (*Socket, error) {
	// rand.Text has 128 bits of entropy: another process in the network
	// namespace can neither guess the name nor squat it in advance.
	name := "@gm2-init-" + rand.Text()
	conn, err := bindPassCred(name)
	if err != nil {
		return nil, err
	}
	return newSocket(conn, name, ""), nil
}

func newSocket(conn *net.UnixConn, env, dir string) *Socket {
	return &Socket{
		conn: conn,
		env:  env,
		dir:  dir,
		buf:  make([]byte, recvBufSize),
		oob:  make([]byte, unix.CmsgSpace(unix.SizeofUcred)),
	}
}

// bindPassCred binds a unix datagram socket at name ("@…" = abstract) and
// turns on SO_PASSCRED so that every datagram carries the sender's pid. It
// goes through package net so that the fd is non-blocking and in the
// runtime poller: Close then reliably wakes a goroutine blocked in Receive,
// which close(2) on a descriptor blocked in recvmsg would not.
func bindPassCred(name string) (*net.UnixConn, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify: bind %s: %w", name, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("notify: socket %s: %w", name, err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		serr = err
	}
	if serr != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("notify: SO_PASSCRED on %s: %w", name, serr)
	}
	return conn, nil
}

// Env returns the value for NOTIFY_SOCKET: an absolute path, or "@name" for
// the abstract namespace. It is never empty.
func (s *Socket) Env() string { return s.env }

// Abstract reports whether the socket lives in the abstract namespace.
func (s *Socket) Abstract() bool { return s.dir == "" }

// FallbackReason explains why the socket is not in the first directory tried
// (for a log line), or returns nil if it is.
func (s *Socket) FallbackReason() error { return s.fallback }

// Chown hands the private directory and the socket to uid:gid, for workers
// that run as another user: the 0700 directory would otherwise keep them
// from sending. It does nothing for an abstract socket.
func (s *Socket) Chown(uid, gid int) error {
	if s.dir == "" {
		return nil
	}
	for _, p := range []string{s.dir, filepath.Join(s.dir, socketFile)} {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("notify: chown %s to %d:%d: %w", p, uid, gid, err)
		}
	}
	return nil
}

// Receive blocks until the next datagram that carries credentials arrives
// and returns it parsed, with Pid set to the sender's pid. Datagrams without
// credentials or longer than the receive buffer are discarded (and reported
// to Config.OnDrop); file descriptors a sender attached are closed, never
// kept. Any datagram with credentials is returned, even one that carries no
// key Message knows.
//
// After Close, Receive returns an error wrapping net.ErrClosed. Other errors
// are unexpected and returned as is; the caller may retry. EINTR never
// surfaces: the runtime retries it.
func (s *Socket) Receive() (Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		n, oobn, flags, _, err := s.conn.ReadMsgUnix(s.buf, s.oob)
		if err != nil {
			return Message{}, fmt.Errorf("notify: receive on %s: %w", s.env, err)
		}
		pid, err := senderPid(s.oob[:oobn])
		if err != nil {
			s.drop(fmt.Errorf("notify: dropped %d-byte datagram on %s: %w", n, s.env, err))
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			s.drop(fmt.Errorf("notify: dropped datagram from pid %d on %s: longer than %d bytes",
				pid, s.env, len(s.buf)))
			continue
		}
		m := Parse(s.buf[:n])
		m.Pid = pid
		return m, nil
	}
}

func (s *Socket) drop(err error) {
	if s.onDrop != nil {
		s.onDrop(err)
	}
}

// senderPid returns the pid from the SCM_CREDENTIALS control message in oob
// and closes any descriptors passed with SCM_RIGHTS, so that a sender cannot
// leak descriptors into gm2-init. (The control buffer is sized for the
// credentials alone, which the kernel puts first; it then discards passed
// descriptors that do not fit, so this is a second line of defence.)
func senderPid(oob []byte) (int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, fmt.Errorf("control message: %w", err)
	}
	pid, found := 0, false
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch m.Header.Type {
		case unix.SCM_CREDENTIALS:
			cred, err := unix.ParseUnixCredentials(m)
			if err == nil && !found {
				pid, found = int(cred.Pid), true
			}
		case unix.SCM_RIGHTS:
			fds, err := unix.ParseUnixRights(m)
			if err == nil {
				for _, fd := range fds {
					_ = unix.Close(fd)
				}
			}
		}
	}
	if !found {
		return 0, errNoCredentials
	}
	if pid <= 0 {
		// The kernel reports 0 for a sender whose pid has no number in our
		// pid namespace: it cannot be one of our workers.
		return 0, fmt.Errorf("credentials carry pid %d: sender outside this pid namespace", pid)
	}
	return pid, nil
}

// Close closes the socket, which makes a blocked Receive return, and removes
// the socket file and the private directory. It is safe to call more than
// once; later calls return the first call's result.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if err := s.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("notify: close %s: %w", s.env, err))
		}
		if s.dir != "" {
			if err := os.RemoveAll(s.dir); err != nil {
				errs = append(errs, fmt.Errorf("notify: remove %s: %w", s.dir, err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
