package sockets

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitWaiting polls WaitingConnections until want holds (the kernel queues
// a connection when the client's last handshake segment arrives).
func waitWaiting(t *testing.T, f *os.File, what string, want func([]uint64) bool) []uint64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := WaitingConnections(f)
		if err != nil {
			t.Fatalf("WaitingConnections: %v", err)
		}
		if want(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d waiting after %v", what, len(got), timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWaitingConnections(t *testing.T) {
	for _, spec := range []string{"127.0.0.1:0", "tcp6://[::1]:0", "tcp4://0.0.0.0:0"} {
		t.Run(spec, func(t *testing.T) {
			ls, err := Bind([]Spec{mustSpec(t, spec)})
			if err != nil {
				if spec == "tcp6://[::1]:0" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { CloseAll(ls) })
			l := ls[0]
			if got, err := WaitingConnections(l.File); err != nil || len(got) != 0 {
				t.Fatalf("fresh listener: %v, %v", got, err)
			}
			addr := l.Bound
			if spec == "tcp4://0.0.0.0:0" {
				_, port, _ := net.SplitHostPort(l.Bound)
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			conns := dialN(t, addr, 3)
			first := waitWaiting(t, l.File, "3 waiting", func(c []uint64) bool { return len(c) == 3 })

			// A client that gives up leaves its connection waiting.
			conns[2].Close()
			nl := netListener(t, l)
			c, err := nl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			after, err := WaitingConnections(l.File)
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != 2 {
				t.Fatalf("after one accept: %d waiting, want 2", len(after))
			}
			for _, x := range after {
				if !slices.Contains(first, x) {
					t.Errorf("cookie %d after the accept was not waiting before", x)
				}
			}
		})
	}
}

// TestWaitingConnectionsOtherAddress: two listeners on the same port and
// different addresses; each sees only its own connections.
func TestWaitingConnectionsOtherAddress(t *testing.T) {
	ls := mustBind(t, mustSpec(t, "127.0.0.1:0"))
	_, port, _ := net.SplitHostPort(ls[0].Bound)
	other, err := Bind([]Spec{mustSpec(t, "127.0.0.2:"+port)})
	if err != nil {
		t.Skipf("127.0.0.2 not bindable here: %v", err)
	}
	t.Cleanup(func() { CloseAll(other) })
	dialN(t, ls[0].Bound, 2)
	dialN(t, other[0].Bound, 1)
	waitWaiting(t, ls[0].File, "2 on 127.0.0.1", func(c []uint64) bool { return len(c) == 2 })
	waitWaiting(t, other[0].File, "1 on 127.0.0.2", func(c []uint64) bool { return len(c) == 1 })
}

func TestWaitingConnectionsNotAListener(t *testing.T) {
	dir := sockDir(t)
	ls := mustBind(t, mustSpec(t, "unix://"+dir+"/s.sock"))
	if _, err := WaitingConnections(ls[0].File); !errors.Is(err, ErrNotTCPListener) {
		t.Errorf("unix socket: %v, want ErrNotTCPListener", err)
	}
}

// diagMsg builds one netlink message of a sock_diag answer.
func diagMsg(typ uint16, seq uint32, body []byte) []byte {
	l := unix.SizeofNlMsghdr + len(body)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint32(b[0:], uint32(l))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	copy(b[unix.SizeofNlMsghdr:], body)
	return b
}

// inetDiagMsg builds a struct inet_diag_msg.
func inetDiagMsg(family, state uint8, src netip.AddrPort, cookie uint64, inode uint32) []byte {
	m := make([]byte, sizeofDiagMsg)
	m[0], m[offMsgState] = family, state
	binary.BigEndian.PutUint16(m[offMsgSport:], src.Port())
	a := src.Addr().AsSlice()
	copy(m[offMsgSrc:], a)
	binary.NativeEndian.PutUint64(m[offMsgCookie:], cookie)
	binary.NativeEndian.PutUint32(m[offMsgInode:], inode)
	return m
}

func TestParseDiag(t *testing.T) {
	local := netip.MustParseAddrPort("127.0.0.1:8080")
	wild := netip.MustParseAddrPort("[::]:8080")
	v4 := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	errno := make([]byte, 4)
	eperm := -int32(unix.EPERM)
	binary.NativeEndian.PutUint32(errno, uint32(eperm))
	for _, tc := range []struct {
		name  string
		local netip.AddrPort
		data  []byte
		want  []uint64
		done  bool
		err   bool
	}{
		{name: "waiting", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8080"), 7, 0)), want: []uint64{7}},
		{name: "client gave up", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpCloseWait, v4("127.0.0.1:8080"), 7, 0)), want: []uint64{7}},
		{name: "accepted", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8080"), 7, 1234))},
		{name: "other state", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, 2, v4("127.0.0.1:8080"), 7, 0))},
		{name: "other port", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8081"), 7, 0))},
		{name: "other address", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.2:8080"), 7, 0))},
		{name: "wildcard, mapped", local: wild, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET6, tcpEstablished, netip.MustParseAddrPort("[::ffff:10.0.0.5]:8080"), 9, 0)), want: []uint64{9}},
		{name: "other request", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 2, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8080"), 7, 0))},
		{name: "two, then done", local: local, data: append(append(
			diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8080"), 3, 0)),
			diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8080"), 4, 0))...),
			diagMsg(unix.NLMSG_DONE, 1, make([]byte, 4))...), want: []uint64{3, 4}, done: true},
		{name: "error", local: local, data: diagMsg(unix.NLMSG_ERROR, 1, errno), err: true},
		{name: "truncated header", local: local, data: []byte{1, 2, 3}, err: true},
		{name: "length past the end", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, v4("127.0.0.1:8080"), 7, 0))[:40], err: true},
		{name: "short body", local: local, data: diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, make([]byte, 20)), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, done, err := parseDiag(tc.data, 1, tc.local, nil)
			if (err != nil) != tc.err || done != tc.done || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, done %v, err %v; want %v, done %v, error %v", got, done, err, tc.want, tc.done, tc.err)
			}
		})
	}
}

// FuzzParseDiag: whatever the bytes, parseDiag neither panics nor returns
// more than MaxWaitingConnections.
func FuzzParseDiag(f *testing.F) {
	f.Add(diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET, tcpEstablished, netip.MustParseAddrPort("127.0.0.1:8080"), 7, 0)))
	f.Add(diagMsg(unix.NLMSG_DONE, 1, make([]byte, 4)))
	f.Add(diagMsg(unix.NLMSG_ERROR, 1, []byte{0xff, 0xff, 0xff, 0xff}))
	f.Add(diagMsg(unix.SOCK_DIAG_BY_FAMILY, 1, inetDiagMsg(unix.AF_INET6, tcpCloseWait, netip.MustParseAddrPort("[::1]:8080"), 1, 0)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, local := range []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("[::]:8080")} {
			got, _, _ := parseDiag(data, 1, local, nil)
			if len(got) > MaxWaitingConnections {
				t.Fatalf("%d cookies", len(got))
			}
		}
	})
}
