// Package control is how `gm2-init reload|status|scale`, run inside the
// container (docker exec, kubectl exec), reach the gm2-init that is PID 1
// of that container: PM2's `pm2 reload api`, `pm2 ls` and `pm2 scale api 3`
// without a daemon of its own.
//
// # Where the socket is, and why there
//
// The server binds a unix stream socket at
//
//	BASE/gm2-init-ctl.<ino>/control.sock
//
// where <ino> is the inode of the PID namespace gm2-init runs in
// (/proc/self/ns/pid) and BASE the first of DefaultDirs that takes a
// private directory (mode 0700, owned by gm2-init's user). A client
// computes the same name from its own /proc/self/ns/pid: `docker exec` and
// `kubectl exec` put it in the container's PID namespace, so it finds its
// own container's gm2-init even where /run or /tmp are shared with other
// gm2-inits — containers with a shared /tmp volume, tests that run several
// gm2-inits side by side on one host — and never another's.
//
// # Who may talk to whom
//
//   - The kernel: only the directory's owner (gm2-init's user) and root can
//     reach a socket in a 0700 directory.
//   - The server: SO_PEERCRED of every connection; uid 0 or gm2-init's own
//     uid, anything else gets a one-line refusal and is logged (a process
//     with CAP_DAC_OVERRIDE but another uid would pass the directory).
//   - The client: before it sends anything, SO_PEERCRED of the server must
//     name a process of its own PID namespace (not a nested one, not an
//     invisible one: pid 0), and the directory must belong to that
//     process's uid and be closed to others — so a socket planted by
//     another user, or by a gm2-init in a nested namespace, is not taken
//     for the container's gm2-init.
//
// # Bounds
//
// At most MaxConns commands at once (more are told "busy"), requests of at
// most 4 KiB read within a few seconds, one goroutine per connection owned
// by the server and ended by Close, and a bounded wait for a reload.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
)

const (
	// maxRequest bounds one request line.
	maxRequest = 4 << 10
	// defaultMaxConns bounds the commands served at once.
	defaultMaxConns = 8
	// readTimeout bounds how long a client may take to send its request.
	readTimeout = 5 * time.Second
	// writeTimeout bounds how long a client may take to read the answer.
	writeTimeout = 10 * time.Second
	// closeGrace is how long Close lets the handlers answer before it
	// closes their connections: a part of the stop budget.
	closeGrace = appspec.CloseGrace
	// DefaultWaitTimeout bounds how long a reload is waited for before the
	// client is told it is still going on.
	DefaultWaitTimeout = 10 * time.Minute
)

// Options configure Listen.
type Options struct {
	Supervisor Supervisor
	// Status returns the document GET /status serves
	// (health.StatusDocument's Body): `gm2-init status` answers with it,
	// so that the command and the endpoint never differ. Required.
	Status func(ctx context.Context) ([]byte, error)
	Log    zerolog.Logger
	// Dirs are the base directories tried in order; nil means
	// DefaultDirs(). Clients must look in the same ones.
	Dirs []string
	// MaxConns bounds the commands served at once; 0 means 8.
	MaxConns int
	// WaitTimeout bounds the wait for a reload or scale; 0 means
	// DefaultWaitTimeout.
	WaitTimeout time.Duration
	// ReadTimeout bounds the wait for a request; 0 means 5 s.
	ReadTimeout time.Duration
}

// Server is the control socket of one gm2-init.
type Server struct {
	opts Options
	ln   *net.UnixListener
	dir  string
	path string

	ctx    context.Context // ends with Close: every handler's wait
	cancel context.CancelFunc
	wg     sync.WaitGroup // handlers
	slots  chan struct{}  // MaxConns tokens

	mu     sync.Mutex
	conns  map[*net.UnixConn]struct{}
	closed bool
}

// Listen binds the control socket of this PID namespace. An error means
// gm2-init runs without one (log it; the workers are not affected): no
// directory could be made private, or another gm2-init of the same PID
// namespace already serves it.
func Listen(o Options) (*Server, error) {
	if o.Supervisor == nil {
		return nil, errors.New("control: no supervisor")
	}
	if o.Status == nil {
		return nil, errors.New("control: no status document")
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = readTimeout
	}
	dirs := o.Dirs
	if dirs == nil {
		dirs = DefaultDirs()
	}
	key, err := namespaceKey()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	var errs []error
	for _, base := range dirs {
		ln, dir, err := listenIn(base, key)
		if err != nil {
			errs = append(errs, err)
			var busy *busyError
			if errors.As(err, &busy) {
				// The client would reach that one first anyway.
				return nil, fmt.Errorf("control socket: %w", err)
			}
			continue
		}
		s := &Server{opts: o, ln: ln, dir: dir, path: filepath.Join(dir, socketName),
			slots: make(chan struct{}, o.MaxConns), conns: map[*net.UnixConn]struct{}{}}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		return s, nil
	}
	return nil, fmt.Errorf("control socket: no directory could be used: %w", errors.Join(errs...))
}

