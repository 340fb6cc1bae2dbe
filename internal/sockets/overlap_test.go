package sockets

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
)

// Overlap claims to predict EADDRINUSE between two listeners: check it
// against the kernel, with real binds on loopback.
func TestOverlapMatchesKernel(t *testing.T) {
	probe, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(probe.Addr().String())
	probe.Close()
	ipv6 := true
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		ipv6 = false
	} else {
		l.Close()
	}
	forms := []string{
		":P", "tcp4://:P", "0.0.0.0:P", "127.0.0.1:P", "localhost:P",
		"tcp6://:P", "[::]:P", "[::1]:P", "tcp6://localhost:P", "udp://:P", "udp://127.0.0.1:P",
	}
	for i, a := range forms {
		for _, b := range forms[i+1:] {
			if !ipv6 && (strings.Contains(a+b, "6") || strings.Contains(a+b, "[")) {
				continue
			}
			sa, err := ParseSpec(strings.ReplaceAll(a, "P", port))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := ParseSpec(strings.ReplaceAll(b, "P", port))
			if err != nil {
				t.Fatal(err)
			}
			predicted := Overlap(sa, sb)
			if Overlap(sb, sa) != predicted {
				t.Errorf("Overlap(%s, %s) is not symmetric", a, b)
			}
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

func TestOverlapPortZeroAndUnix(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{":0", ":0", false}, // the kernel picks two ports
		{"unix:///run/a.sock", "unix:///run/a.sock", true},
		{"unix:///run/a.sock", "unixgram:///run/a.sock", true},
		{"unix:///run/a.sock", "unix:///run/b.sock", false},
		{":8080", "udp://:8080", false},
		{":8080", "127.0.0.1:8081", false},
	} {
		a, _ := ParseSpec(tc.a)
		b, _ := ParseSpec(tc.b)
		if got := Overlap(a, b); got != tc.want {
			t.Errorf("Overlap(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	a, _ := ParseSpec("api=:8080")
	b, _ := ParseSpec("tcp://:8080")
	c, _ := ParseSpec("0.0.0.0:8080")
	z, _ := ParseSpec("127.0.0.1:0")
	u, _ := ParseSpec("unix:///run/a.sock")
	if !Same(a, b) || Same(a, c) || Same(z, z) || !Same(u, u) {
		t.Errorf("Same: %+v %+v %+v %+v %+v", a, b, c, z, u)
	}
}
