package sockets

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseActivation(t *testing.T) {
	const self = 4242
	for _, tc := range []struct {
		name                 string
		pid, fds, names      string
		count                int
		wantNames            []string
		ignored, errContains string
	}{
		{name: "nothing"},
		{name: "ours", pid: "4242", fds: "2", count: 2, wantNames: []string{"", ""}},
		{name: "named", pid: "4242", fds: "2", names: "web:dns", count: 2, wantNames: []string{"web", "dns"}},
		{name: "systemd unit names", pid: "4242", fds: "1", names: "app@1.socket", count: 1, wantNames: []string{"app@1.socket"}},
		{name: "empty name list", pid: "4242", fds: "1", names: "", count: 1, wantNames: []string{""}},
		{name: "one empty name", pid: "4242", fds: "2", names: "web:", count: 2, wantNames: []string{"web", ""}},
		{name: "zero", pid: "4242", fds: "0", count: 0, wantNames: []string{}},
		{name: "another process", pid: "1", fds: "1", ignored: "LISTEN_PID=1 is another process"},
		{name: "no pid", fds: "1", ignored: "LISTEN_PID is not set"},
		{name: "pid without fds", pid: "4242", ignored: "LISTEN_FDS is not set"},
		{name: "names without fds", names: "web", ignored: "LISTEN_FDS is not set"},
		{name: "bad pid", pid: "x", fds: "1", errContains: `LISTEN_PID="x": not a pid`},
		{name: "negative pid", pid: "-4242", fds: "1", errContains: "LISTEN_PID"},
		{name: "bad count", pid: "4242", fds: "two", errContains: `LISTEN_FDS="two"`},
		{name: "negative count", pid: "4242", fds: "-1", errContains: "LISTEN_FDS"},
		{name: "huge count", pid: "4242", fds: "100000", errContains: "from 0 to 1024"},
		{name: "too few names", pid: "4242", fds: "2", names: "web", errContains: "1 names for LISTEN_FDS=2"},
		{name: "too many names", pid: "4242", fds: "1", names: "a:b", errContains: "2 names"},
		{name: "control character", pid: "4242", fds: "1", names: "a\nb", errContains: "printable"},
		{name: "long name", pid: "4242", fds: "1", names: strings.Repeat("n", 256), errContains: "255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseActivation(tc.pid, tc.fds, tc.names, self)
			if tc.errContains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errContains) {
					t.Fatalf("error %v, want one containing %q", err, tc.errContains)
				}
				checkOneLine(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Count != tc.count || !strings.Contains(a.Ignored, tc.ignored) || (tc.ignored == "") != (a.Ignored == "") {
				t.Errorf("got %+v, want count %d, ignored %q", a, tc.count, tc.ignored)
			}
			if tc.wantNames != nil && strings.Join(a.Names, "|") != strings.Join(tc.wantNames, "|") {
				t.Errorf("names %q, want %q", a.Names, tc.wantNames)
			}
		})
	}
}

func FuzzParseActivation(f *testing.F) {
	for _, s := range [][3]string{
		{"7", "1", ""}, {"7", "2", "a:b"}, {"7", "2", "a"}, {"8", "1", ""}, {"", "1", ""},
		{"7", "x", ""}, {"7", "1025", ""}, {"7", "0", ":"}, {"07", "1", "\x00"}, {"+7", " 1", "é"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pid, fds, names string) {
		a, err := ParseActivation(pid, fds, names, 7)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		if a.Count < 0 || a.Count > maxInherited || len(a.Names) != a.Count {
			t.Fatalf("count %d with %d names", a.Count, len(a.Names))
		}
		if a.Count > 0 && a.Ignored != "" {
			t.Fatalf("count %d but ignored: %s", a.Count, a.Ignored)
		}
		for _, n := range a.Names {
			if strings.Contains(n, ":") {
				t.Fatalf("name %q holds the separator", n)
			}
		}
	})
}

// passFDs dups each socket's descriptor to consecutive numbers from a high
// base, as a parent passes fds 3, 4, … (the test process's own fds 3… are
// not free), and returns the first.
func passFDs(t *testing.T, fds ...int) int {
	t.Helper()
	first := freeBlock(t, len(fds))
	for i, fd := range fds {
		if err := unix.Dup3(fd, first+i, 0); err != nil {
			t.Fatalf("dup3 %d → %d: %v", fd, first+i, err)
		}
		unix.Close(fd)
	}
	return first
}

