package sockets

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// timeout bounds every wait on the network: loopback answers at once, so
// reaching it means a hang.
const timeout = 10 * time.Second

func mustSpec(t *testing.T, raw string) Spec {
	t.Helper()
	s, err := ParseSpec(raw)
	if err != nil {
		t.Fatalf("ParseSpec(%q): %v", raw, err)
	}
	return s
}

// sockDir returns a short private directory for unix sockets: t.TempDir
// paths derived from long test names can exceed the 107-byte sun_path.
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "gm2s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func mustBind(t *testing.T, specs ...Spec) []*Listener {
	t.Helper()
	ls, err := Bind(specs)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if len(ls) != len(specs) {
		t.Fatalf("Bind returned %d listeners for %d specs", len(ls), len(specs))
	}
	t.Cleanup(func() { CloseAll(ls) })
	return ls
}

// checkFD asserts what the Listener doc promises about the descriptor:
// blocking, close-on-exec, and not registered with the runtime poller. It
// must run before anything dups the descriptor into the net package, which
// sets O_NONBLOCK on the shared open file description.
func checkFD(t *testing.T, l *Listener) {
	t.Helper()
	rc, err := l.File.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags, fdflags int
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		if flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0); ferr != nil {
			return
		}
		fdflags, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Errorf("%s: descriptor is non-blocking", l.Spec)
	}
	if fdflags&unix.FD_CLOEXEC == 0 {
		t.Errorf("%s: descriptor lacks FD_CLOEXEC (would leak into every exec)", l.Spec)
	}
	if err := l.File.SetDeadline(time.Now()); !errors.Is(err, os.ErrNoDeadline) {
		t.Errorf("%s: SetDeadline = %v, want os.ErrNoDeadline (a descriptor outside the poller)", l.Spec, err)
	}
}

// netListener wraps a dup of the listener's descriptor, as a worker would.
func netListener(t *testing.T, l *Listener) net.Listener {
	t.Helper()
	nl, err := net.FileListener(l.File)
	if err != nil {
		t.Fatalf("FileListener(%s): %v", l.Spec, err)
	}
	t.Cleanup(func() { nl.Close() })
	return nl
}

// roundTrip dials addr, and checks that a connection accepted on nl carries
// bytes both ways.
func roundTrip(t *testing.T, nl net.Listener, network, addr string) {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := nl.Accept()
		accepted <- result{c, err}
	}()
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var r result
	select {
	case r = <-accepted:
	case <-time.After(timeout):
		t.Fatalf("accept on %s timed out", addr)
	}
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	defer r.c.Close()
	r.c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r.c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := r.c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

func TestBindTCP(t *testing.T) {
	ls := mustBind(t, mustSpec(t, "web=127.0.0.1:0"))
	l := ls[0]
	checkFD(t, l)
	host, port, err := net.SplitHostPort(l.Bound)
	if err != nil {
		t.Fatalf("Bound %q: %v", l.Bound, err)
	}
	if n, _ := strconv.Atoi(port); host != "127.0.0.1" || n <= 0 || n > 65535 {
		t.Fatalf("Bound = %q, want 127.0.0.1 and the port the kernel chose", l.Bound)
	}
	if l.Spec.Name != "web" {
		t.Errorf("Name = %q", l.Spec.Name)
	}
	roundTrip(t, netListener(t, l), "tcp", l.Bound)
}