// busyError: a live server already answers at the path.
type busyError struct {
	path string
	pid  int32
}

func (e *busyError) Error() string {
	return fmt.Sprintf("%s is served by another gm2-init of this PID namespace (pid %d); commands reach that one", e.path, e.pid)
}

func listenIn(base, key string) (*net.UnixListener, string, error) {
	dir := dirName(base, key)
	if err := privateDir(dir); err != nil {
		return nil, "", fmt.Errorf("%s: %w", base, err)
	}
	path := filepath.Join(dir, socketName)
	if _, err := os.Lstat(path); err == nil {
		// Live (another gm2-init here) or stale (a gm2-init that was
		// killed): only a stale one may be removed.
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			cred, _ := peerCred(c)
			c.Close()
			pid := int32(0)
			if cred != nil {
				pid = cred.Pid
			}
			return nil, "", &busyError{path: path, pid: pid}
		}
		if err := os.Remove(path); err != nil {
			return nil, "", fmt.Errorf("remove stale %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("bind %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, dir, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve accepts commands until Close. It returns nil after Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				// Out of descriptors or a transient failure: let the
				// system breathe, then go on.
				select {
				case <-s.ctx.Done():
					return nil
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			return fmt.Errorf("control socket %s: accept: %w", s.path, err)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.reply(c, response{Error: fmt.Sprintf("busy: %d control commands are running; try again", cap(s.slots))}, time.Second)
			c.Close()
			continue
		}
		if !s.track(c) {
			<-s.slots
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			defer s.untrack(c)
			s.handle(c)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c *net.UnixConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *net.UnixConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close stops accepting, ends every command's wait (a reload in progress
// goes on in the supervisor) so that each client hears "gm2-init is
// stopping", closes the connections still open after a short grace, waits
// for the handlers, and removes the socket and its directory.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeGrace):
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	os.Remove(s.dir)
	return err
}

// allowed tells whether peer, a uid, may send commands to a gm2-init
// running as self: root, or the user gm2-init runs as.
func allowed(peer uint32, self int) bool { return peer == 0 || int(peer) == self }

func (s *Server) handle(c *net.UnixConn) {
	cred, err := peerCred(c)
	if err != nil {
		s.opts.Log.Warn().Err(err).Msg("control socket: cannot read the peer's credentials; connection refused")
		s.reply(c, response{Error: "refused: the peer's credentials cannot be read"}, writeTimeout)
		return
	}
	if !allowed(cred.Uid, os.Geteuid()) {
		s.opts.Log.Warn().Int32("pid", cred.Pid).Uint32("uid", cred.Uid).Msg("control socket: command refused: only root and gm2-init's own user may control it")
		s.reply(c, response{Error: fmt.Sprintf("refused: uid %d may not control gm2-init (only root and uid %d, the user gm2-init runs as)", cred.Uid, os.Geteuid())}, writeTimeout)
		return
	}
	c.SetReadDeadline(time.Now().Add(s.opts.ReadTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(c, maxRequest+1), maxRequest+1).ReadSlice('\n')
	if err != nil {
		msg := "no complete request (one JSON line)"
		if len(line) > maxRequest {
			msg = fmt.Sprintf("request longer than %d bytes", maxRequest)
		}
		s.reply(c, response{Error: msg}, writeTimeout)
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		s.reply(c, response{Error: "malformed request: " + err.Error()}, writeTimeout)
		return
	}
	c.SetReadDeadline(time.Time{})
	s.reply(c, s.run(c, cred, req), writeTimeout)
}

// run executes one request.
func (s *Server) run(c *net.UnixConn, cred *unix.Ucred, req request) response {
	switch req.Cmd {
	case "status":
		ctx, cancel := context.WithTimeout(s.ctx, statusTimeout)
		defer cancel()
		b, err := s.opts.Status(ctx)
		if err != nil {
			return response{Error: err.Error()}
		}
		return response{OK: true, Status: b}
	case "reload", "scale":
	default:
		return response{Error: fmt.Sprintf("unknown command %q (accepted: status, reload, scale)", req.Cmd)}
	}
	snap := s.opts.Supervisor.Snapshot()
	if snap == nil {
		return response{Error: "gm2-init has no state yet; try again"}
	}
	if snap.ShuttingDown {
		return response{Error: "gm2-init is shutting down"}
	}
	names := make([]string, len(snap.Apps))
	instances := map[string]int{}
	for i, a := range snap.Apps {
		names[i] = a.Name
		instances[a.Name] = a.Instances
	}
	unknown := func(app string) response {
		return response{Error: fmt.Sprintf("unknown app %q (apps: %s)", app, strings.Join(names, ", "))}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.WaitTimeout)
	defer cancel()
	// A client that hangs up (Ctrl-C) ends the wait, not the command.
	defer watchHangup(c, cancel)()
	log := s.opts.Log.Info().Int32("pid", cred.Pid).Uint32("uid", cred.Uid)
	switch req.Cmd {
	case "reload":
		apps, every, bad, ok := reloadTargets(req.Apps, instances)
		if !ok {
			return unknown(bad)
		}
		var target []string // nil: every app, as SIGHUP
		if every {
			apps = names
		} else {
			target = apps
		}
		log.Strs("apps", apps).Msg("control: reload")
		if err := s.opts.Supervisor.Reload(ctx, target); err != nil {
			// The supervisor's error names each app that failed.
			return s.waitError(strings.Join(apps, ", "), false, ctx, err)
		}
		return response{OK: true, Message: "reloaded " + strings.Join(apps, ", ")}
	default: // scale
		app := req.App
		if _, ok := instances[app]; !ok && app == "all" {
			if len(names) != 1 {
				return response{Error: fmt.Sprintf("scale all: scale sets the workers of one app (PM2 has no scale all either): name it: gm2-init scale APP %s (apps: %s)",
					countText(req.N, req.Delta), strings.Join(names, ", "))}
			}
			app = names[0] // the one app there is
		}
		if _, ok := instances[app]; !ok {
			return unknown(app)
		}
		log.Str("app", app).Int("n", req.N).Bool("delta", req.Delta).Msg("control: scale")
		from, to, err := s.opts.Supervisor.Scale(ctx, app, req.N, req.Delta)
		if err != nil {
			return s.waitError(app, true, ctx, err)
		}
		return response{OK: true, Message: fmt.Sprintf("%s: %d instances (was %d)", app, to, from)}
	}
}

// reloadTargets reads the apps of a reload request: each named once, in
// the order given; every is set when none is named or one of them is
// "all" (PM2's `pm2 reload all`; an app named all is one of every app).
// bad is the first name that is no app's, and ok false then (bad may
// be "", which no app is named).
func reloadTargets(req []string, instances map[string]int) (apps []string, every bool, bad string, ok bool) {
	if len(req) == 0 {
		return nil, true, "", true
	}
	seen := map[string]bool{}
	for _, a := range req {
		switch {
		case a == "all":
			every = true
		case seen[a]:
		default:
			if _, ok := instances[a]; !ok {
				return nil, false, a, false // "" too: no app has an empty name
			}
			seen[a] = true
			apps = append(apps, a)
		}
	}
	return apps, every, "", true
}

// countText spells a scale count back as it was typed: 3, +1, -1.
func countText(n int, delta bool) string {
	if delta && n > 0 {
		return fmt.Sprintf("+%d", n)
	}
	return fmt.Sprint(n)
}

// waitError is the answer to a reload or scale of apps that did not end
// well. The client's prefix names the command (gm2-init reload: …), and
// the supervisor's error of a reload names each app that failed: neither
// is said twice. named tells whether err still needs the apps before it.
func (s *Server) waitError(apps string, named bool, ctx context.Context, err error) response {
	switch {
	case errors.Is(err, context.DeadlineExceeded) && s.ctx.Err() == nil:
		return response{Error: fmt.Sprintf("%s: still in progress after %v; it goes on (gm2-init status shows it)", apps, s.opts.WaitTimeout)}
	case s.ctx.Err() != nil:
		return response{Error: "gm2-init is stopping"}
	case named:
		return response{Error: fmt.Sprintf("%s: %v", apps, err)}
	}
	return response{Error: err.Error()}
}

// reply writes one response line within timeout; a client that does not
// read is dropped.
func (s *Server) reply(c *net.UnixConn, r response, timeout time.Duration) {
	b, err := json.Marshal(r)
	if err != nil {
		b = []byte(`{"ok":false,"error":"cannot encode the answer"}`)
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	c.Write(append(b, '\n'))
}
