package sockets

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The helper process of the tests below: TestMain runs it instead of the
// tests when this variable is set.
const helperEnv = "SOCKETS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "hold":
		// Hold a TCP port on 127.0.0.1, say which, and wait for stdin to close.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	case "share80":
		// As an unprivileged user: ask for port 80 and print the errno.
		_, _, err := NewRegistry(0, nil).Get("app", Spec{Network: TCP, Family: "4", Addr: "127.0.0.1:80"})
		var e syscall.Errno
		if errors.As(err, &e) {
			fmt.Println(int(e))
		} else {
			fmt.Println("no errno:", err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func tcpSpec(addr string) Spec {
	s := Spec{Network: TCP, Family: "4", Addr: addr}
	s.Raw = s.String()
	return s
}

// freeTCP returns a port that was free a moment ago, for a test that must
// bind it itself. It is taken below the kernel's ephemeral range (32768 on),
// so that a parallel test binding port 0 cannot be handed the same port
// before this one binds it, and never twice in this test binary.
func freeTCP(t *testing.T) int {
	t.Helper()
	picked.Lock()
	defer picked.Unlock()
	for range 1000 {
		port := 20000 + int(picked.next.Add(7919)%12000)
		if picked.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		picked.ports[port] = true
		return port
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// picked remembers the ports freeTCP handed out in this test binary.
var picked = struct {
	sync.Mutex
	next  atomic.Uint64
	ports map[int]bool
}{ports: map[int]bool{}}

func TestRegistryGet(t *testing.T) {
	t.Parallel()
	r := NewRegistry(0, nil)
	t.Cleanup(r.Close)
	port := freeTCP(t)
	s := tcpSpec(fmt.Sprintf("127.0.0.1:%d", port))
	a, created, err := r.Get("app", s)
	if err != nil || !created || a.ID != 1 || a.App != "app" {
		t.Fatalf("first Get = %+v, %v, %v: want socket 1, created", a, created, err)
	}
	b, created, err := r.Get("app", s)
	if err != nil || created || b != a {
		t.Fatalf("second Get = %+v, %v, %v: want the same socket, not created", b, created, err)
	}
	if r.Len() != 1 || r.Lookup(1) != a || r.Lookup(2) != nil || r.Lookup(0) != nil || len(r.Shared()) != 1 {
		t.Fatalf("registry: Len %d, Lookup(1) %v", r.Len(), r.Lookup(1))
	}
	if a.Listener.Bound != s.Addr || a.Listener.Spec.Name != fmt.Sprintf("tcp-%d", port) {
		t.Fatalf("listener %+v", a.Listener)
	}
	// The socket is non-blocking (a worker's libuv needs that) and serves.
	flags, err := unix.FcntlInt(a.Listener.File.Fd(), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_NONBLOCK == 0 {
		t.Fatalf("flags %#x, %v: want O_NONBLOCK", flags, err)
	}
	roundTrip(t, netListener(t, a.Listener), "tcp4", s.Addr)
	// Another app asking for the same address meets the kernel's answer,
	// and the message names the app that holds it (not "another process").
	if _, _, err := r.Get("other", s); !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), `shared already with the workers of app "app"`) {
		t.Fatalf("Get of another app = %v, want EADDRINUSE naming app", err)
	}
	// The same app on an address that overlaps it (every IPv4 address of
	// the port) is told it holds it already.
	wild := tcpSpec(fmt.Sprintf("0.0.0.0:%d", port))
	if _, _, err := r.Get("app", wild); !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "shared already with this app's workers at "+s.Addr) {
		t.Fatalf("Get of an overlapping address = %v, want EADDRINUSE naming the shared socket", err)
	}
}

// TestRegistryConcurrent: workers asking at the same time get one socket.
func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	r := NewRegistry(0, nil)
	t.Cleanup(r.Close)
	s := tcpSpec(fmt.Sprintf("127.0.0.1:%d", freeTCP(t)))
	var wg sync.WaitGroup
	got := make([]*Shared, 8)
	var created int32
	var mu sync.Mutex
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh, c, err := r.Get("app", s)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[i] = sh
			if c {
				created++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, sh := range got {
		if sh != got[0] {
			t.Fatal("concurrent Gets returned different sockets")
		}
	}
	if created != 1 || r.Len() != 1 {
		t.Fatalf("created %d times, %d sockets: want 1", created, r.Len())
	}
}

// TestRegistryInUse: a port another process holds is EADDRINUSE, explained.
func TestRegistryInUse(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=hold")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("helper said %q, %v", line, err)
	}
	r := NewRegistry(0, nil)
	t.Cleanup(r.Close)
	_, _, err = r.Get("app", tcpSpec(fmt.Sprintf("127.0.0.1:%d", port)))
	if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("Get of a port held by pid %d = %v, want EADDRINUSE naming the address", cmd.Process.Pid, err)
	}
	if r.Len() != 0 {
		t.Fatal("a failed bind was kept")
	}
}

