// Package sockets parses --listen addresses, binds them once, and describes
// them for the workers that inherit them.
//
// gm2-init binds every listener itself, before any worker starts, and keeps
// its copy of each descriptor open for its whole life. That is what makes
// reloads lossless: the kernel keeps one accept queue per socket, and a
// connection that arrives while no worker is accepting waits in that queue
// instead of being refused. Workers receive the descriptors with the systemd
// socket-activation protocol (fd 3, 4, …; LISTEN_FDS, LISTEN_FDNAMES,
// LISTEN_PID).
package sockets

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/gm2-init/gm2-init/internal/echo"
)

// Network is the kind of socket a Spec binds.
type Network string

const (
	TCP      Network = "tcp"      // stream, IPv4 and/or IPv6
	UDP      Network = "udp"      // datagram, IPv4 and/or IPv6
	Unix     Network = "unix"     // stream, unix domain (a path)
	Unixgram Network = "unixgram" // datagram, unix domain
)

// Spec is one parsed --listen value.
type Spec struct {
	Name    string  // LISTEN_FDNAMES entry
	Network Network // what to bind
	// Family narrows TCP/UDP: "" (both, dual-stack where the host allows),
	// "4" or "6" (from tcp4://, udp6://…).
	Family string
	// Addr is host:port for TCP/UDP (host may be empty: every interface), or
	// the socket path for Unix/Unixgram.
	Addr string
	// Raw is the value as the user wrote it (without surrounding white
	// space, which a multi-line GM2_LISTEN adds), for messages.
	Raw string
	// DualStack makes an explicit unspecified IPv6 host ("[::]:3000")
	// accept IPv4 too (IPV6_V6ONLY off), as Node's listen(port, '::')
	// does. Only on-demand requests set it; --listen [::]:PORT is IPv6 only.
	DualStack bool
	// ReuseAddr sets SO_REUSEADDR on a UDP socket (dgram's reuseAddr).
	// TCP sockets always get it.
	ReuseAddr bool
	// Named tells that Name was given (NAME=ADDR) rather than derived
	// from the address (tcp-8080): UniqueNames refuses a given name twice
	// and renames derived ones that clash.
	Named bool
}

// String renders the spec in the canonical URL-ish form used in logs.
func (s Spec) String() string {
	switch s.Network {
	case Unix, Unixgram:
		return string(s.Network) + "://" + s.Addr
	}
	return string(s.Network) + s.Family + "://" + s.Addr
}

