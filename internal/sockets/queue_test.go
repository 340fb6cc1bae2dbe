package sockets

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitQueue polls f's accept queue until want holds of it. The kernel puts
// a connection in the queue when the client's last handshake segment
// arrives, which can be a moment after the client's connect returned; the
// wait is on the kernel's state, bounded.
func waitQueue(t *testing.T, f *os.File, what string, want func(AcceptQueue) bool) AcceptQueue {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		q, err := ReadAcceptQueue(f)
		if err != nil {
			t.Fatalf("ReadAcceptQueue: %v", err)
		}
		if want(q) {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: queue %+v after %v", what, q, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func somaxconn(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Skipf("somaxconn unknown: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("somaxconn %q: %v", b, err)
	}
	return n
}

func dialN(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// TestReadAcceptQueue fills a bound listener's queue with connections that
// nobody accepts, then accepts some, and reads the queue at each step.
func TestReadAcceptQueue(t *testing.T) {
	for _, spec := range []string{"127.0.0.1:0", "tcp6://[::1]:0"} {
		t.Run(spec, func(t *testing.T) {
			ls, err := Bind([]Spec{mustSpec(t, spec)})
			if err != nil {
				if strings.Contains(spec, "::1") {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { CloseAll(ls) })
			l := ls[0]
			q, err := ReadAcceptQueue(l.File)
			if err != nil {
				t.Fatal(err)
			}
			if want := min(listenBacklog, somaxconn(t)); q.Len != 0 || q.Backlog != want {
				t.Errorf("fresh listener: %+v, want length 0, backlog %d", q, want)
			}

			dialN(t, l.Bound, 5)
			waitQueue(t, l.File, "5 connections not accepted", func(q AcceptQueue) bool { return q.Len == 5 })

			nl := netListener(t, l) // a dup, as a worker holds it
			for range 2 {
				c, err := nl.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			// accept(2) returned: the queue is shorter at once.
			if q, err := ReadAcceptQueue(l.File); err != nil || q.Len != 3 {
				t.Errorf("after 2 accepts: %+v, %v; want length 3", q, err)
			}
		})
	}
}

// TestReadAcceptQueueFull: a small backlog, more clients than it holds. The
// queue stops at backlog+1 (the kernel's rule); the others wait in their
// handshake.
func TestReadAcceptQueueFull(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "small-backlog")
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 2); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)

	// Non-blocking connects: those beyond the queue stay in SYN-SENT.
	var clients []int
	defer func() {
		for _, c := range clients {
			unix.Close(c)
		}
	}()
	for range 6 {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if err := unix.Connect(c, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			t.Fatalf("connect %s: %v", addr, err)
		}
	}
	q := waitQueue(t, f, "queue full", func(q AcceptQueue) bool { return q.Len == 3 })
	if q.Backlog != 2 {
		t.Errorf("backlog %d, want 2", q.Backlog)
	}
}

// TestReadAcceptQueueNotAListener: every other kind of socket is refused
// with ErrNotTCPListener, and a closed file with an error.
func TestReadAcceptQueueNotAListener(t *testing.T) {
	dir := sockDir(t)
	ls := mustBind(t,
		mustSpec(t, "unix://"+filepath.Join(dir, "s.sock")),
		mustSpec(t, "udp://127.0.0.1:0"),
		mustSpec(t, "unixgram://"+filepath.Join(dir, "g.sock")),
	)
	for _, l := range ls {
		if _, err := ReadAcceptQueue(l.File); !errors.Is(err, ErrNotTCPListener) {
			t.Errorf("%s: %v, want ErrNotTCPListener", l.Spec, err)
		}
	}

	// A connected TCP socket has TCP_INFO, but no accept queue.
	tcp := mustBind(t, mustSpec(t, "127.0.0.1:0"))[0]
	c := dialN(t, tcp.Bound, 1)[0]
	cf, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	if _, err := ReadAcceptQueue(cf); !errors.Is(err, ErrNotTCPListener) {
		t.Errorf("connected socket: %v, want ErrNotTCPListener", err)
	}

	// A plain file is no socket at all.
	pf, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	if _, err := ReadAcceptQueue(pf); !errors.Is(err, ErrNotTCPListener) || !strings.Contains(err.Error(), os.DevNull) {
		t.Errorf("%s: %v, want ErrNotTCPListener naming it", os.DevNull, err)
	}

	// Closed under the caller (the supervisor closing a listener while a
	// probe reads it): an error, never another descriptor's queue.
	other := mustBind(t, mustSpec(t, "127.0.0.1:0"))[0]
	other.File.Close()
	if q, err := ReadAcceptQueue(other.File); err == nil {
		t.Errorf("closed file: %+v, want an error", q)
	}
}