// A bind that fails on a port gm2-init holds for itself (its health
// endpoints) names it: "another process listens there" would send the
// user looking for a process that is gm2-init.
func TestRegistryOwnPortNamed(t *testing.T) {
	t.Parallel()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	r := NewRegistry(0, nil)
	t.Cleanup(r.Close)
	own, err := StdlibTCP(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r.NoteOwnPort(own, "gm2-init's own health endpoints (--health-addr)")
	_, _, err = r.Get("app", tcpSpec(fmt.Sprintf("127.0.0.1:%d", port)))
	if !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), fmt.Sprintf("port %d is gm2-init's own health endpoints (--health-addr)", port)) {
		t.Fatalf("Get of gm2-init's own port = %v", err)
	}
	// An address that does not overlap it is not blamed on it: the same
	// port on another address (here held by another listener of ours, on
	// 127.0.0.2) is another process's.
	other, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
	if err != nil {
		t.Fatalf("127.0.0.2:%d: %v", port, err)
	}
	defer other.Close()
	if _, _, err := r.Get("app", tcpSpec(fmt.Sprintf("127.0.0.2:%d", port))); !errors.Is(err, unix.EADDRINUSE) || strings.Contains(err.Error(), "health") {
		t.Errorf("127.0.0.2:%d held by another: %v", port, err)
	}
}

// TestRegistryPrivileged: port 80 as an unprivileged user is EACCES.
func TestRegistryPrivileged(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n <= 80 {
			t.Skipf("ip_unprivileged_port_start is %d: port 80 needs no privilege here", n)
		}
	}
	if os.Geteuid() != 0 {
		_, _, err := NewRegistry(0, nil).Get("app", Spec{Network: TCP, Family: "4", Addr: "127.0.0.1:80"})
		if !errors.Is(err, unix.EACCES) {
			t.Fatalf("Get of port 80 as uid %d = %v, want EACCES", os.Geteuid(), err)
		}
		return
	}
	// The test binary lives in a directory only root may enter: copy it
	// where the other user can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gm2-sockets-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := dir + "/sockets.test"
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), helperEnv+"=share80")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot run the helper as uid 65534: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(int(unix.EACCES)) {
		t.Fatalf("as uid 65534, Get of port 80 gave %q, want errno %d (EACCES)", got, unix.EACCES)
	}
}

