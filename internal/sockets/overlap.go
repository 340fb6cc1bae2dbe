package sockets

import (
	"fmt"
	"net"
	"strconv"
)

// The rules below predict, before anything is bound, whether two sockets
// would clash with EADDRINUSE. They live here, next to Bind, because they
// restate how Bind binds: ":PORT" is one dual-stack socket (IPv6 with
// V6ONLY off), an explicit "[::]" is IPv6 only, "0.0.0.0" IPv4 only,
// "localhost" one loopback. TestOverlapMatchesKernel holds them to what the
// kernel does.

// OverlapError names two specs that cannot both be bound.
type OverlapError struct{ First, Second Spec }

func (e *OverlapError) Error() string {
	return fmt.Sprintf("%s and %s bind the same address", quote(e.First.Raw), quote(e.Second.Raw))
}

// CheckDistinct returns an *OverlapError for the first two specs that
// overlap: binding the second would otherwise fail with a confusing "address
// already in use (another process listens there)" when the other listener
// is gm2-init's own.
func CheckDistinct(specs []Spec) error {
	for i, a := range specs {
		for _, b := range specs[:i] {
			if Overlap(a, b) {
				return &OverlapError{First: b, Second: a}
			}
		}
	}
	return nil
}

// Overlap tells whether binding both specs fails with EADDRINUSE: the same
// socket path, or the same network and port (not 0, which the kernel picks)
// on addresses that intersect.
func Overlap(a, b Spec) bool {
	switch {
	case a.isUnix() || b.isUnix():
		return a.isUnix() && b.isUnix() && a.Addr == b.Addr
	case a.Network != b.Network || a.Port() == 0 || a.Port() != b.Port():
		return false
	}
	a4, a6 := coverage(a)
	b4, b6 := coverage(b)
	return meet(a4, b4) || meet(a6, b6)
}

func (s Spec) isUnix() bool { return s.Network == Unix || s.Network == Unixgram }

// coverage returns the local address a TCP/UDP spec binds in each family:
// nil for none, the unspecified address for every one.
func coverage(s Spec) (v4, v6 net.IP) {
	host, _, _ := net.SplitHostPort(s.Addr)
	switch {
	case host == "localhost" && s.Family == "6":
		return nil, net.IPv6loopback
	case host == "localhost":
		return net.IPv4(127, 0, 0, 1).To4(), nil
	case host == "" && s.Family == "4":
		return net.IPv4zero.To4(), nil
	case host == "" && s.Family == "6":
		return nil, net.IPv6unspecified
	case host == "":
		return net.IPv4zero.To4(), net.IPv6unspecified
	}
	ip := net.ParseIP(host)
	if ip4 := ip.To4(); ip4 != nil {
		return ip4, nil
	}
	return nil, ip
}

func meet(x, y net.IP) bool {
	return x != nil && y != nil && (x.IsUnspecified() || y.IsUnspecified() || x.Equal(y))
}

// StdlibTCP describes, as a Spec that Overlap understands, what Go's
// net.Listen("tcp", addr) binds — which is not what Bind binds for the same
// text: Go makes every wildcard host, ":P", "0.0.0.0:P" and "[::]:P" alike,
// one dual-stack socket, and resolves "localhost" to 127.0.0.1. The health
// endpoints are bound that way, so "--health-addr [::]:P" clashes with
// "--listen 0.0.0.0:P" although Bind's "[::]:P" would not.
//
// addr is HOST:PORT with HOST empty, an IP address or localhost.
func StdlibTCP(addr string) (Spec, error) {
	host, _, port, err := stdlibHostPort(addr)
	if err != nil {
		return Spec{}, err
	}
	return Spec{Network: TCP, Addr: net.JoinHostPort(host, strconv.Itoa(port)), Raw: addr, Name: "health"}, nil
}

// StdlibTCPAddr is the address net.Listen("tcp", addr) binds for the
// forms StdlibTCP takes, as the *net.TCPAddr that net.ListenTCP binds and
// DialTCP reaches: a nil IP for every wildcard, 127.0.0.1 for localhost.
// gm2-init binds and probes its health address through it rather than
// net.Listen and net.Dial, whose string addresses link net's name
// resolver, about 190 kB of the binary, for names it never looks up:
// config refuses every host name but localhost.
func StdlibTCPAddr(addr string) (*net.TCPAddr, error) {
	_, ip, port, err := stdlibHostPort(addr)
	if err != nil {
		return nil, err
	}
	return &net.TCPAddr{IP: ip, Port: port}, nil
}

// stdlibHostPort reads addr for StdlibTCP and StdlibTCPAddr: the host as
// net.Listen binds it ("" for every wildcard, 127.0.0.1 for localhost), its
// IP (nil for a wildcard) and the port.
func stdlibHostPort(addr string) (host string, ip net.IP, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, 0, fmt.Errorf("address %s: %w", quote(addr), err)
	}
	port, ok := parsePort(p)
	if !ok {
		return "", nil, 0, fmt.Errorf("address %s: port %s is not a number from 0 to 65535", quote(addr), quote(p))
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if host == "" {
		return "", nil, port, nil
	}
	switch ip = net.ParseIP(host); {
	case ip == nil:
		return "", nil, 0, fmt.Errorf("address %s: host %s is not an IP address or localhost", quote(addr), quote(host))
	case ip.IsUnspecified():
		return "", nil, port, nil
	}
	return host, ip, port, nil
}

// Same tells whether two specs name the very same socket (same network,
// family and address): two apps of a process file that name it share one
// socket, as two PM2 cluster apps on one port share their master's handle.
// Port 0 is never the same socket twice: the kernel picks a port per bind.
func Same(a, b Spec) bool {
	if !a.isUnix() && a.Port() == 0 {
		return false
	}
	return a.Network == b.Network && a.Family == b.Family && a.Addr == b.Addr
}