// The kernel queues connections on the descriptor gm2-init holds even while
// no worker accepts: that is what makes reloads lossless.
func TestBindTCPBacklogWithoutAccept(t *testing.T) {
	ls := mustBind(t, mustSpec(t, "127.0.0.1:0"))
	c, err := net.DialTimeout("tcp", ls[0].Bound, timeout)
	if err != nil {
		t.Fatalf("dial before any accept: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	nl := netListener(t, ls[0])
	nl.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
	s, err := nl.Accept()
	if err != nil {
		t.Fatalf("accept the queued connection: %v", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "early" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestBindTCP6Loopback(t *testing.T) {
	ls, err := Bind([]Spec{mustSpec(t, "tcp6://[::1]:0")})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	t.Cleanup(func() { CloseAll(ls) })
	checkFD(t, ls[0])
	if !strings.HasPrefix(ls[0].Bound, "[::1]:") {
		t.Fatalf("Bound = %q", ls[0].Bound)
	}
	roundTrip(t, netListener(t, ls[0]), "tcp", ls[0].Bound)
}

// localhost means the loopback address of the scheme's family.
func TestBindLocalhost(t *testing.T) {
	ls := mustBind(t, mustSpec(t, "localhost:0"))
	if !strings.HasPrefix(ls[0].Bound, "127.0.0.1:") {
		t.Fatalf("Bound = %q, want 127.0.0.1:PORT", ls[0].Bound)
	}
	roundTrip(t, netListener(t, ls[0]), "tcp", ls[0].Bound)
}

// A wildcard address (":0") listens on every interface, so on loopback too.
func TestBindWildcard(t *testing.T) {
	ls := mustBind(t, mustSpec(t, ":0"), mustSpec(t, "tcp4://:0"))
	for _, l := range ls {
		checkFD(t, l)
		_, port, err := net.SplitHostPort(l.Bound)
		if err != nil || port == "0" {
			t.Fatalf("Bound = %q, %v", l.Bound, err)
		}
		roundTrip(t, netListener(t, l), "tcp4", net.JoinHostPort("127.0.0.1", port))
	}
}

func TestBindUDP(t *testing.T) {
	ls := mustBind(t, mustSpec(t, "udp://127.0.0.1:0"))
	l := ls[0]
	checkFD(t, l)
	if _, port, _ := net.SplitHostPort(l.Bound); port == "" || port == "0" {
		t.Fatalf("Bound = %q", l.Bound)
	}
	pc, err := net.FilePacketConn(l.File)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(timeout))
	c, err := net.DialTimeout("udp", l.Bound, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("server read %q, %v", buf[:n], err)
	}
	if _, err := pc.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	n, err = c.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}

func TestBindUnix(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "app.sock")
	// The documented mode holds whatever the umask.
	old := unix.Umask(0o077)
	ls, err := Bind([]Spec{mustSpec(t, "unix://"+path)})
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseAll(ls) })
	l := ls[0]
	checkFD(t, l)
	if l.Bound != path {
		t.Errorf("Bound = %q, want %q", l.Bound, path)
	}
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != socketMode {
		t.Errorf("socket file mode %v, want a socket with %v", st.Mode(), os.FileMode(socketMode))
	}
	roundTrip(t, netListener(t, l), "unix", path)

	// CloseAll removes the socket file it created.
	CloseAll(ls)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after CloseAll: Lstat = %v, want the socket file removed", err)
	}
}

func TestBindUnixgram(t *testing.T) {
	path := filepath.Join(sockDir(t), "log.sock")
	ls := mustBind(t, mustSpec(t, "unixgram://"+path))
	checkFD(t, ls[0])
	pc, err := net.FilePacketConn(ls[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(timeout))
	c, err := net.DialTimeout("unixgram", path, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("line")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "line" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

// staleSocket leaves a socket file with nobody behind it, as a crashed
// gm2-init would.
func staleSocket(t *testing.T, path string, typ int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 1); err != nil {
			t.Fatal(err)
		}
	}
	unix.Close(fd)
	if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("stale socket not left behind: %v", err)
	}
}

func TestBindUnixRemovesStaleSocket(t *testing.T) {
	for _, tc := range []struct {
		scheme string
		typ    int
	}{{"unix", unix.SOCK_STREAM}, {"unixgram", unix.SOCK_DGRAM}} {
		t.Run(tc.scheme, func(t *testing.T) {
			path := filepath.Join(sockDir(t), "stale.sock")
			staleSocket(t, path, tc.typ)
			ls := mustBind(t, mustSpec(t, tc.scheme+"://"+path))
			if tc.typ == unix.SOCK_STREAM {
				roundTrip(t, netListener(t, ls[0]), "unix", path)
			}
		})
	}
}