// Port returns the TCP/UDP port number, or 0 for unix sockets.
func (s Spec) Port() int {
	if s.Network == Unix || s.Network == Unixgram {
		return 0
	}
	_, p, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Accepted is the list of forms, for error messages.
const Accepted = "[NAME=]ADDR with ADDR one of :PORT, HOST:PORT, [IPv6]:PORT, tcp://HOST:PORT, tcp4://…, tcp6://…, udp://HOST:PORT, udp4://…, udp6://…, unix:///path or unixgram:///path (PORT 0–65535)"

// ParseSpec parses one --listen value. The error text names the value and
// the accepted forms; the caller adds the flag or variable name.
func ParseSpec(raw string) (Spec, error) {
	v := strings.TrimSpace(raw)
	s := Spec{Raw: v}
	if v == "" {
		return s, fmt.Errorf("empty address; accepted: %s", Accepted)
	}
	// NAME=ADDR. An address never contains '=' before its scheme, so the
	// first '=' (if it comes before any '/' or ':') separates a name.
	if i := strings.IndexByte(v, '='); i >= 0 && !strings.ContainsAny(v[:i], ":/[") {
		s.Name, s.Named = v[:i], true
		v = v[i+1:]
		if err := checkName(s.Name); err != nil {
			return s, fmt.Errorf("address %s: %w", quote(raw), err)
		}
	}
	scheme := "tcp"
	if i := strings.Index(v, "://"); i >= 0 {
		scheme, v = strings.ToLower(v[:i]), v[i+3:]
	}
	switch scheme {
	case "tcp", "tcp4", "tcp6":
		s.Network, s.Family = TCP, strings.TrimPrefix(scheme, "tcp")
	case "udp", "udp4", "udp6":
		s.Network, s.Family = UDP, strings.TrimPrefix(scheme, "udp")
	case "unix", "unixgram":
		s.Network = Network(scheme)
		if !strings.HasPrefix(v, "/") {
			return s, fmt.Errorf("address %s: a unix socket needs an absolute path (unix:///run/app.sock)", quote(raw))
		}
		s.Addr = filepath.Clean(v)
		if s.Addr == "/" {
			return s, fmt.Errorf("address %s: %s is not a socket path", quote(raw), quote(v))
		}
		if strings.ContainsFunc(s.Addr, unicode.IsControl) {
			return s, fmt.Errorf("address %s: a socket path cannot hold control characters (NUL, newline …)", quote(raw))
		}
		if strings.TrimSpace(s.Addr) != s.Addr {
			// "unix:/// /" would be "/ ", which no message shows legibly.
			return s, fmt.Errorf("address %s: a socket path cannot end in white space", quote(raw))
		}
		if len(s.Addr) > 107 {
			return s, fmt.Errorf("address %s: unix socket path longer than 107 bytes", quote(raw))
		}
		if s.Name == "" {
			s.Name = defaultName(string(s.Network) + "-" + filepath.Base(s.Addr))
		}
		return s, nil
	default:
		return s, fmt.Errorf("address %s: unknown scheme %s; accepted: %s", quote(raw), quote(scheme), Accepted)
	}
	if v = bareport(v); !strings.Contains(v, ":") {
		return s, fmt.Errorf("address %s: missing port; accepted: %s", quote(raw), Accepted)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return s, fmt.Errorf("address %s: %v; accepted: %s", quote(raw), strings.TrimPrefix(err.Error(), "address "+v+": "), Accepted)
	}
	n, ok := parsePort(port)
	if !ok {
		return s, fmt.Errorf("address %s: port %s is not a number from 0 to 65535", quote(raw), quote(port))
	}
	if host != "" {
		ip := net.ParseIP(host)
		if ip == nil && host != "localhost" {
			return s, fmt.Errorf("address %s: host %s is not an IP address (use 0.0.0.0, ::, 127.0.0.1, ::1 or localhost)", quote(raw), quote(host))
		}
		if ip != nil && ((s.Family == "4" && ip.To4() == nil) || (s.Family == "6" && ip.To4() != nil && !strings.Contains(host, ":"))) {
			return s, fmt.Errorf("address %s: host %s does not match the %s scheme", quote(raw), host, scheme)
		}
	}
	s.Addr = net.JoinHostPort(host, strconv.Itoa(n))
	if s.Name == "" {
		s.Name = fmt.Sprintf("%s-%d", s.Network, n)
	}
	return s, nil
}

// UniqueNames makes the names of listeners passed to the same workers
// distinct, as LISTEN_FDNAMES needs them to tell the sockets apart. A name
// given twice (a=:1 and a=:2) is an error naming both values. A derived
// name that another listener has too is made longer, in place: first by
// the scheme's family (tcp4://:8080 and tcp6://:8080 become tcp4-8080 and
// tcp6-8080), then by the host or the socket's path (127.0.0.1:8080 and
// [::1]:8080 become tcp-127.0.0.1-8080 and tcp-__1-8080), then, for the
// same address twice (port 0), by the position (tcp-0-1, tcp-0-2); a
// listener alone keeps its short name.
func UniqueNames(specs []Spec) error {
	for i, a := range specs {
		for _, b := range specs[:i] {
			if a.Named && b.Named && a.Name == b.Name {
				return fmt.Errorf("name %s is given to both %s and %s; give each listener its own name (LISTEN_FDNAMES tells them apart by name)",
					quote(a.Name), quote(b.Raw), quote(a.Raw))
			}
		}
	}
	// Longer names, in two steps: the family, then the host or path.
	for step := 0; step < 2; step++ {
		clash := clashing(specs)
		for i := range specs {
			if clash[i] {
				specs[i].Name = specs[i].longerName(step)
			}
		}
	}
	// The same address twice: port 0, a new port per socket.
	for i, c := range clashing(specs) {
		if c {
			specs[i].Name += "-" + strconv.Itoa(i+1)
		}
	}
	for i, c := range clashing(specs) {
		if c {
			return fmt.Errorf("address %s: its name %s is another listener's; give it a name (NAME=ADDR)", quote(specs[i].Raw), quote(specs[i].Name))
		}
	}
	return nil
}

// longerName is the name UniqueNames gives a derived name that clashes:
// at step 0 with the scheme's family (tcp4-8080), at step 1 with the host
// or the socket's path (tcp-127.0.0.1-8080, unix-_run_a_app.sock). It is
// the name unchanged when the step has nothing to add.
func (s Spec) longerName(step int) string {
	if s.Network == Unix || s.Network == Unixgram {
		if step == 0 {
			return s.Name
		}
		return defaultName(string(s.Network) + "-" + s.Addr)
	}
	host, port, _ := net.SplitHostPort(s.Addr)
	switch {
	case step == 0 && s.Family != "":
		return string(s.Network) + s.Family + "-" + port
	case step == 1 && host != "":
		return defaultName(string(s.Network) + s.Family + "-" + host + "-" + port)
	}
	return s.Name
}

// clashing marks the listeners with a derived name that another listener
// of specs has too.
func clashing(specs []Spec) []bool {
	out := make([]bool, len(specs))
	for i, a := range specs {
		for j, b := range specs {
			if i != j && !a.Named && a.Name == b.Name {
				out[i] = true
			}
		}
	}
	return out
}

// bareport reads a bare port ("8080") as every interface (":8080"), the
// one rule for --listen and --health-addr; any other v is returned as is.
func bareport(v string) string {
	if _, err := strconv.Atoi(v); err == nil {
		return ":" + v // a sign is refused with the port's range
	}
	return v
}

// parsePort reads a port: digits only (strconv.Atoi would take "+80"),
// from 0 to 65535.
func parsePort(p string) (int, bool) {
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	return n, err == nil && n <= 65535
}

// defaultName makes a name derived from a socket path fit what checkName
// accepts: a ':' in the path would otherwise split LISTEN_FDNAMES.
func defaultName(name string) string {
	return strings.Map(func(r rune) rune {
		if nameChar(r) {
			return r
		}
		return '_'
	}, name)
}

// checkName enforces what LISTEN_FDNAMES can carry: the list is
// colon-separated and systemd limits names to 255 printable characters.
func checkName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("name %s must be 1 to 255 characters", quote(name))
	}
	for _, r := range name {
		if !nameChar(r) {
			return fmt.Errorf("name %s may only hold letters, digits, '-', '_' and '.'", quote(name))
		}
	}
	return nil
}

// quote shows a user's value in a message: quoted, one line, cut short.
func quote(v string) string { return echo.Quote(v) }

func nameChar(r rune) bool {
	return r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
}
