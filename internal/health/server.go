package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/status"
)

// Source is what the health server needs from the supervisor.
type Source interface {
	// Snapshot returns an immutable snapshot of the supervisor's state,
	// current or at most a bounded wait old; never nil.
	Snapshot() *status.Snapshot
	// Ping makes a round trip through the supervisor's loop and returns an
	// error if the loop does not answer before ctx ends.
	Ping(ctx context.Context) error
}

// options holds the knobs that production never changes but tests must: a
// test of the read-header timeout cannot wait two seconds per run.
type options struct {
	// readHeaderTimeout bounds how long a connection may stay silent
	// after its accept, and then how long its goroutine waits for the
	// rest of its head (admit.go): a client sending its head a byte at a
	// time (slowloris) is cut off instead of holding a place.
	readHeaderTimeout time.Duration
	// writeTimeout bounds writing the answer to a client that does not
	// read it.
	writeTimeout time.Duration
	pingTimeout  time.Duration
	// idleGrace is how long a connection must have been idle (silent, or
	// no byte of a partial head) before it may be evicted (see admit.go).
	// A second: a probe's request follows its handshake within a round
	// trip, but the client that sends it may be starved of CPU for a
	// while (measured: a client of 1,000 goroutines on 2 cores took over
	// 100 ms between its connect and its write); evictions only happen
	// when hundreds of connections wait, so a long grace costs nothing
	// otherwise.
	idleGrace time.Duration
	// procRoot is where the proc filesystem is mounted; /metrics reads
	// gm2-init's own usage from its "self" directory, and /status and
	// /metrics the workers' trees.
	procRoot string
}

// defaultOptions are sized for the kubelet, whose probes time out after 1 s by
// default: a ping that takes longer than that is already a failed probe, and a
// client that needs more than 2 s to send a few hundred bytes of headers is
// either broken or hostile.
func defaultOptions() options {
	return options{
		readHeaderTimeout: 2 * time.Second,
		writeTimeout:      5 * time.Second,
		pingTimeout:       time.Second,
		idleGrace:         time.Second,
		procRoot:          "/proc",
	}
}

// maxHeaderBytes bounds what one client can make the server buffer: the whole
// request head, request line and blank line included. Probes and scrapers
// send a few hundred bytes.
const maxHeaderBytes = 8 << 10

// Bounds on the lingering close (see linger).
const (
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 64 << 10
)

// Back-off after a temporary accept error (out of file descriptors, most
// likely): doubling from the first to the last, so that Serve neither spins
// on a failing accept nor sleeps long once descriptors are free again.
const (
	firstAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff   = time.Second
)

// Server serves the health endpoints. Create it with Listen, run it with
// Serve and stop it with Shutdown.
//
// It speaks the small subset of HTTP/1.x in http1.go rather than using
// net/http, to keep the binary small (see there): one request per
// connection, answered whole, then the connection is closed.
type Server struct {
	ln     net.Listener
	src    Source
	log    zerolog.Logger
	opts   options
	pinger pinger
	livez  []check
	readyz []check
	// queues watches the listeners' accept queues (queue.go); nil when the
	// caller gave no listeners.
	queues *queueWatch
	// procStart is gm2-init's start time in Unix seconds, read once at
	// Listen because it cannot change; 0 when /proc could not tell.
	procStart float64
	// status is the /status document; its reader of the workers'
	// process trees (status.usage) serves /metrics as well.
	status *StatusDocument

	// probeState remembers the last outcome of each probe so that only
	// transitions are logged: the kubelet probes every few seconds and a
	// line per probe would drown the application's logs.
	probeMu    sync.Mutex
	probeState map[string]bool

	// wake tells Serve, waiting for room in the lobby (admit.go), to look
	// again.
	wake chan struct{}
	// quit is closed by Shutdown; Serve returns when it sees it.
	quit chan struct{}
	// ctx is the handlers' context; cancel ends it when Shutdown stops
	// waiting for them.
	ctx    context.Context
	cancel context.CancelFunc

	// watches counts the goroutines waiting for a silent connection's
	// first byte (admit.go); Shutdown waits for them.
	watches sync.WaitGroup

	mu      sync.Mutex
	closing bool                    // Shutdown was called
	conns   map[net.Conn]*connState // connections with a place: read and answered (admit.go)
	lobby   map[net.Conn]*connState // connections accepted and waiting for a place
	drained chan struct{}           // closed once closing and both maps are empty
	peekBuf []byte                  // for peeking under mu
	retry   *time.Timer             // runs scheduleLocked at retryAt
	retryAt time.Time
}

// Listen binds addr (tcp) and prepares a Server that answers from src.
//
// ":9000" binds every interface on purpose: the kubelet probes the Pod IP,
// not loopback. Binding happens here, not in Serve, so that the caller can
// fail before starting any worker when the port is taken. The "off" value of
// --health-addr is the caller's business: do not call Listen then.
//
// cfg adds what only the caller knows: the listeners whose accept queues
// /readyz and /metrics watch (queue.go).
func Listen(addr string, src Source, log zerolog.Logger, cfg Config) (*Server, error) {
	return listenWith(addr, src, log, defaultOptions(), cfg)
}

