package sockets

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"
)

// The socket-activation variables of gm2-init's own parent (systemd's
// .socket units, systemd-socket-activate, podman, another gm2-init).
const (
	EnvListenPid     = "LISTEN_PID"
	EnvListenFDs     = "LISTEN_FDS"
	EnvListenFDNames = "LISTEN_FDNAMES"
)

// FirstFD is the first descriptor of the protocol: the passed sockets are
// fds 3, 4, … in gm2-init as in its workers.
const FirstFD = 3

// maxInherited bounds LISTEN_FDS: a value beyond any real socket unit is a
// mistake, and each fd is inspected.
const maxInherited = 1024

// Activation is what the socket-activation variables of gm2-init's own
// environment say.
type Activation struct {
	// Count is the number of sockets passed to gm2-init (fds 3 … 3+Count-1):
	// LISTEN_FDS when LISTEN_PID is gm2-init's pid, else 0.
	Count int
	// Names has one entry per socket (LISTEN_FDNAMES); an entry is "" when
	// the parent gave no name.
	Names []string
	// Ignored says why variables that were set are not for gm2-init
	// (LISTEN_PID names another process: they leaked from an ancestor);
	// "" otherwise.
	Ignored string
}

// ParseActivation reads the values of LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES for the process self, as sd_listen_fds(3) does: the
// sockets are gm2-init's only when LISTEN_PID is its own pid. A malformed
// value is an error whose text names the variable and the accepted form.
func ParseActivation(listenPid, listenFDs, fdNames string, self int) (Activation, error) {
	var a Activation
	if listenFDs == "" {
		if listenPid != "" || fdNames != "" {
			a.Ignored = EnvListenFDs + " is not set"
		}
		return a, nil
	}
	if listenPid == "" {
		a.Ignored = EnvListenPid + " is not set (the sockets are for the process it names)"
		return a, nil
	}
	pid, err := strconv.Atoi(listenPid)
	if err != nil || pid <= 0 {
		return a, fmt.Errorf("%s=%q: not a pid (a positive decimal number)", EnvListenPid, listenPid)
	}
	if pid != self {
		a.Ignored = fmt.Sprintf("%s=%d is another process, not gm2-init (pid %d)", EnvListenPid, pid, self)
		return a, nil
	}
	n, err := strconv.Atoi(listenFDs)
	if err != nil || n < 0 || n > maxInherited {
		return a, fmt.Errorf("%s=%q: not a number of descriptors from 0 to %d", EnvListenFDs, listenFDs, maxInherited)
	}
	a.Count = n
	a.Names = make([]string, n)
	if fdNames == "" {
		return a, nil
	}
	names := strings.Split(fdNames, ":")
	if len(names) != n {
		return a, fmt.Errorf("%s=%q: %d names for %s=%d; one name per descriptor, separated by ':'", EnvListenFDNames, fdNames, len(names), EnvListenFDs, n)
	}
	for i, name := range names {
		if len(name) > 255 || strings.ContainsFunc(name, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }) {
			return a, fmt.Errorf("%s=%q: name %d (%q) must be up to 255 printable ASCII characters", EnvListenFDNames, fdNames, i+1, name)
		}
	}
	copy(a.Names, names)
	return a, nil
}

// Take turns the passed descriptors into Listeners, in order: what kind of
// socket each is, and its address, are read from the socket itself. A
// descriptor that is not a bound TCP, UDP or unix socket (and for stream
// sockets, listening) is an error: workers could not serve on it, and
// dropping it silently would hide a unit file mistake. On error nothing is
// kept: the caller is expected to exit.
func (a Activation) Take() ([]*Listener, error) {
	return takeFDs(FirstFD, a.Names[:a.Count])
}

