package health

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/status"
)

// Source is what the health server needs from the supervisor.
type Source interface {
	// Snapshot returns the last published immutable snapshot; never nil.
	Snapshot() *status.Snapshot
	// Ping makes a round trip through the supervisor's loop and returns an
	// error if the loop does not answer before ctx ends.
	Ping(ctx context.Context) error
}

// options holds the knobs that production never changes but tests must: a
// test of the read-header timeout cannot wait two seconds per run.
type options struct {
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	pingTimeout       time.Duration
	// procRoot is where the proc filesystem is mounted; /metrics reads
	// gm2-init's own usage from its "self" directory.
	procRoot string
}

// defaultOptions are sized for the kubelet, whose probes time out after 1 s by
// default: a ping that takes longer than that is already a failed probe, and a
// client that needs more than 2 s to send a few hundred bytes of headers is
// either broken or hostile.
func defaultOptions() options {
	return options{
		readHeaderTimeout: 2 * time.Second,
		readTimeout:       5 * time.Second,
		writeTimeout:      5 * time.Second,
		idleTimeout:       30 * time.Second,
		pingTimeout:       time.Second,
		procRoot:          "/proc",
	}
}

// maxHeaderBytes bounds what one client can make the server buffer; probes
// and scrapers send a few hundred bytes.
const maxHeaderBytes = 8 << 10

// Server serves the health endpoints. Create it with Listen, run it with
// Serve and stop it with Shutdown.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	src    Source
	log    zerolog.Logger
	opts   options
	pinger pinger
	livez  []check
	readyz []check
	// procStart is gm2-init's start time in Unix seconds, read once at
	// Listen because it cannot change; 0 when /proc could not tell.
	procStart float64

	// probeState remembers the last outcome of each probe so that only
	// transitions are logged: the kubelet probes every few seconds and a
	// line per probe would drown the application's logs.
	probeMu    sync.Mutex
	probeState map[string]bool
}

// Listen binds addr (tcp) and prepares a Server that answers from src.
//
// ":9000" binds every interface on purpose: the kubelet probes the Pod IP,
// not loopback. Binding happens here, not in Serve, so that the caller can
// fail before starting any worker when the port is taken. The "off" value of
// --health-addr is the caller's business: do not call Listen then.
func Listen(addr string, src Source, log zerolog.Logger) (*Server, error) {
	return listen(addr, src, log, defaultOptions())
}

func listen(addr string, src Source, logger zerolog.Logger, opts options) (*Server, error) {
	if src == nil {
		return nil, errors.New("health: nil Source")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bind health address %s: %w", addr, err)
	}
	s := &Server{
		ln:         ln,
		src:        src,
		log:        logger,
		opts:       opts,
		pinger:     pinger{src: src, timeout: opts.pingTimeout},
		probeState: make(map[string]bool),
	}
	s.livez = s.livezChecks()
	s.readyz = readyzChecks()
	if start, err := processStartTime(opts.procRoot); err != nil {
		logger.Debug().Err(err).Msg("process_start_time_seconds unavailable")
	} else {
		s.procStart = start
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.route),
		ReadHeaderTimeout: opts.readHeaderTimeout,
		ReadTimeout:       opts.readTimeout,
		WriteTimeout:      opts.writeTimeout,
		IdleTimeout:       opts.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// net/http reports accept errors and recovered handler panics
		// through the standard logger; route them to ours so that they
		// carry gm2-init's marker and stay JSON.
		ErrorLog: log.New(httpErrorWriter{logger}, "", 0),
	}
	return s, nil
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown. It returns nil after Shutdown and
// the accept error otherwise.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve health endpoints on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, then waits for in-flight requests until ctx ends.
//
// Call it last, after the workers have stopped: kube-apiserver's shutdown
// model keeps liveness answering 200 through the whole drain (readiness
// already fails because the snapshot says ShuttingDown), and a liveness probe
// that finds the port closed during the drain would count as a failure.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	// If Serve never ran, http.Server does not know the listener: close it
	// here so that the port is released either way.
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shut down health endpoints on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// route dispatches by path, then checks the method, so that an unknown path
// is a 404 whatever the method and a known one answers 405 with Allow.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	var h func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case "/livez":
		h = func(w http.ResponseWriter, r *http.Request) { s.handleProbe(w, r, "livez", s.livez) }
	case "/healthz":
		h = func(w http.ResponseWriter, r *http.Request) { s.handleProbe(w, r, "healthz", s.livez) }
	case "/readyz":
		h = func(w http.ResponseWriter, r *http.Request) { s.handleProbe(w, r, "readyz", s.readyz) }
	case "/status":
		h = s.handleStatus
	case "/metrics":
		h = s.handleMetrics
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Probe and metric answers describe this instant: a cached one would
	// be a lie to whoever reads it.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h(w, r)
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

// writeBody sets Content-Type and Content-Length and writes body; for HEAD,
// net/http discards the body but the headers still describe it.
func writeBody(w http.ResponseWriter, code int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body) // the client went away; nothing to do about it
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

// httpErrorWriter adapts net/http's ErrorLog to zerolog.
type httpErrorWriter struct{ log zerolog.Logger }

func (h httpErrorWriter) Write(p []byte) (int, error) {
	h.log.Warn().Str("component", "health").Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