func listen(addr string, src Source, logger zerolog.Logger, opts options) (*Server, error) {
	return listenWith(addr, src, logger, opts, Config{})
}

func listenWith(addr string, src Source, logger zerolog.Logger, opts options, cfg Config) (*Server, error) {
	if src == nil {
		return nil, errors.New("health: nil Source")
	}
	ta, err := sockets.StdlibTCPAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("bind health address %s: %w", addr, err)
	}
	ln, err := net.ListenTCP("tcp", ta)
	if err != nil {
		return nil, fmt.Errorf("bind health address %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ln:         ln,
		src:        src,
		log:        logger,
		opts:       opts,
		pinger:     pinger{src: src, timeout: opts.pingTimeout},
		probeState: make(map[string]bool),
		wake:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		conns:      make(map[net.Conn]*connState),
		lobby:      make(map[net.Conn]*connState),
		drained:    make(chan struct{}),
		peekBuf:    make([]byte, maxHeaderBytes),
	}
	s.livez = s.livezChecks()
	s.readyz = readyzChecks()
	s.status = cfg.Status
	if s.status == nil {
		s.status = NewStatusDocument(s.snapshot, opts.procRoot)
	}
	s.queues = newQueueWatch(cfg, logger)
	if s.queues != nil && s.queues.timeout > 0 {
		s.readyz = append(s.readyz, check{name: "listener-queue", run: func(ctx context.Context, _ func() *status.Snapshot) error {
			return s.queues.check(ctx)
		}})
	}
	if start, err := procfs.StartTime(opts.procRoot); err != nil {
		logger.Debug().Err(err).Msg("process_start_time_seconds unavailable")
	} else {
		s.procStart = start
	}
	return s, nil
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown, each connection on a goroutine of
// its own that Shutdown waits for. It returns nil after Shutdown, and an
// error only if the listener was closed under it; other accept errors are
// retried. Call it once.
func (s *Server) Serve() error {
	var backoff time.Duration
	failed := 0                             // accept errors in the current streak
	peekBuf := make([]byte, maxHeaderBytes) // what a new connection sent (admit.go)
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("serve health endpoints on %s: %w", s.ln.Addr(), err)
			}
			// Any other error is retried: the listener stays open until
			// Shutdown, and a Serve that returned would leave the port
			// bound and every probe unanswered. Logged once per streak:
			// the error repeats for as long as descriptors are short, and
			// a line per retry would flood the log when it is least
			// wanted.
			if failed++; failed == 1 {
				s.log.Warn().Err(err).Msg("health endpoints cannot accept connections; retrying")
				backoff = firstAcceptBackoff
			} else {
				backoff = min(2*backoff, maxAcceptBackoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.quit:
				t.Stop()
				return nil
			}
			continue
		}
		if failed > 0 {
			s.log.Info().Int("failed_accepts", failed).Msg("health endpoints accepting connections again")
			failed = 0
		}
		st := &connState{accepted: time.Now()}
		if !s.enter(conn, st, peekBuf) {
			_ = conn.Close()
			return nil
		}
	}
}

// release closes a connection, forgets it and gives its place to one that
// waits.
func (s *Server) release(c net.Conn) {
	_ = c.Close() // may already be closed by Shutdown
	s.mu.Lock()
	delete(s.conns, c)
	s.scheduleLocked(time.Now())
	s.checkDrainedLocked()
	s.mu.Unlock()
}