// takeFDs is Take for the descriptors first, first+1, … (one per name).
func takeFDs(first int, names []string) ([]*Listener, error) {
	out := make([]*Listener, 0, len(names))
	for i, name := range names {
		fd := first + i
		spec, err := describeFD(fd, name)
		if err != nil {
			return nil, fmt.Errorf("%s: fd %d: %w", EnvListenFDs, fd, err)
		}
		out = append(out, &Listener{Spec: spec, Bound: spec.Addr, Inherited: true})
	}
	for i, l := range out {
		f, err := fileOf(first+i, l.Spec.String())
		if err != nil {
			CloseAll(out[:i])
			return nil, fmt.Errorf("%s: fd %d: %w", EnvListenFDs, first+i, err)
		}
		l.File = f
	}
	return out, nil
}

// describeFD reads what socket fd is and builds the Spec a --listen of the
// same address would have (so that the two can be compared), named name or,
// when name is "", like a --listen without NAME=.
func describeFD(fd int, name string) (Spec, error) {
	spec, err := describeSocket(fd)
	if err != nil {
		return Spec{}, err
	}
	if name != "" {
		spec.Name = name
	}
	spec.Raw = fmt.Sprintf("%s fd %d", EnvListenFDs, fd)
	return spec, nil
}

func describeSocket(fd int) (Spec, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Spec{}, fmt.Errorf("not open: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return Spec{}, fmt.Errorf("not a socket (%s); gm2-init takes over TCP, UDP and unix sockets only", fileKind(st.Mode))
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return Spec{}, fmt.Errorf("SO_DOMAIN: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return Spec{}, fmt.Errorf("SO_TYPE: %w", err)
	}
	var stream bool
	switch typ {
	case unix.SOCK_STREAM:
		stream = true
		acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil {
			return Spec{}, fmt.Errorf("SO_ACCEPTCONN: %w", err)
		}
		if acc == 0 {
			return Spec{}, errors.New("a stream socket that is not listening (a connection, as with Accept=yes); gm2-init needs listening sockets (Accept=no)")
		}
	case unix.SOCK_DGRAM:
	default:
		return Spec{}, fmt.Errorf("socket type %d; gm2-init takes over stream and datagram sockets only", typ)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return Spec{}, fmt.Errorf("getsockname: %w", err)
	}
	var raw string
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if domain != unix.AF_INET {
			return Spec{}, fmt.Errorf("address family %d with an IPv4 address", domain)
		}
		raw = inetRaw(stream, "4", net.IP(a.Addr[:]), a.Port)
	case *unix.SockaddrInet6:
		family := "6"
		if ip := net.IP(a.Addr[:]); ip.IsUnspecified() {
			if v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err == nil && v6only == 0 {
				family = "" // [::] taking IPv4 too, as --listen :PORT binds
			}
		}
		raw = inetRaw(stream, family, net.IP(a.Addr[:]), a.Port)
	case *unix.SockaddrUnix:
		return unixSpec(stream, a.Name)
	default:
		return Spec{}, fmt.Errorf("address family %d; gm2-init takes over IPv4, IPv6 and unix sockets only", domain)
	}
	return ParseSpec(raw)
}

