package sockets

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{":8080", "8080", true},
		{":8080", "tcp://:8080", true},
		{":8080", "127.0.0.1:8080", true},
		{":8080", "tcp6://[::1]:8080", true},
		{":8080", "[::]:8080", true},
		{"localhost:80", "127.0.0.1:80", true},
		{"tcp6://localhost:80", "[::1]:80", true},
		{"unix:///run/a.sock", "unixgram:///run/b/../a.sock", true},
		{"0.0.0.0:80", "127.0.0.1:80", true},
		{"[::]:80", "[::1]:80", true},

		{":0", ":0", false}, // the kernel picks two ports
		{":53", "udp://:53", false},
		{"tcp4://:80", "tcp6://:80", false},
		{"0.0.0.0:80", "[::]:80", false}, // an explicit [::] is IPv6 only
		{"127.0.0.1:80", "[::1]:80", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{":80", ":81", false},
		{"unix:///run/a.sock", "unix:///run/b.sock", false},
		{"unix:///run/a.sock", ":80", false},
	}
	for _, tt := range tests {
		a, b := mustSpec(t, tt.a), mustSpec(t, tt.b)
		if got := Overlap(a, b); got != tt.want {
			t.Errorf("Overlap(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Overlap(b, a); got != tt.want {
			t.Errorf("Overlap(%s, %s) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestCheckDistinct(t *testing.T) {
	specs := []Spec{mustSpec(t, ":1"), mustSpec(t, "udp://:1"), mustSpec(t, "127.0.0.1:2"), mustSpec(t, "2")}
	err := CheckDistinct(specs)
	var oe *OverlapError
	if !errors.As(err, &oe) || oe.First.Raw != "127.0.0.1:2" || oe.Second.Raw != "2" {
		t.Fatalf("CheckDistinct = %v", err)
	}
	if err.Error() != `"127.0.0.1:2" and "2" bind the same address` {
		t.Errorf("message %q", err)
	}
	if err := CheckDistinct(specs[:3]); err != nil {
		t.Errorf("distinct specs: %v", err)
	}
	long := mustSpec(t, "n"+strings.Repeat("a", 200)+"=:7")
	if err := CheckDistinct([]Spec{long, long}); err == nil || len(err.Error()) > 200 {
		t.Errorf("long names must be cut in the message: %v", err)
	}
}

func TestStdlibTCP(t *testing.T) {
	for in, want := range map[string]string{
		":9000":              ":9000",
		"0.0.0.0:9000":       ":9000", // Go: every wildcard is one dual-stack socket
		"[::]:9000":          ":9000",
		"[::1]:9000":         "[::1]:9000",
		"127.0.0.1:9000":     "127.0.0.1:9000",
		"localhost:9000":     "127.0.0.1:9000",
		"[::ffff:0.0.0.0]:1": ":1",
	} {
		s, err := StdlibTCP(in)
		if err != nil || s.Addr != want || s.Network != TCP || s.Family != "" || s.Raw != in {
			t.Errorf("StdlibTCP(%q) = %+v, %v; want Addr %q", in, s, err, want)
		}
	}
	for _, in := range []string{"9000", "host:9000", ":65536", ":-1", ":x", "", "[::1]"} {
		if s, err := StdlibTCP(in); err == nil {
			t.Errorf("StdlibTCP(%q) = %+v, want an error", in, s)
		} else {
			checkOneLine(t, err)
		}
	}
}

// freePort returns a TCP port that was free a moment ago on every
// interface, and whether IPv6 works here.
func freePort(t *testing.T) (port string, ipv6 bool) {
	t.Helper()
	probe, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ = net.SplitHostPort(probe.Addr().String())
	probe.Close()
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		l.Close()
		ipv6 = true
	}
	return port, ipv6
}

var listenForms = []string{
	":P", "tcp4://:P", "0.0.0.0:P", "127.0.0.1:P", "localhost:P",
	"tcp6://:P", "[::]:P", "[::1]:P", "tcp6://localhost:P", "udp://:P", "udp://127.0.0.1:P",
}

func needsIPv6(forms ...string) bool {
	for _, f := range forms {
		if strings.Contains(f, "6") || strings.Contains(f, "[") {
			return true
		}
	}
	return false
}

// Overlap claims to predict EADDRINUSE between two listeners: check it
// against the kernel, with real binds through Bind on loopback.
func TestOverlapMatchesKernel(t *testing.T) {
	port, ipv6 := freePort(t)
	for i, a := range listenForms {
		for _, b := range listenForms[i+1:] {
			if !ipv6 && needsIPv6(a, b) {
				continue
			}
			sa := mustSpec(t, strings.ReplaceAll(a, "P", port))
			sb := mustSpec(t, strings.ReplaceAll(b, "P", port))
			predicted := Overlap(sa, sb)
			ls, err := Bind([]Spec{sa, sb})
			CloseAll(ls)
			var be *BindError
			if err != nil && (!errors.As(err, &be) || !errors.Is(err, syscall.EADDRINUSE) || be.Spec.Raw == sa.Raw) {
				t.Skipf("cannot bind port %s here (taken by another process?): %v", port, err)
			}
			if inUse := err != nil && be.Spec.Raw == sb.Raw; inUse != predicted {
				t.Errorf("%s and %s: Overlap predicts a clash %v, the kernel says %v", a, b, predicted, err)
			}
		}
	}
}

// StdlibTCP claims to describe what net.Listen("tcp", addr) binds (how the
// health endpoints are bound): check it against the kernel, with each
// listener form bound by Bind first and the health form by net.Listen.
func TestStdlibTCPOverlapMatchesKernel(t *testing.T) {
	port, ipv6 := freePort(t)
	healthForms := []string{":P", "0.0.0.0:P", "[::]:P", "127.0.0.1:P", "localhost:P", "[::1]:P"}
	for _, l := range listenForms {
		for _, h := range healthForms {
			if !ipv6 && needsIPv6(l, h) {
				continue
			}
			sl := mustSpec(t, strings.ReplaceAll(l, "P", port))
			addr := strings.ReplaceAll(h, "P", port)
			sh, err := StdlibTCP(addr)
			if err != nil {
				t.Fatal(err)
			}
			predicted := Overlap(sh, sl)
			ls, err := Bind([]Spec{sl})
			if err != nil {
				t.Skipf("cannot bind %s here (taken by another process?): %v", sl.Raw, err)
			}
			hl, err := net.Listen("tcp", addr)
			if hl != nil {
				hl.Close()
			}
			CloseAll(ls)
			if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("net.Listen(%q): %v", addr, err)
			}
			if inUse := err != nil; inUse != predicted {
				t.Errorf("--listen %s, health %s: Overlap predicts a clash %v, the kernel says %v", l, h, predicted, err)
			}
		}
	}
}

func FuzzOverlap(f *testing.F) {
	f.Add(":8080", "127.0.0.1:8080")
	f.Add("[::]:1", "0.0.0.0:1")
	f.Add("unix:///a", "unixgram:///a")
	f.Add(":0", ":0")
	f.Fuzz(func(t *testing.T, a, b string) {
		sa, err := ParseSpec(a)
		if err != nil {
			return
		}
		sb, err := ParseSpec(b)
		if err != nil {
			return
		}
		if Overlap(sa, sb) != Overlap(sb, sa) {
			t.Fatalf("Overlap(%q, %q) is not symmetric", a, b)
		}
		if sa.Port() != 0 && !Overlap(sa, sa) && !sa.isUnix() {
			t.Fatalf("%q does not overlap itself", a)
		}
		if err := CheckDistinct([]Spec{sa, sb}); err != nil {
			checkOneLine(t, err)
		}
	})
}

func TestSame(t *testing.T) {
	a, _ := ParseSpec("api=:8080")
	b, _ := ParseSpec("tcp://:8080")
	c, _ := ParseSpec("0.0.0.0:8080")
	z, _ := ParseSpec("127.0.0.1:0")
	u, _ := ParseSpec("unix:///run/a.sock")
	if !Same(a, b) || Same(a, c) || Same(z, z) || !Same(u, u) {
		t.Errorf("Same: %+v %+v %+v %+v %+v", a, b, c, z, u)
	}
	// tcp4://:8080 is IPv4 only, :8080 dual-stack: not one socket,
	// although their Addr is the same.
	v4, _ := ParseSpec("tcp4://:8080")
	if Same(a, v4) || Same(v4, a) {
		t.Errorf("Same(%+v, %+v): the families differ", a, v4)
	}
}