// TestRegistryLimit: past the cap a new address is refused with EMFILE and
// ErrSharedLimit; the sockets already shared are still given.
func TestRegistryLimit(t *testing.T) {
	t.Parallel()
	r := NewRegistry(2, nil)
	t.Cleanup(r.Close)
	var specs []Spec
	for range 3 {
		specs = append(specs, tcpSpec(fmt.Sprintf("127.0.0.1:%d", freeTCP(t))))
	}
	for _, s := range specs[:2] {
		if _, _, err := r.Get("app", s); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := r.Get("app", specs[2])
	if !errors.Is(err, ErrSharedLimit) || !errors.Is(err, unix.EMFILE) || !strings.Contains(err.Error(), "--max-shared-ports") {
		t.Fatalf("third Get = %v, want ErrSharedLimit and EMFILE naming --max-shared-ports", err)
	}
	if sh, _, err := r.Get("app", specs[0]); err != nil || sh.ID != 1 {
		t.Fatalf("Get of a shared address past the cap = %v", err)
	}
	if r.Max() != 2 || NewRegistry(0, nil).Max() != DefaultMaxShared {
		t.Fatal("Max")
	}
}

// TestRegistryRefuses: --listen ports, port 0 and unix sockets are never
// bound on demand; nothing after Close.
func TestRegistryRefuses(t *testing.T) {
	t.Parallel()
	passed := mustBind(t, mustSpec(t, "127.0.0.1:0"), mustSpec(t, "udp://127.0.0.1:0"))
	r := NewRegistry(0, passed)
	for _, tc := range []struct {
		s    Spec
		want error
	}{
		{Spec{Network: TCP, Addr: passed[0].Bound}, unix.EADDRINUSE},
		{Spec{Network: TCP, Family: "6", Addr: "[::]:" + strings.Split(passed[0].Bound, ":")[1]}, unix.EADDRINUSE},
		{Spec{Network: UDP, Family: "4", Addr: passed[1].Bound}, unix.EADDRINUSE},
		{Spec{Network: TCP, Addr: "127.0.0.1:0"}, unix.EINVAL},
		{Spec{Network: Unix, Addr: "/tmp/x.sock"}, unix.EINVAL},
	} {
		_, _, err := r.Get("app", tc.s)
		if !errors.Is(err, tc.want) {
			t.Errorf("Get(%+v) = %v, want %v", tc.s, err, tc.want)
		}
	}
	if r.Len() != 0 {
		t.Fatalf("%d sockets bound", r.Len())
	}
	s := tcpSpec(fmt.Sprintf("127.0.0.1:%d", freeTCP(t)))
	sh, _, err := r.Get("app", s)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := sh.Listener.File.Stat(); err == nil {
		t.Fatal("Close left the socket open")
	}
	if _, _, err := r.Get("app", s); !errors.Is(err, unix.ECONNABORTED) {
		t.Fatalf("Get after Close = %v", err)
	}
}

// TestRegistryUDPAndDual: a UDP socket with SO_REUSEADDR; "[::]" with
// DualStack accepts IPv4 (Node's listen(port, '::')).
func TestRegistryUDPAndDual(t *testing.T) {
	t.Parallel()
	r := NewRegistry(0, nil)
	t.Cleanup(r.Close)
	// A port found free can be taken by a parallel test before Get binds
	// it (the registry shares no ephemeral port 0): another one is tried.
	var u *Shared
	var err error
	for try := 0; try < 5; try++ {
		pc, lerr := net.ListenPacket("udp4", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		u, _, err = r.Get("app", Spec{Network: UDP, Family: "4", Addr: fmt.Sprintf("127.0.0.1:%d", port), ReuseAddr: true})
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	v, err := unix.GetsockoptInt(int(u.Listener.File.Fd()), unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err != nil || v == 0 {
		t.Fatalf("SO_REUSEADDR = %d, %v", v, err)
	}
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Log("no IPv6 here: dual-stack not tested")
		return
	} else {
		l.Close()
	}
	tp := freeTCP(t)
	d, _, err := r.Get("app", Spec{Network: TCP, Family: "6", Addr: fmt.Sprintf("[::]:%d", tp), DualStack: true})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, netListener(t, d.Listener), "tcp4", fmt.Sprintf("127.0.0.1:%d", tp))
	// The same address asked IPv6 only is another request: it is not
	// handed the dual-stack socket.
	if v6, _, err := r.Get("app", Spec{Network: TCP, Family: "6", Addr: fmt.Sprintf("[::]:%d", tp)}); v6 == d {
		t.Fatalf("an IPv6-only request got the dual-stack socket (%v)", err)
	}
}

// TestRegistryUDPBesideListenTCP: a --listen TCP port reserves that port
// for TCP only; a worker's UDP socket of the same number is shared.
func TestRegistryUDPBesideListenTCP(t *testing.T) {
	t.Parallel()
	for try := 0; ; try++ {
		ls, err := Bind([]Spec{tcpSpec("127.0.0.1:0")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { CloseAll(ls) })
		r := NewRegistry(0, ls)
		t.Cleanup(r.Close)
		port := boundPort(ls[0])
		if _, _, err := r.Get("app", tcpSpec(fmt.Sprintf("127.0.0.1:%d", port))); !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "is a listen port of this gm2-init") {
			t.Fatalf("TCP on the --listen port: %v, want EADDRINUSE naming the listen port", err)
		}
		_, _, err = r.Get("app", Spec{Network: UDP, Family: "4", Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		if err == nil {
			return
		}
		if strings.Contains(err.Error(), "listen port") || !errors.Is(err, unix.EADDRINUSE) || try == 4 {
			t.Fatalf("UDP on the number of a --listen TCP port: %v", err)
		}
		// Another process holds that UDP port: try another number.
	}
}

// oneShared returns a registry (closed when the test ends) holding one
// TCP socket on a free loopback port.
func oneShared(t *testing.T) (*Registry, *Shared) {
	t.Helper()
	r := NewRegistry(0, nil)
	t.Cleanup(r.Close)
	sh, _, err := r.Get("app", tcpSpec(fmt.Sprintf("127.0.0.1:%d", freeTCP(t))))
	if err != nil {
		t.Fatal(err)
	}
	return r, sh
}

// TestRegistryHolders: Serving counts Hold and Release, never below 0: a
// Release too many (a worker gone after its server closed) does not hide
// the next Hold.
func TestRegistryHolders(t *testing.T) {
	t.Parallel()
	r, sh := oneShared(t)
	for i, step := range []struct {
		hold    bool
		serving bool
	}{{true, true}, {true, true}, {false, true}, {false, false}, {false, false}, {true, true}} {
		if step.hold {
			r.Hold(sh.ID)
		} else {
			r.Release(sh.ID)
		}
		if got := r.Serving(sh); got != step.serving {
			t.Fatalf("step %d (hold %v): Serving %v, want %v", i, step.hold, got, step.serving)
		}
	}
	r.Hold(0) // unknown ids are ignored
	r.Release(sh.ID + 1)
}

// TestShareData: the first non-empty offer is kept and given to everyone.
func TestShareData(t *testing.T) {
	t.Parallel()
	r, sh := oneShared(t)
	if d := r.ShareData(sh, nil); d != nil {
		t.Fatalf("no offer yet: %q", d)
	}
	if d := r.ShareData(sh, make([]byte, maxData+1)); d != nil {
		t.Fatal("an oversized offer was kept")
	}
	if d := r.ShareData(sh, []byte(`{"k":1}`)); string(d) != `{"k":1}` {
		t.Fatalf("first offer: %q", d)
	}
	if d := r.ShareData(sh, []byte(`{"k":2}`)); string(d) != `{"k":1}` {
		t.Fatalf("second offer: %q, want the first kept", d)
	}
}