// A socket someone still answers on belongs to another process (another
// gm2-init, a second container sharing the volume): never unlink it.
func TestBindUnixRefusesLiveSocket(t *testing.T) {
	for _, tc := range []struct {
		name     string
		live     string // network of the socket already there
		scheme   string // what we ask for
		liveDial string
	}{
		{"unix over unix", "unix", "unix", "unix"},
		{"unixgram over unixgram", "unixgram", "unixgram", "unixgram"},
		// A live socket of the other type is just as live: connect fails
		// with EPROTOTYPE, which must not be mistaken for "stale".
		{"unixgram over unix", "unix", "unixgram", "unix"},
		{"unix over unixgram", "unixgram", "unix", "unixgram"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(sockDir(t), "live.sock")
			var closer io.Closer
			if tc.live == "unix" {
				ln, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				closer = ln
			} else {
				pc, err := net.ListenPacket("unixgram", path)
				if err != nil {
					t.Fatal(err)
				}
				closer = pc
			}
			defer closer.Close()
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}

			ls, err := Bind([]Spec{mustSpec(t, tc.scheme+"://"+path)})
			if err == nil {
				CloseAll(ls)
				t.Fatal("Bind stole a live socket")
			}
			var be *BindError
			if !errors.As(err, &be) {
				t.Fatalf("error %T %v, want *BindError", err, err)
			}
			if be.Usage {
				t.Errorf("a live socket is system state, not a bad value: Usage = true")
			}
			if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should say the path is in use", err)
			}
			checkOneLine(t, err)
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) {
				t.Fatalf("the live socket file was replaced or removed: %v", err)
			}
			if tc.live == "unix" {
				c, err := net.DialTimeout(tc.liveDial, path, timeout)
				if err != nil {
					t.Fatalf("the live listener no longer answers: %v", err)
				}
				c.Close()
			}
		})
	}
}

func TestBindUnixRefusesNonSocket(t *testing.T) {
	dir := sockDir(t)
	file := filepath.Join(dir, "data")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "subdir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, sub, link} {
		_, err := Bind([]Spec{mustSpec(t, "unix://"+path)})
		var be *BindError
		if !errors.As(err, &be) || !be.Usage {
			t.Fatalf("Bind over %s: %v, want a usage BindError", path, err)
		}
		if !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("error %q should say it is not a socket", err)
		}
		checkOneLine(t, err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("regular file damaged: %q, %v", b, err)
	}
	if st, err := os.Stat(sub); err != nil || !st.IsDir() {
		t.Fatalf("directory damaged: %v", err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink damaged: %v", err)
	}
}

func TestBindUnixMissingDirectory(t *testing.T) {
	dir := sockDir(t)
	for _, path := range []string{
		filepath.Join(dir, "missing", "app.sock"),
		filepath.Join(dir, "file", "app.sock"), // "file" is a regular file
	} {
		if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Bind([]Spec{mustSpec(t, "unix://"+path)})
		var be *BindError
		if !errors.As(err, &be) {
			t.Fatalf("Bind(%s) = %v, want a *BindError", path, err)
		}
		if !be.Usage {
			t.Errorf("Bind(%s): Usage = false, want true (a wrong path is a bad value)", path)
		}
		if !strings.Contains(err.Error(), filepath.Dir(path)) {
			t.Errorf("error %q should name the directory", err)
		}
		// The address, then the directory once (no "stat DIR: …" after it).
		if n := strings.Count(err.Error(), filepath.Dir(path)); n != 2 || strings.Contains(err.Error(), "stat ") {
			t.Errorf("error %q names the directory %d times, want the address and the directory once", err, n)
		}
		checkOneLine(t, err)
	}
}

func TestBindUnixUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses directory permissions")
	}
	dir := filepath.Join(sockDir(t), "ro")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	_, err := Bind([]Spec{mustSpec(t, "unix://"+filepath.Join(dir, "a.sock"))})
	var be *BindError
	if !errors.As(err, &be) || !errors.Is(err, unix.EACCES) {
		t.Fatalf("Bind in a read-only directory: %v, want a BindError wrapping EACCES", err)
	}
	if strings.Contains(err.Error(), "ports below 1024") || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q should blame the directory, not a port", err)
	}
	if strings.Count(err.Error(), "permission denied") != 1 {
		t.Errorf("error %q says permission denied more than once", err)
	}
}

func TestBindPortInUse(t *testing.T) {
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, raw := range []string{
		"tcp://" + tcp.Addr().String(),
		"udp://" + udp.LocalAddr().String(),
	} {
		_, err := Bind([]Spec{mustSpec(t, raw)})
		var be *BindError
		if !errors.As(err, &be) {
			t.Fatalf("Bind(%s) = %v, want a *BindError", raw, err)
		}
		if be.Usage {
			t.Errorf("Bind(%s): a port in use is a runtime error, got Usage = true", raw)
		}
		if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "already in use") {
			t.Errorf("Bind(%s) = %q, want EADDRINUSE explained", raw, err)
		}
		if be.Spec.Raw != raw || !strings.Contains(err.Error(), raw) {
			t.Errorf("error %q should name %q", err, raw)
		}
		// Said once: the explanation starts with the errno's own text.
		if want := "bind " + raw + ": address already in use (another process listens there)"; err.Error() != want {
			t.Errorf("Bind(%s) = %q, want %q", raw, err, want)
		}
		checkOneLine(t, err)
	}
}