// freeBlock finds n consecutive descriptor numbers that are not open, far
// above what the test process uses (dup3 onto an open one would close it).
func freeBlock(t *testing.T, n int) int {
	t.Helper()
	for first := 900; first < 4000; first += n {
		free := true
		for fd := first; fd < first+n && free; fd++ {
			_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			free = errors.Is(err, unix.EBADF)
		}
		if free {
			return first
		}
	}
	t.Fatal("no free block of descriptor numbers")
	return 0
}

// rawSocket makes a socket the way a service manager does, bound to addr.
func rawSocket(t *testing.T, domain, typ int, sa unix.Sockaddr, listen bool) int {
	t.Helper()
	fd, err := unix.Socket(domain, typ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sa != nil {
		if err := unix.Bind(fd, sa); err != nil {
			t.Fatalf("bind: %v", err)
		}
	}
	if listen {
		if err := unix.Listen(fd, 16); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

func TestTakeDescribesEachKind(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "app.sock")
	gram := filepath.Join(dir, "log.sock")
	v6 := rawSocket(t, unix.AF_INET6, unix.SOCK_STREAM, nil, false)
	if err := unix.SetsockoptInt(v6, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(v6, &unix.SockaddrInet6{}); err != nil {
		t.Skipf("no IPv6 here: %v", err)
	}
	if err := unix.Listen(v6, 16); err != nil {
		t.Fatal(err)
	}
	fds := []int{
		rawSocket(t, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, true),
		rawSocket(t, unix.AF_INET, unix.SOCK_DGRAM, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, false),
		v6,
		rawSocket(t, unix.AF_UNIX, unix.SOCK_STREAM, &unix.SockaddrUnix{Name: path}, true),
		rawSocket(t, unix.AF_UNIX, unix.SOCK_DGRAM, &unix.SockaddrUnix{Name: gram}, false),
		rawSocket(t, unix.AF_UNIX, unix.SOCK_STREAM, &unix.SockaddrUnix{Name: "@gm2-test-" + strconv.Itoa(os.Getpid())}, true),
	}
	ports := make([]int, 3)
	for i := range 3 {
		sa, err := unix.Getsockname(fds[i])
		if err != nil {
			t.Fatal(err)
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			ports[i] = a.Port
		case *unix.SockaddrInet6:
			ports[i] = a.Port
		}
	}
	first := passFDs(t, fds...)
	ls, err := takeFDs(first, []string{"web", "", "", "app@1.socket", "", ""})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseAll(ls) })
	want := []struct{ name, network, family, addr string }{
		{"web", "tcp", "4", "127.0.0.1:" + strconv.Itoa(ports[0])},
		{"udp-" + strconv.Itoa(ports[1]), "udp", "4", "127.0.0.1:" + strconv.Itoa(ports[1])},
		{"tcp-" + strconv.Itoa(ports[2]), "tcp", "", "[::]:" + strconv.Itoa(ports[2])},
		{"app@1.socket", "unix", "", path},
		{"unixgram-log.sock", "unixgram", "", gram},
		{"unix-gm2-test-" + strconv.Itoa(os.Getpid()), "unix", "", "@gm2-test-" + strconv.Itoa(os.Getpid())},
	}
	for i, w := range want {
		l := ls[i]
		if l.Spec.Name != w.name || string(l.Spec.Network) != w.network || l.Spec.Family != w.family || l.Spec.Addr != w.addr || l.Bound != w.addr {
			t.Errorf("fd %d: got %+v bound %q, want %+v", first+i, l.Spec, l.Bound, w)
		}
		if !l.Inherited || int(l.File.Fd()) != first+i {
			t.Errorf("fd %d: Inherited %v, File fd %d", first+i, l.Inherited, l.File.Fd())
		}
		if want := fmt.Sprintf("LISTEN_FDS fd %d", first+i); l.Spec.Raw != want {
			t.Errorf("Raw %q, want %q", l.Spec.Raw, want)
		}
		// Outside the runtime's poller, whatever its blocking mode.
		if err := l.File.SetDeadline(time.Now()); !errors.Is(err, os.ErrNoDeadline) {
			t.Errorf("fd %d: SetDeadline = %v, want os.ErrNoDeadline (not polled)", first+i, err)
		}
	}
	// The parent's non-blocking mode is left as it was: the open file
	// description is shared with it and with the workers.
	if fl, err := unix.FcntlInt(uintptr(first), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("fd %d flags %#x, %v: O_NONBLOCK was not restored", first, fl, err)
	}
	// Closing never removes a unix socket file that the parent created.
	CloseAll(ls)
	for _, p := range []string{path, gram} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed when the inherited listener was closed: %v", p, err)
		}
	}
}

