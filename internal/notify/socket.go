package notify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

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

	// dirMode and socketMode: see Listen for why others may send.
	dirMode    = 0o711
	socketMode = 0o666

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

	// OnDrop, if set, is told (from Receive's goroutine) about the
	// datagrams Receive discards: without credentials, or too long. It is
	// rate-limited per sender (see Limiter): the first drop is reported at
	// once, later ones at most once per DropInterval with their count.
	// Deciding whether the sender is a worker is the caller's job and is
	// not reported here. OnDrop runs while Receive holds its lock: it must
	// not call Receive.
	OnDrop func(Drop)

	// DropInterval is the rate limit of OnDrop per sender;
	// DefaultDropInterval when 0.
	DropInterval time.Duration
}

// Drop reports datagrams that Receive discarded.
type Drop struct {
	// Pid is the sender (0 when unknown; OtherSenders for senders lumped
	// together by the rate limit).
	Pid int
	// Count is how many datagrams this report stands for: 1 for a sender's
	// first, more when the rate limit held some back.
	Count uint64
	// Err says why the latest of them was dropped; nil when the report only
	// carries a count held back earlier (reported by Close or by a later
	// datagram).
	Err error
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
	dir      string // its own directory; "" for the abstract namespace
	fallback error  // why earlier locations were not used; nil if the first worked
	onDrop   func(Drop)
	drops    *Limiter

	// mu serializes Receive, which reuses buf and oob across calls.
	mu  sync.Mutex
	buf []byte
	oob []byte

	closeOnce sync.Once
	closeErr  error
}

// Listen creates a directory of its own (mode 0711, random name) under
// baseDir ("" means os.TempDir()) and binds a SOCK_DGRAM, close-on-exec unix
// socket with SO_PASSCRED in it, mode 0666. If that fails it tries /dev/shm,
// then an abstract socket with a random, unguessable name.
//
// Who may send: any process, whatever its uid — a worker that drops its
// privileges (setpriv, gosu, su-exec in an entrypoint script)
// must still be able to say READY=1. The gate is the SCM_CREDENTIALS check
// the caller makes on every datagram (Message.Pid must be a worker or a
// descendant of one), which is systemd's own model: /run/systemd/notify is
// writable by everyone. File permissions could not be the gate anyway: the
// socket's path is listed in /proc/net/unix for every process of the network
// namespace. The directory is 0711 so that nobody else can list it, nor
// remove or replace the socket in it.
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
			s.drops = NewLimiter(c.DropInterval, 0)
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
	s.drops = NewLimiter(c.DropInterval, 0)
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
		return nil, fmt.Errorf("notify: directory in %s: %w", base, err)
	}
	// MkdirTemp makes it 0700; others need to pass through (see Listen).
	if err := os.Chmod(dir, dirMode); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("notify: chmod %s: %w", dir, err)
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
	// A fixed mode makes the result independent of the umask gm2-init was
	// started with; sending needs write permission on the socket.
	if err := os.Chmod(path, socketMode); err != nil {
		_ = conn.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("notify: chmod %s: %w", path, err)
	}
	return newSocket(conn, path, dir), nil
}

// listenAbstract binds a socket in the abstract namespace.
func listenAbstract() (*Socket, error) {
	// 128 random bits: another process in the network namespace cannot
	// squat the name in advance. (It can read it in /proc/net/unix once it
	// is bound, as for a path: the SCM_CREDENTIALS check is the gate.)
	token, err := randomToken()
	if err != nil {
		return nil, fmt.Errorf("notify: abstract socket name: %w", err)
	}
	name := "@gm2-init-" + token
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
			s.drop(0, fmt.Errorf("notify: dropped %d-byte datagram on %s: %w", n, s.env, err))
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			s.drop(pid, fmt.Errorf("notify: dropped datagram from pid %d on %s: longer than %d bytes",
				pid, s.env, len(s.buf)))
			continue
		}
		s.flushDrops(time.Now())
		m := Parse(s.buf[:n])
		m.Pid = pid
		return m, nil
	}
}

// drop reports a discarded datagram through the rate limit.
func (s *Socket) drop(pid int, err error) {
	if s.onDrop == nil {
		return
	}
	now := time.Now()
	s.flushDrops(now)
	if r, ok := s.drops.Note(pid, now); ok {
		s.onDrop(Drop{Pid: r.Sender, Count: r.Count, Err: err})
	}
}

// flushDrops reports the counts the rate limit held back whose interval has
// ended. Receive has no timer of its own: it does this whenever a datagram
// arrives, and Close does it for what is left.
func (s *Socket) flushDrops(now time.Time) {
	if s.onDrop == nil {
		return
	}
	for _, r := range s.drops.Flush(now) {
		s.onDrop(Drop{Pid: r.Sender, Count: r.Count})
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
		// A blocked Receive returns now and lets go of the lock: the counts
		// the rate limit still holds are reported before the socket goes.
		s.mu.Lock()
		s.flushDrops(time.Now().Add(s.drops.interval))
		s.mu.Unlock()
		if s.dir != "" {
			if err := os.RemoveAll(s.dir); err != nil {
				errs = append(errs, fmt.Errorf("notify: remove %s: %w", s.dir, err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