func inetRaw(stream bool, family string, ip net.IP, port int) string {
	scheme := "udp"
	if stream {
		scheme = "tcp"
	}
	return scheme + family + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// unixSpec describes a unix socket. ParseSpec does not take abstract
// ("@name") addresses, which a socket unit may pass (ListenStream=@name), so
// the Spec is built here.
func unixSpec(stream bool, path string) (Spec, error) {
	network := Unixgram
	if stream {
		network = Unix
	}
	// x/sys/unix reports an unnamed socket as "@" (an abstract name would
	// follow the @).
	if path == "" || path == "@" {
		return Spec{}, errors.New("a unix socket bound to no address (one end of a socket pair?)")
	}
	if strings.HasPrefix(path, "@") {
		name := defaultName(string(network) + "-" + path[1:])
		return Spec{Name: name, Network: network, Addr: path}, nil
	}
	return ParseSpec(string(network) + "://" + path)
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFDIR:
		return "a directory"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}

// fileOf wraps fd in an *os.File that the Go runtime does not poll.
//
// A socket from the parent may be in non-blocking mode, and os.NewFile
// registers a non-blocking descriptor with the runtime's poller: every
// connection that arrived would then wake gm2-init, which must sleep while
// its workers serve. The flag belongs to the open file description, which the
// parent and the workers share, so it is cleared only for the moment of
// NewFile and then restored as it was: nobody accepts on it yet.
func fileOf(fd int, name string) (*os.File, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("F_GETFL: %w", err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		return os.NewFile(uintptr(fd), name), nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("F_SETFL: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags); err != nil {
		return nil, fmt.Errorf("F_SETFL: %w", err)
	}
	return f, nil
}

// Open gives the workers their listeners: every spec in order — bound now,
// or, when an inherited socket has the same address (Matches), that socket
// under the spec's name instead of a second bind — then the inherited
// sockets no spec took, in their LISTEN_FDS order. It takes ownership of
// inherited: on error everything is closed, as Bind does.
func Open(specs []Spec, inherited []*Listener) ([]*Listener, error) {
	out := make([]*Listener, 0, len(specs)+len(inherited))
	taken := make([]bool, len(inherited))
	for _, s := range specs {
		if i := match(s, inherited, taken); i >= 0 {
			taken[i] = true
			out = append(out, &Listener{Spec: s, Bound: inherited[i].Bound, File: inherited[i].File, Inherited: true})
			continue
		}
		l, err := bindOne(s)
		if err != nil {
			CloseAll(out)
			for i, l := range inherited {
				if !taken[i] {
					l.File.Close()
				}
			}
			return nil, err
		}
		out = append(out, l)
	}
	for i, l := range inherited {
		if !taken[i] {
			out = append(out, l)
		}
	}
	return out, nil
}

// Matches reports, for each spec, the index in inherited of the socket Open
// would use for it, or -1 when Open would bind it: what --dry-run shows
// without binding anything.
func Matches(specs []Spec, inherited []*Listener) []int {
	taken := make([]bool, len(inherited))
	out := make([]int, len(specs))
	for j, s := range specs {
		out[j] = match(s, inherited, taken)
		if out[j] >= 0 {
			taken[out[j]] = true
		}
	}
	return out
}

func match(s Spec, inherited []*Listener, taken []bool) int {
	for i, l := range inherited {
		if !taken[i] && s.Matches(l.Spec) {
			return i
		}
	}
	return -1
}

// Matches tells whether a socket described by got (an inherited one) is
// what binding s would give, so that s can use it instead of binding the
// same address a second time (which would fail: it is in use):
//   - the same network (tcp, udp, unix, unixgram);
//   - for TCP/UDP, the same port, never 0 ("any free port" is a new
//     socket); a host of every interface (:8080) matches a wildcard socket
//     (0.0.0.0 or [::]); localhost matches the loopback address; any other
//     host, the same IP; tcp4:// and tcp6:// want a socket of that family;
//   - for unix sockets, the same path.
func (s Spec) Matches(got Spec) bool {
	if s.Network != got.Network {
		return false
	}
	if s.Network == Unix || s.Network == Unixgram {
		return s.Addr == got.Addr
	}
	host, port, err := net.SplitHostPort(s.Addr)
	ghost, gport, gerr := net.SplitHostPort(got.Addr)
	if err != nil || gerr != nil || port != gport || port == "0" {
		return false
	}
	gip := net.ParseIP(ghost)
	if gip == nil {
		return false
	}
	gotV4 := gip.To4() != nil
	if (s.Family == "4" && !gotV4) || (s.Family == "6" && gotV4) {
		return false
	}
	switch host {
	case "":
		return gip.IsUnspecified()
	case "localhost":
		if s.Family == "6" {
			return gip.Equal(net.IPv6loopback)
		}
		return gip.Equal(net.IPv4(127, 0, 0, 1))
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.Equal(gip)
}