func TestTakeRefusesWhatWorkersCannotServe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[1])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cf, err := conn.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	rfd, _ := unix.Dup(int(r.Fd()))
	r.Close()
	cfd, _ := unix.Dup(int(cf.Fd()))
	cf.Close()
	for _, tc := range []struct {
		name string
		fd   int
		want string
	}{
		{"pipe", rfd, "not a socket (a FIFO)"},
		{"unbound socket pair", pair[0], "bound to no address"},
		{"connection", cfd, "not listening"},
		{"seqpacket", rawSocket(t, unix.AF_UNIX, unix.SOCK_SEQPACKET, &unix.SockaddrUnix{Name: "@gm2-seq-" + strconv.Itoa(os.Getpid())}, true), "socket type 5"},
		{"netlink", rawNetlink(t), "address family"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := passFDs(t, tc.fd)
			defer unix.Close(first)
			_, err := takeFDs(first, []string{""})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "LISTEN_FDS: fd "+strconv.Itoa(first)) {
				t.Fatalf("error %v, want one naming LISTEN_FDS, the fd and %q", err, tc.want)
			}
			checkOneLine(t, err)
			if _, err := unix.FcntlInt(uintptr(first), unix.F_GETFD, 0); err != nil {
				t.Errorf("the refused descriptor was closed: %v", err)
			}
		})
	}
	t.Run("not open", func(t *testing.T) {
		if _, err := takeFDs(1<<20-1, []string{""}); err == nil || !strings.Contains(err.Error(), "not open") {
			t.Fatalf("error %v", err)
		}
	})
}

func rawNetlink(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_ROUTE)
	if err != nil {
		t.Skipf("netlink socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestSpecMatches(t *testing.T) {
	for _, tc := range []struct {
		listen, got string
		want        bool
	}{
		{":8080", "tcp4://0.0.0.0:8080", true},
		{":8080", "tcp://[::]:8080", true},
		{":8080", "tcp6://[::]:8080", true},
		{"8080", "tcp4://0.0.0.0:8080", true},
		{":8080", "tcp4://0.0.0.0:8081", false},
		{":8080", "udp4://0.0.0.0:8080", false},
		{":8080", "tcp4://127.0.0.1:8080", false},
		{"127.0.0.1:8080", "tcp4://127.0.0.1:8080", true},
		{"localhost:8080", "tcp4://127.0.0.1:8080", true},
		{"tcp6://localhost:8080", "tcp6://[::1]:8080", true},
		{"tcp6://localhost:8080", "tcp4://127.0.0.1:8080", false},
		{"tcp4://:8080", "tcp://[::]:8080", false},
		{"tcp6://:8080", "tcp4://0.0.0.0:8080", false},
		{"[::1]:8080", "tcp6://[::1]:8080", true},
		{"127.0.0.2:8080", "tcp4://127.0.0.1:8080", false},
		{":0", "tcp4://0.0.0.0:0", false},
		{"udp://:53", "udp4://0.0.0.0:53", true},
		{"unix:///run/a.sock", "unix:///run/a.sock", true},
		{"unix:///run/a.sock", "unixgram:///run/a.sock", false},
		{"unix:///run/a.sock", "unix:///run/b.sock", false},
	} {
		s, got := mustSpec(t, tc.listen), mustSpec(t, tc.got)
		if r := s.Matches(got); r != tc.want {
			t.Errorf("%q.Matches(%q) = %v, want %v", tc.listen, tc.got, r, tc.want)
		}
	}
}

// TestOpenUsesTheInheritedSocket: a --listen of the address a parent passed
// takes the parent's socket (binding it again would fail: it is in use),
// keeps its place and name, and the other inherited sockets follow the
// --listen ones in their LISTEN_FDS order.
func TestOpenUsesTheInheritedSocket(t *testing.T) {
	a := rawSocket(t, unix.AF_INET, unix.SOCK_STREAM, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, true)
	b := rawSocket(t, unix.AF_INET, unix.SOCK_STREAM, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, true)
	first := passFDs(t, a, b)
	inh, err := takeFDs(first, []string{"first", "second"})
	if err != nil {
		t.Fatal(err)
	}
	specs := []Spec{mustSpec(t, "own=127.0.0.1:0"), mustSpec(t, "api="+inh[1].Bound)}
	if m := Matches(specs, inh); m[0] != -1 || m[1] != 1 {
		t.Fatalf("Matches = %v, want [-1 1]", m)
	}
	ls, err := Open(specs, inh)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { CloseAll(ls) })
	var got []string
	for _, l := range ls {
		got = append(got, fmt.Sprintf("%s:%v", l.Spec.Name, l.Inherited))
	}
	if strings.Join(got, " ") != "own:false api:true first:true" {
		t.Fatalf("listeners %v, want own (bound), api (the inherited fd %d), first", got, first+1)
	}
	if ls[1].File != inh[1].File || ls[1].Bound != inh[1].Bound {
		t.Errorf("api: file %v bound %s, want the inherited socket", ls[1].File.Fd(), ls[1].Bound)
	}
	if Names(ls) != "own:api:first" {
		t.Errorf("Names = %q", Names(ls))
	}
	// The inherited socket serves through the listener gm2-init hands on.
	roundTrip(t, netListener(t, ls[1]), "tcp", ls[1].Bound)
}