// checkDrainedLocked closes drained once Shutdown has begun and no
// connection is left.
func (s *Server) checkDrainedLocked() {
	if s.closing && len(s.conns) == 0 && len(s.lobby) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// Shutdown stops accepting, then waits for in-flight requests until ctx ends;
// then it closes the connections that remain, cancels their handlers and
// waits for their goroutines, which at worst takes the ping timeout (a
// liveness ping in flight), and returns ctx's error.
//
// Call it last, after the workers have stopped: kube-apiserver's shutdown
// model keeps liveness answering 200 through the whole drain (readiness
// already fails because the snapshot says ShuttingDown), and a liveness probe
// that finds the port closed during the drain would count as a failure.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.quit)
		// Connections without a complete request have nothing in flight;
		// complete ones still get a place and their answer.
		for c, st := range s.lobby {
			if st.kind != headComplete {
				s.dropWaitingLocked(c, st)
			}
		}
		if s.retry != nil {
			s.retry.Stop()
		}
		s.checkDrainedLocked()
	}
	s.mu.Unlock()
	// Closing the listener also releases the port when Serve never ran.
	var err error
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	select {
	case <-s.drained:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close() // the goroutine's next read or write fails
		}
		for c, st := range s.lobby {
			s.dropWaitingLocked(c, st)
		}
		s.mu.Unlock()
		s.cancel()
		<-s.drained
		err = errors.Join(err, fmt.Errorf("connections still open: %w", ctx.Err()))
	}
	s.cancel()
	s.watches.Wait() // each ended with its connection's close
	if err != nil {
		return fmt.Errorf("shut down health endpoints on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// serveConn answers one request on c and closes it.
func (s *Server) serveConn(c net.Conn, st *connState) {
	defer s.release(c)
	// gm2-init is PID 1: a bug in a handler must cost a connection, not
	// the container.
	defer func() {
		if p := recover(); p != nil {
			s.log.Error().Interface("panic", p).Bytes("stack", debug.Stack()).Msg("health handler panicked")
		}
	}()
	log := s.log.With().Str("remote", c.RemoteAddr().String()).Logger()

	head, err := readHead(headReader{c: c, st: st, s: s}, make([]byte, maxHeaderBytes))
	if err == nil || errors.Is(err, errHeadTooLarge) {
		s.headDone(st)
	}
	var req request
	if err == nil {
		req, err = parseRequest(head)
	}
	var rp reply
	var rerr *requestError
	switch {
	case err == nil:
		rp = s.route(s.ctx, &req)
	case errors.As(err, &rerr):
		log.Debug().Err(err).Int("code", rerr.code).Msg("bad request")
		rp = textReply(rerr.code, rerr.msg)
	default:
		// Nobody left to answer: a TCP check that connects and leaves,
		// a client cut off by the read-header timeout, a reset.
		log.Debug().Err(err).Msg("connection closed before a complete request head")
		return
	}

	_ = c.SetWriteDeadline(time.Now().Add(s.opts.writeTimeout))
	if _, err := c.Write(appendReply(nil, rp, req.method == "HEAD", time.Now())); err != nil {
		log.Debug().Err(err).Msg("write answer")
		return
	}
	s.beginLinger(c, st)
	linger(c)
}

// linger half-closes c and discards what the client still sends, at most
// lingerBytes for at most lingerTimeout, before c is closed. Closing a socket
// with unread bytes in its receive queue (a body that is never read, the rest
// of an oversized head, a pipelined request) makes the kernel send a reset,
// which can destroy the answer before the client has read it. A client that
// reads the answer and closes, as every client does after "Connection:
// close", ends the wait at once.
// The read deadline is set by beginLinger.
func linger(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, c, lingerBytes)
}

// route dispatches by path, then checks the method, so that an unknown path
// is a 404 whatever the method and a known one answers 405 with Allow. The
// query is not part of the path (/livez?verbose is /livez).
func (s *Server) route(ctx context.Context, req *request) reply {
	var h func() reply
	switch req.path {
	case "/livez":
		h = func() reply { return s.handleProbe(ctx, req, "livez", s.livez) }
	case "/healthz":
		h = func() reply { return s.handleProbe(ctx, req, "healthz", s.livez) }
	case "/readyz":
		h = func() reply { return s.handleProbe(ctx, req, "readyz", s.readyz) }
	case "/status":
		h = func() reply { return s.handleStatus(ctx) }
	case "/metrics":
		h = func() reply { return s.handleMetrics(ctx) }
	default:
		return textReply(statusNotFound, "not found")
	}
	if req.method != "GET" && req.method != "HEAD" {
		rp := textReply(statusMethodNotAllowed, "method not allowed")
		rp.allow = "GET, HEAD"
		return rp
	}
	return h()
}

// snapshot returns the source's snapshot, or an empty one if the source
// broke its promise of never returning nil: an empty snapshot reads as "not
// ready" and "alive", which is the least harmful answer.
func (s *Server) snapshot() *status.Snapshot {
	if snap := s.src.Snapshot(); snap != nil {
		return snap
	}
	return &status.Snapshot{}
}

// bodyReply is an answer with a body of the given type; for HEAD the
// headers still describe the body (appendReply leaves it out).
func bodyReply(code int, contentType string, body []byte) reply {
	return reply{code: code, contentType: contentType, body: body}
}

// pinger coalesces concurrent liveness pings into one round trip through the
// supervisor's loop. The health port listens on every interface, so anyone
// in the cluster can hit /livez in a loop; without coalescing, each request
// would queue work on the supervisor's single goroutine.
type pinger struct {
	src     Source
	timeout time.Duration

	mu   sync.Mutex
	call *pingCall // the round trip in flight, nil if none
}

type pingCall struct {
	done chan struct{} // closed when err is set
	err  error
}

// ping returns the result of a round trip that started no earlier than this
// call, waiting at most the ping timeout. The first caller runs the round
// trip on its own goroutine (no goroutine is spawned); later callers wait for
// its result.
func (p *pinger) ping(ctx context.Context) error {
	p.mu.Lock()
	c := p.call
	leader := c == nil
	if leader {
		c = &pingCall{done: make(chan struct{})}
		p.call = c
	}
	p.mu.Unlock()

	if leader {
		// Detached from the request: if the client that started the
		// round trip hangs up, the others waiting on it still deserve a
		// real answer.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		c.err = p.src.Ping(pctx)
		cancel()
		p.mu.Lock()
		p.call = nil
		p.mu.Unlock()
		close(c.done)
		return c.err
	}

	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		return context.DeadlineExceeded
	case <-ctx.Done():
		return ctx.Err()
	}
}
