// Package drain stops a net/http server without dropping a request, which
// is what a worker must do when gm2-init replaces it during a rolling reload.
// Copy it into your app: it is one file of standard library.
//
// Why not just http.Server.Shutdown: Shutdown first marks the server as
// shutting down, and a connection that was accepted but whose request had
// not been read yet is then closed without an answer (net/http's
// conn.serve returns as soon as it sees the flag). On a socket shared by
// several workers that happens to a few fresh connections at every reload:
// measured here, about one request in ten thousand during reloads fails
// with EOF. Drain avoids it by ordering the steps:
//
//  1. turn keep-alives off, so that every answer from now on ends its
//     connection (net/http also closes the idle keep-alive connections
//     at once — an HTTP client retries a request it sent on one of them —
//     and, a net/http rule, a connection that has waited more than 5 s
//     for its first request);
//  2. close this worker's listener: it accepts nothing more, and the kernel
//     keeps queueing new connections on the shared socket for the other
//     workers (gm2-init holds it open the whole time). In this order, a
//     connection accepted just before is still answered, with
//     Connection: close;
//  3. wait until Serve has returned. http.Server registers a connection
//     (ConnState StateNew) in Serve's own goroutine, after Accept returned
//     it and before the next Accept: a connection accepted just before the
//     listener closed may not be registered yet, and counting before Serve
//     returns would miss it. Once Serve has returned, every connection it
//     accepted is registered, and Serve no longer tracks the listener, so
//     Shutdown does not close it a second time (which fails with "use of
//     closed network connection");
//  4. wait until no connection is new (accepted, request not read) or
//     active (request being served);
//  5. only then Shutdown, which closes what is left: idle connections.
package drain

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// Server wraps an http.Server to track its connections' states.
type Server struct {
	srv *http.Server

	mu       sync.Mutex
	busy     map[net.Conn]struct{} // new or active connections
	idle     chan struct{}         // closed while busy is empty
	ln       net.Listener          // set by Serve
	started  chan struct{}         // closed by Serve once ln is set
	served   chan struct{}         // closed when Serve returns
	draining bool                  // Drain has begun
}

// New installs the connection tracking on srv (chaining any ConnState hook
// it already has). Call it before Serve.
func New(srv *http.Server) *Server {
	s := &Server{
		srv:     srv,
		busy:    map[net.Conn]struct{}{},
		idle:    make(chan struct{}),
		started: make(chan struct{}),
		served:  make(chan struct{}),
	}
	close(s.idle)
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.track(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
	return s
}

// track records one state change. net/http reports StateNew from Serve's
// goroutine before it starts the connection's own, so a connection is in
// busy before it can read its request.
func (s *Server) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew || st == http.StateActive {
		if len(s.busy) == 0 {
			s.idle = make(chan struct{})
		}
		s.busy[c] = struct{}{}
		return
	}
	if _, ok := s.busy[c]; !ok {
		return
	}
	delete(s.busy, c)
	if len(s.busy) == 0 {
		close(s.idle)
	}
}

// Serve serves ln until Drain, and returns nil after a drain (any other
// error as http.Server.Serve returns it). Call it once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("drain: Serve called twice")
	}
	s.ln = &closeOnce{Listener: ln}
	s.mu.Unlock()
	close(s.started)
	defer close(s.served)

	err := s.srv.Serve(s.ln)
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining && (errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed)) {
		return nil
	}
	return err
}

// Drain stops accepting, finishes every request already accepted, and
// closes the server. ctx bounds the wait; when it ends first, the remaining
// connections are closed and ctx's error is returned. Drain before Serve
// waits for Serve to start (a signal that arrives during start-up) and then
// drains it.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	notServing := s.ln == nil
	s.mu.Unlock()
	if notServing {
		select {
		case <-s.started:
		case <-ctx.Done():
			s.srv.Close()
			return ctx.Err()
		}
	}

	// Keep-alives off before the listener closes (steps 1 and 2 above):
	// a response written once the listener is closed tells its client to
	// close, whenever it is written.
	s.srv.SetKeepAlivesEnabled(false)
	s.ln.Close()

	select {
	case <-s.served:
	case <-ctx.Done():
		s.srv.Close()
		return ctx.Err()
	}

	for {
		s.mu.Lock()
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			s.srv.Close()
			return ctx.Err()
		}
		// Nothing can become busy again: the listener is closed, so no
		// new connection, and keep-alives are off, so no second request
		// on an old one. One more look under the lock confirms it.
		s.mu.Lock()
		n := len(s.busy)
		s.mu.Unlock()
		if n == 0 {
			break
		}
	}
	return s.srv.Shutdown(ctx)
}

// closeOnce makes a listener's Close idempotent: the first call closes it,
// later ones return nil.
type closeOnce struct {
	net.Listener
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Listener.Close() })
	return c.err
}