// On any failure nothing stays bound: the listeners opened before the
// failing one are closed, and their unix socket files removed.
func TestBindFailureClosesEarlierListeners(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	// Pick a free port for the first listener.
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := probe.Addr().String()
	probe.Close()

	path := filepath.Join(sockDir(t), "first.sock")
	specs := []Spec{
		mustSpec(t, "tcp://"+first),
		mustSpec(t, "unix://"+path),
		mustSpec(t, "tcp://"+busy.Addr().String()),
	}
	ls, err := Bind(specs)
	if err == nil {
		CloseAll(ls)
		t.Fatal("Bind succeeded with a busy port")
	}
	if ls != nil {
		t.Errorf("Bind returned %d listeners along with an error", len(ls))
	}
	var be *BindError
	if !errors.As(err, &be) || be.Spec.Raw != specs[2].Raw {
		t.Fatalf("error %v should be about %s", err, specs[2].Raw)
	}
	// The first port is free again: a fresh bind succeeds.
	again, err := net.Listen("tcp4", first)
	if err != nil {
		t.Fatalf("the first listener was left bound: %v", err)
	}
	again.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unix socket file of the closed listener was left: %v", err)
	}
}

func TestBindNothing(t *testing.T) {
	ls, err := Bind(nil)
	if err != nil || len(ls) != 0 {
		t.Fatalf("Bind(nil) = %v, %v", ls, err)
	}
	if Names(ls) != "" || len(Files(ls)) != 0 {
		t.Fatalf("Names/Files of nothing: %q %v", Names(ls), Files(ls))
	}
	CloseAll(ls)
}

func TestFilesAndNames(t *testing.T) {
	path := filepath.Join(sockDir(t), "s.sock")
	ls := mustBind(t,
		mustSpec(t, "http=127.0.0.1:0"),
		mustSpec(t, "udp://127.0.0.1:0"),
		mustSpec(t, "unix://"+path),
	)
	files := Files(ls)
	if len(files) != 3 {
		t.Fatalf("Files: %d", len(files))
	}
	for i, f := range files {
		if f != ls[i].File {
			t.Errorf("Files[%d] is not listener %d's file", i, i)
		}
	}
	_, udpPort, _ := net.SplitHostPort(ls[1].Bound)
	// The default name carries the port as written (0), not the bound one:
	// it is known before binding and stable across restarts.
	want := "http:udp-0:unix-s.sock"
	if got := Names(ls); got != want {
		t.Errorf("Names = %q, want %q (udp bound on %s)", got, want, udpPort)
	}
}

func TestBindErrorFormat(t *testing.T) {
	inner := errors.New("boom")
	e := &BindError{Spec: Spec{Raw: "x=:1"}, Err: inner}
	if e.Error() != "bind x=:1: boom" {
		t.Errorf("Error() = %q", e.Error())
	}
	if !errors.Is(e, inner) {
		t.Error("BindError does not unwrap")
	}
}

// A TCP listener has TCP_NODELAY, and the connections accepted from it
// inherit it: a worker that never sets it (uvicorn --fd 3 takes the socket
// for a unix one) answers keep-alive requests without Nagle's 40 ms.
func TestBindTCPNoDelayInherited(t *testing.T) {
	l := mustBind(t, mustSpec(t, "127.0.0.1:0"))[0]
	nodelay := func(fd int) int {
		t.Helper()
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := nodelay(int(l.File.Fd())); v == 0 {
		t.Fatal("listener without TCP_NODELAY")
	}
	c, err := net.Dial("tcp", l.Bound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A blocking accept(2), as a worker's server does on the passed fd:
	// the connection is queued already.
	nfd, _, err := unix.Accept(int(l.File.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nfd)
	if v := nodelay(nfd); v == 0 {
		t.Error("accepted connection without TCP_NODELAY: the kernel did not pass it on")
	}
}
