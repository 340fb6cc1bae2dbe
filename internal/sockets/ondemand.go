package sockets

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxShared is the default cap on sockets bound on demand
// (--max-shared-ports).
const DefaultMaxShared = 64

// ErrSharedLimit is wrapped by Registry.Get's error when the cap on
// on-demand sockets is reached. The same error also wraps unix.EMFILE, the
// errno the app's listen() reports ("too many open files": gm2-init will
// hold no more sockets).
var ErrSharedLimit = errors.New("on-demand socket limit reached")

// Shared is a socket gm2-init bound on the first request of a worker and
// holds until it exits, exactly like a --listen socket: every worker of the
// app that asks for the same address gets the same socket.
type Shared struct {
	// ID numbers the on-demand sockets from 1 in the order they were bound;
	// it never changes and is never reused. Workers report it when they
	// listen on the socket (see the preload's "shared" event).
	ID int
	// App is the app that asked first; only that app's workers get it.
	App string
	// Listener holds the socket. Its Spec.Raw is the canonical address.
	Listener *Listener
	// Created is when the socket was bound.
	Created time.Time

	data    []byte // opaque server data the first requester offered (Node: TLS ticket keys)
	holders int    // servers of live workers on the socket (Hold, Release)
}

// Registry binds TCP and UDP sockets on demand and keeps them for the life of
// gm2-init. It is safe for concurrent use: each worker's channel is served by
// its own goroutine.
//
// A socket is keyed by the app and by what was asked (network, family,
// address, port, dual-stack): two workers asking the same get the same
// socket; asking a different address of the same port binds again and gets
// what the kernel says (EADDRINUSE when the addresses overlap).
type Registry struct {
	max      int
	reserved []reservedPort

	mu     sync.Mutex
	byKey  map[string]*Shared
	list   []*Shared
	own    []ownPort
	closed bool
}

// ownPort is an address gm2-init itself listens on for its own use (the
// health endpoints), named when an app's bind fails on it.
type ownPort struct {
	spec Spec
	who  string
}

// NoteOwnPort records that gm2-init itself listens on spec for who (say
// "gm2-init's health endpoints (--health-addr)"): an on-demand bind that
// fails with EADDRINUSE on an address that overlaps it names it, instead
// of "another process listens there".
func (r *Registry) NoteOwnPort(spec Spec, who string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.own = append(r.own, ownPort{spec, who})
}

// reservedPort is a --listen port: passed to workers as an fd, never bound
// again on demand.
type reservedPort struct {
	network Network
	port    int
}

// NewRegistry returns a registry that binds at most max sockets (at least 1;
// DefaultMaxShared when max is 0 or less) and never binds a TCP or UDP port
// that one of listen (the --listen sockets) already holds.
func NewRegistry(max int, listen []*Listener) *Registry {
	if max <= 0 {
		max = DefaultMaxShared
	}
	r := &Registry{max: max, byKey: map[string]*Shared{}}
	for _, l := range listen {
		if l == nil {
			continue
		}
		if p := boundPort(l); p > 0 {
			r.reserved = append(r.reserved, reservedPort{network: l.Spec.Network, port: p})
		}
	}
	return r
}

// boundPort is the port l really holds (the kernel's choice for port 0).
func boundPort(l *Listener) int {
	if l.Spec.Network != TCP && l.Spec.Network != UDP {
		return 0
	}
	if _, p, err := net.SplitHostPort(l.Bound); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			return n
		}
	}
	return l.Spec.Port()
}

// Max returns the cap on on-demand sockets.
func (r *Registry) Max() int { return r.max }

