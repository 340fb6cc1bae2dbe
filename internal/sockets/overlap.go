package sockets

import "net"

// Overlap tells whether binding both specs fails with EADDRINUSE: the same
// socket path, or the same network and port (not 0, which the kernel picks)
// on addresses that intersect. It follows how Bind binds: :PORT is
// dual-stack, an explicit [::] is IPv6 only, localhost is one loopback.
//
// It lets callers refuse a clash before anything is bound (one clear line,
// exit 2) instead of reporting a confusing "address in use" whose other
// holder is gm2-init itself.
func Overlap(a, b Spec) bool {
	switch {
	case isUnixSpec(a) || isUnixSpec(b):
		return isUnixSpec(a) && isUnixSpec(b) && a.Addr == b.Addr
	case a.Network != b.Network || a.Port() == 0 || a.Port() != b.Port():
		return false
	}
	a4, a6 := coverage(a)
	b4, b6 := coverage(b)
	return meet(a4, b4) || meet(a6, b6)
}

// Same tells whether two specs name the very same socket (same network,
// family and address): two apps of a process file that name it share one
// socket, as two PM2 cluster apps on one port share their master's handle.
// Port 0 is never the same socket twice: the kernel picks a port per bind.
func Same(a, b Spec) bool {
	if !isUnixSpec(a) && a.Port() == 0 {
		return false
	}
	return a.Network == b.Network && a.Family == b.Family && a.Addr == b.Addr
}

func isUnixSpec(s Spec) bool { return s.Network == Unix || s.Network == Unixgram }

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
