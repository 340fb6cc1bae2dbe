package preload

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Listener describes one socket gm2-init passes to its workers.
type Listener struct {
	// FD is the descriptor number in the worker (3 for the first).
	FD int
	// Proto is tcp, udp, unix or unixgram.
	Proto string
	// Addr is the bound address: host:port ("0.0.0.0:3000", "[::]:8443")
	// for tcp and udp, the path for unix and unixgram, '@' first for an
	// abstract socket.
	Addr string
}

// Valid reports why l cannot be written into GM2_LISTENERS, or nil.
func (l Listener) Valid() error {
	if l.FD < 3 {
		return fmt.Errorf("preload: listener fd %d: below 3", l.FD)
	}
	if l.Addr == "" {
		return fmt.Errorf("preload: listener fd %d: empty address", l.FD)
	}
	// ',' separates entries; NUL cannot be in the environment, and a line
	// break is refused so that the value stays one readable line.
	if strings.ContainsAny(l.Addr, ",\x00\n\r") {
		return fmt.Errorf("preload: listener fd %d: address %q contains ',' or a control character", l.FD, l.Addr)
	}
	switch l.Proto {
	case "tcp", "udp":
		_, port, err := net.SplitHostPort(l.Addr)
		if err != nil {
			return fmt.Errorf("preload: listener fd %d: address %q: %w", l.FD, l.Addr, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("preload: listener fd %d: address %q has no port in 1-65535", l.FD, l.Addr)
		}
	case "unix", "unixgram":
	default:
		return fmt.Errorf("preload: listener fd %d: protocol %q is none of tcp, udp, unix, unixgram", l.FD, l.Proto)
	}
	return nil
}

// ListenersEnv returns the value of GM2_LISTENERS for ls:
// "3=tcp:0.0.0.0:3000,4=udp:127.0.0.1:5353,5=unix:/run/app.sock".
// Listeners that Valid refuses are left out (a unix path with ',' cannot be
// described), and so is a second entry for the same fd; the preload then
// never takes those fds over. It returns "" when nothing is left.
func ListenersEnv(ls []Listener) string {
	var b strings.Builder
	seen := make(map[int]bool, len(ls))
	for _, l := range ls {
		if l.Valid() != nil || seen[l.FD] {
			continue
		}
		seen[l.FD] = true
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(l.FD))
		b.WriteByte('=')
		b.WriteString(l.Proto)
		b.WriteByte(':')
		b.WriteString(l.Addr)
	}
	return b.String()
}

// FromAddr describes the socket bound at a, to be passed as fd. It reports
// false for addresses Node cannot use or GM2_LISTENERS cannot name
// (unixpacket, other networks).
func FromAddr(fd int, a net.Addr) (Listener, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return Listener{FD: fd, Proto: "tcp", Addr: a.String()}, true
	case *net.UDPAddr:
		return Listener{FD: fd, Proto: "udp", Addr: a.String()}, true
	case *net.UnixAddr:
		if a.Net == "unix" || a.Net == "unixgram" {
			return Listener{FD: fd, Proto: a.Net, Addr: a.Name}, true
		}
	}
	return Listener{}, false
}