// Get returns the socket of app for s, binding it with the same code as
// --listen (Bind) if it is the first request. created is true for the call
// that bound it. s must be TCP or UDP with a port from 1 to 65535: port 0
// (an ephemeral port) and unix sockets belong to the process that asks, not
// to gm2-init.
//
// Errors wrap the errno an app's own bind would have met, so that a Node
// worker gets the same error code: unix.EADDRINUSE (taken by another
// process, or a --listen port), unix.EACCES (a port below 1024 without the
// privilege), unix.EADDRNOTAVAIL, unix.EINVAL (a request gm2-init does not
// share), and unix.EMFILE together with ErrSharedLimit past the cap.
func (r *Registry) Get(app string, s Spec) (sh *Shared, created bool, err error) {
	if s.Network != TCP && s.Network != UDP {
		return nil, false, fmt.Errorf("share %s: only TCP and UDP ports are shared on demand: %w", s, unix.EINVAL)
	}
	port := s.Port()
	if port < 1 || port > 65535 {
		return nil, false, fmt.Errorf("share %s: port %d: an ephemeral or invalid port is never shared: %w", s, port, unix.EINVAL)
	}
	key := sharedKey(app, s)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, fmt.Errorf("share %s: gm2-init is shutting down: %w", s, unix.ECONNABORTED)
	}
	if sh := r.byKey[key]; sh != nil {
		return sh, false, nil
	}
	for _, rp := range r.reserved {
		if rp.network == s.Network && rp.port == port {
			return nil, false, fmt.Errorf("share %s: port %d is a listen port of this gm2-init (--listen, or the listen of an app of the process file), passed as an fd to the workers that name it: name it in this app's listen too to share it: %w", s, port, unix.EADDRINUSE)
		}
	}
	if len(r.list) >= r.max {
		return nil, false, fmt.Errorf("share %s: %w: %d sockets are shared already (raise --max-shared-ports / GM2_MAX_SHARED_PORTS): %w", s, ErrSharedLimit, len(r.list), unix.EMFILE)
	}
	if s.Raw == "" {
		s.Raw = s.String()
	}
	if s.Name == "" {
		s.Name = fmt.Sprintf("%s-%d", s.Network, port)
	}
	l, err := bindOne(s)
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			if why := r.heldByUs(app, s); why != "" {
				return nil, false, fmt.Errorf("share %s: port %d is %s: %w", s, port, why, unix.EADDRINUSE)
			}
		}
		return nil, false, fmt.Errorf("share: %w", err)
	}
	// A worker receives this very open file (SCM_RIGHTS), not a copy opened
	// anew: libuv accepts on a received socket until EAGAIN without making
	// it non-blocking first, so a blocking one would hang the worker's
	// event loop in accept(2). gm2-init itself never reads it.
	if err := setNonblock(l.File); err != nil {
		l.File.Close()
		return nil, false, fmt.Errorf("share %s: %w", s, err)
	}
	sh = &Shared{ID: len(r.list) + 1, App: app, Listener: l, Created: time.Now()}
	r.byKey[key] = sh
	r.list = append(r.list, sh)
	return sh, true, nil
}

// heldByUs says which of gm2-init's own sockets overlapping s made its bind
// fail, "" when none does (another process holds the port): "another
// process listens there" would send the user looking for a process that
// is gm2-init. r.mu is held.
func (r *Registry) heldByUs(app string, s Spec) string {
	for _, o := range r.own {
		if Overlap(o.spec, s) {
			return o.who
		}
	}
	for _, sh := range r.list {
		if !Overlap(sh.Listener.Spec, s) {
			continue
		}
		if sh.App == app {
			return fmt.Sprintf("shared already with this app's workers at %s (a listen() on another address of the same port)", sh.Listener.Bound)
		}
		return fmt.Sprintf("shared already with the workers of app %q (%s): two apps share a port when both name it in their listen", sh.App, sh.Listener.Bound)
	}
	return ""
}

// sharedKey identifies what was asked; Raw and Name do not take part.
func sharedKey(app string, s Spec) string {
	return app + "\x00" + string(s.Network) + "\x00" + s.Family + "\x00" + s.Addr +
		"\x00" + strconv.FormatBool(s.DualStack) + "\x00" + strconv.FormatBool(s.ReuseAddr)
}

// ShareData records data as the server data of sh if none was recorded yet,
// and returns what is recorded. Node's cluster primary does the same with
// the data a worker sends in its query (a TLS server's session ticket keys),
// so that every worker of the port shares one value and a TLS session
// resumes on any of them. An empty offer records nothing; data longer than
// maxData is not recorded (and nil is returned when nothing was).
func (r *Registry) ShareData(sh *Shared, data []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sh.data == nil && len(data) > 0 && len(data) <= maxData {
		sh.data = slices.Clone(data)
	}
	return sh.data
}

// maxData bounds the server data kept per socket: Node's TLS ticket keys
// take about 110 bytes.
const maxData = 4 << 10

// Hold records that a worker's server took socket id (it was passed to
// the worker), Release that one closed it or its worker is gone. A socket
// no server holds is still kept, as every on-demand socket is (a worker
// being restarted or reloaded takes it again), but its accept queue says
// nothing about a worker being stuck: see Serving.
func (r *Registry) Hold(id int) { r.addHolders(id, 1) }

// Release undoes one Hold of socket id.
func (r *Registry) Release(id int) { r.addHolders(id, -1) }

func (r *Registry) addHolders(id, d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id >= 1 && id <= len(r.list) {
		r.list[id-1].holders = max(r.list[id-1].holders+d, 0)
	}
}

// Serving tells whether some live worker's server holds sh: after an app
// stopped listening on a port (it closed that server, or a new version no
// longer uses it), the socket stays bound and a client's connection waits
// in its queue with nobody to take it, which is no stuck worker.
func (r *Registry) Serving(sh *Shared) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sh.holders > 0
}

// Shared returns the on-demand sockets in the order they were bound.
func (r *Registry) Shared() []*Shared {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// Len returns how many sockets are bound on demand.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.list)
}

// Lookup returns the socket with the given ID, or nil.
func (r *Registry) Lookup(id int) *Shared {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id < 1 || id > len(r.list) {
		return nil
	}
	return r.list[id-1]
}

// Close closes every socket and refuses later requests. Call it when
// gm2-init exits, never before: a socket closed while the app runs would
// drop the connections in its queue.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, sh := range r.list {
		sh.Listener.File.Close()
	}
}

func setNonblock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), true) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set non-blocking: %w", serr)
	}
	return nil
}