// TestOpenFailureClosesEverything: a bind that fails closes what Open
// bound and the inherited sockets, as Bind does (gm2-init then exits).
func TestOpenFailureClosesEverything(t *testing.T) {
	a := rawSocket(t, unix.AF_INET, unix.SOCK_STREAM, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, true)
	first := passFDs(t, a)
	inh, err := takeFDs(first, []string{""})
	if err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = Open([]Spec{mustSpec(t, "127.0.0.1:0"), mustSpec(t, busy.Addr().String())}, inh)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Open = %v, want address in use", err)
	}
	if _, err := unix.FcntlInt(uintptr(first), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("inherited fd %d still open after the failed Open: %v", first, err)
	}
}

// fdReport is what the helper process reports about its descriptors.
type fdReport struct {
	Closed []int        `json:"closed"`
	Err    string       `json:"err"`
	Open   map[int]bool `json:"open"` // fd → close-on-exec
	Own    int          `json:"own"`
}

// TestCloseInherited runs CloseInherited in a child process that inherited
// a socket to keep (fd 3), a file and a pipe (fds 4, 5), and opened a file
// of its own: the inherited extras are closed, the socket and the child's
// own file stay, and every descriptor above 2 is close-on-exec.
func TestCloseInherited(t *testing.T) {
	for _, mode := range []string{"proc", "scan"} {
		t.Run(mode, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			lf, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			defer lf.Close()
			file, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCloseInherited$")
			cmd.Env = append(os.Environ(), "GM2_SOCKETS_HELPER="+mode)
			cmd.ExtraFiles = []*os.File{lf, file, pw}
			out, err := cmd.Output()
			pw.Close()
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			var r fdReport
			line := out[:max(0, strings.IndexByte(string(out), '\n'))]
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("helper output %q: %v", out, err)
			}
			if r.Err != "" {
				t.Fatalf("CloseInherited: %s", r.Err)
			}
			if !contains(r.Closed, 4) || !contains(r.Closed, 5) || contains(r.Closed, 3) || contains(r.Closed, r.Own) {
				t.Errorf("closed %v; want 4 and 5, not 3 nor the helper's own fd %d", r.Closed, r.Own)
			}
			for _, fd := range []int{3, r.Own} {
				if cloexec, open := r.Open[fd]; !open || !cloexec {
					t.Errorf("fd %d: open %v, close-on-exec %v; want both", fd, open, cloexec)
				}
			}
			for fd, cloexec := range r.Open {
				if fd > 2 && !cloexec {
					t.Errorf("fd %d would reach a worker (no close-on-exec)", fd)
				}
			}
			// The pipe's only write end was the child's: closed, so EOF.
			if err := pr.SetReadDeadline(time.Now().Add(timeout)); err != nil {
				t.Fatal(err)
			}
			if n, err := pr.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("pipe read %d, %v; want EOF", n, err)
			}
		})
	}
}

// TestHelperCloseInherited is the child of TestCloseInherited.
func TestHelperCloseInherited(t *testing.T) {
	mode := os.Getenv("GM2_SOCKETS_HELPER")
	if mode == "" {
		t.Skip("helper process for TestCloseInherited")
	}
	own, err := os.Open(os.DevNull) // close-on-exec, as everything Go opens
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	list := openFDs
	if mode == "scan" {
		list = func() ([]int, error) { return nil, errors.New("no /proc") }
	}
	closed, err := closeInherited(1, list)
	r := fdReport{Closed: closed, Own: int(own.Fd()), Open: map[int]bool{}}
	if err != nil {
		r.Err = err.Error()
	}
	fds, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			r.Open[fd] = fl&unix.FD_CLOEXEC != 0
		}
	}
	b, _ := json.Marshal(r)
	fmt.Printf("%s\n", b)
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
