package health

// This file decides which connections the health server handles when more
// arrive than it can hold, by the rules of issue 12: a connection with a
// complete request is always answered; eviction only takes connections that
// have not finished their request head, those idle longest first; probes
// keep a reserved share.
//
// Why it is built this way. The health port listens on every interface, so
// anyone who can reach the pod can open connections, and gm2-init is PID 1:
// its memory must stay bounded. What a full server must never do is close a
// probe: the kubelet counts that as a failed probe, and enough of them
// restart the pod. Nothing tells a probe from an idle connection but its
// bytes, and a probe is accepted as soon as its handshake completes, a moment
// before its request arrives; so the server looks at what each connection
// has sent (peeking at the kernel's receive queue, which takes nothing from
// it) before it spends anything on it:
//
//   - A connection that has sent nothing waits in the lobby: no goroutine
//     of its own reads it and no head buffer is allocated, only a small
//     goroutine parked in the poller until its first byte (watch). At most
//     maxWaiting connections wait; a silent one is closed when the
//     read-header timeout ends, or, when the lobby is full and another
//     connection arrives, if it is the one silent longest and has been
//     silent for idleGrace. Idle connections therefore never take the
//     places of requests, and hundreds of them cost a few hundred kB.
//   - A connection that has sent bytes is handed to a goroutine that reads
//     its head (a place). At most maxConns have a place at once, each with a
//     head buffer; at most maxHeadReaders of them may still be reading an
//     incomplete head, so that reservedConns places only ever take
//     connections whose complete request has arrived: a slow-header client
//     (slowloris) can hold at most maxHeadReaders places until the
//     read-header timeout, never the reserve.
//   - A connection whose complete request has arrived is never closed
//     before it is answered. When every place is taken, it waits in the
//     lobby (its request safe in the kernel) for the first place to free: a
//     request in progress ends within the ping timeout and a write, and a
//     lingering connection (answered, waiting for the client to close) or a
//     head reader idle for idleGrace is evicted for it, lingering ones
//     first, then the reader idle longest.
//
// Only when the lobby is full of complete requests, or of connections
// arrived within idleGrace, does Serve stop accepting; the connections then
// wait in the kernel's listen backlog, not closed.
//
// An eviction of a head reader does not close it: it sets its read deadline
// in the past, which ends a read in progress. A goroutine that had already
// read its complete head then answers it anyway (a close would have
// destroyed the answer). All of this state is guarded by Server.mu.

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Capacity of the health server (see the file comment).
const (
	// maxConns bounds the connections being read or answered at once, each
	// with a goroutine and a head buffer of maxHeaderBytes. The honest load
	// is a few kubelet probes and a Prometheus scrape at a time; 64 leaves
	// ample room for bursts.
	maxConns = 64
	// reservedConns of them only take connections whose complete request
	// head has arrived.
	reservedConns = 16
	// maxHeadReaders is how many connections with a place may be reading
	// an incomplete head.
	maxHeadReaders = maxConns - reservedConns
	// maxWaiting bounds the lobby: connections accepted and not given a
	// place yet (silent ones, and requests waiting for a place). Each costs
	// a descriptor and, while silent, a goroutine parked in the poller.
	maxWaiting = 256
)

// connPhase is what a connection's goroutine is doing.
type connPhase uint8

const (
	phaseHead      connPhase = iota // reading the request head
	phaseAnswering                  // a complete head was read: being answered
	phaseLinger                     // answered; waiting for the client to close
)

// headKind is what a connection has sent that nobody has read yet.
type headKind uint8

const (
	headNone     headKind = iota // nothing pending (or nothing known)
	headPartial                  // bytes pending, not a complete head
	headComplete                 // a complete head pending (or more than a head can be)
)

// connState is what admission needs to know of a connection. Its fields are
// guarded by Server.mu.
type connState struct {
	accepted time.Time // when Serve accepted it

	// In the lobby.
	waiting bool     // accepted, not given a place yet
	kind    headKind // what it had sent when last looked at

	// With a place.
	phase    connPhase
	lastByte time.Time // when its goroutine last read bytes of the head; zero: none yet
	lingered time.Time // when it began lingering
	evicting bool      // its read deadline was set in the past; it is ending
}

// idleSince is when a head reader last showed a sign of life.
func (st *connState) idleSince() time.Time {
	if st.lastByte.IsZero() {
		return st.accepted
	}
	return st.lastByte
}

// errNoPeek: the connection has no descriptor to peek at.
var errNoPeek = errors.New("connection has no descriptor")

// peek copies what c's kernel receive queue holds into buf without taking
// it: 0 and nil when nothing is pending, io.EOF when the peer closed
// without anything left to read.
func peek(c net.Conn, buf []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errNoPeek
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var perr error
	if err := rc.Control(func(fd uintptr) { n, perr = peekFD(fd, buf) }); err != nil {
		return 0, err
	}
	return n, perr
}

func peekFD(fd uintptr, buf []byte) (int, error) {
	for {
		n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// peekHead classifies what c has sent that nobody has read yet; gone when
// the peer closed or reset it with nothing left to read. A connection that
// cannot be peeked at counts as complete: it is handled as it comes, as
// before admission existed.
func peekHead(c net.Conn, buf []byte) (kind headKind, gone bool) {
	n, err := peek(c, buf)
	switch {
	case err == errNoPeek:
		return headComplete, false
	case err != nil:
		return headNone, true
	case n == 0:
		return headNone, false
	}
	var sc headScanner
	if sc.scan(buf[:n]) >= 0 || n == len(buf) {
		// A full buffer without the end of a head will be answered
		// at once too (431): it needs no more bytes to be answered.
		return headComplete, false
	}
	return headPartial, false
}

// hasPending reports whether bytes wait in c's receive queue: a head reader
// whose goroutine has not read them yet is not idle.
func hasPending(c net.Conn) bool {
	var one [1]byte
	n, err := peek(c, one[:])
	return err == nil && n > 0
}

// enter puts a connection Serve accepted into the lobby, or gives it a
// place at once, waiting while the lobby is full and nothing in it may be
// evicted yet. False when Shutdown has begun (c is then the caller's to
// close). buf is Serve's own peek buffer.
func (s *Server) enter(c net.Conn, st *connState, buf []byte) bool {
	var timer *time.Timer
	var w *firstByteWatch
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		w.stop(c)
	}()
	for {
		kind, gone := peekHead(c, buf)
		if gone {
			// A TCP check that connected and left: nothing to answer.
			_ = c.Close()
			return true
		}
		if kind != headNone && w != nil {
			// Its bytes came while it waited: the watch has ended.
			w.stop(c)
			w = nil
		}
		now := time.Now()
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return false
		}
		st.kind = kind
		if kind != headNone {
			st.lastByte = now
		}
		if len(s.lobby) < maxWaiting || kind != headNone && s.hasPlaceLocked(kind == headComplete) || s.evictWaitingLocked(now) {
			// The watch of a connection that waited ends before the
			// lobby's own begins: both use the read deadline.
			w.stop(c)
			w = nil
			st.waiting = true
			s.lobby[c] = st
			if kind == headNone {
				s.watchLocked(c, st)
			}
			s.scheduleLocked(now)
			s.mu.Unlock()
			return true
		}
		retry := s.lobbyRetryLocked()
		s.mu.Unlock()
		if kind == headNone && w == nil {
			// A probe accepted a moment before its request arrived
			// must not wait for an eviction: its request may get it a
			// place at once.
			w = s.watchFirstByte(c)
		}
		var fire <-chan time.Time
		if !retry.IsZero() {
			if timer == nil {
				timer = time.NewTimer(retry.Sub(now))
			} else {
				timer.Reset(retry.Sub(now))
			}
			fire = timer.C
		}
		select {
		case <-s.wake:
		case <-fire:
		case <-s.quit:
			return false
		}
	}
}

// firstByteWatch wakes Serve when a connection that waits to enter the
// lobby receives something. It runs on a goroutine of its own, parked in the
// poller; stop ends it with a read deadline in the past and waits for it.
type firstByteWatch struct{ done chan struct{} }

func (s *Server) watchFirstByte(c net.Conn) *firstByteWatch {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &firstByteWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		if waitFirstByte(rc) == nil {
			s.signalWake()
		}
	}()
	return w
}

func (w *firstByteWatch) stop(c net.Conn) {
	if w == nil {
		return
	}
	_ = c.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	_ = c.SetReadDeadline(time.Time{})
}

// waitFirstByte parks until rc has a byte to read, or has ended (the peer
// left, or the read deadline passed: then the error).
func waitFirstByte(rc syscall.RawConn) error {
	var one [1]byte
	// Read calls the function when the descriptor may be readable, and
	// parks again while it returns false.
	return rc.Read(func(fd uintptr) bool {
		n, err := peekFD(fd, one[:])
		return err != nil || n > 0
	})
}

// hasPlaceLocked reports whether a connection (with a complete head or
// not) could be given a place now.
func (s *Server) hasPlaceLocked(complete bool) bool {
	if len(s.conns) >= maxConns {
		return false
	}
	return complete || s.headReadersLocked() < maxHeadReaders
}

func (s *Server) headReadersLocked() int {
	n := 0
	for _, m := range s.conns {
		if m.phase == phaseHead {
			n++
		}
	}
	return n
}

// evictWaitingLocked closes the lobby's connection without a request that
// has waited longest, if it has waited idleGrace: silent ones first, then
// those with part of a head. False when there is none.
func (s *Server) evictWaitingLocked(now time.Time) bool {
	var victim net.Conn
	var vs *connState
	for c, m := range s.lobby {
		if m.kind == headComplete || now.Sub(m.accepted) < s.opts.idleGrace {
			continue
		}
		if vs == nil || m.kind < vs.kind || m.kind == vs.kind && m.accepted.Before(vs.accepted) {
			victim, vs = c, m
		}
	}
	if victim == nil {
		return false
	}
	s.dropWaitingLocked(victim, vs)
	s.log.Debug().Str("remote", victim.RemoteAddr().String()).Msg("too many connections waiting; closing the one silent longest")
	return true
}

// lobbyRetryLocked returns when a lobby connection will have waited
// idleGrace (zero if none can: the lobby is full of requests).
func (s *Server) lobbyRetryLocked() time.Time {
	var t time.Time
	for _, m := range s.lobby {
		if m.kind == headComplete {
			continue
		}
		if at := m.accepted.Add(s.opts.idleGrace); t.IsZero() || at.Before(t) {
			t = at
		}
	}
	return t
}

// dropWaitingLocked removes a connection from the lobby and closes it; its
// watch, if any, ends with the close.
func (s *Server) dropWaitingLocked(c net.Conn, st *connState) {
	st.waiting = false
	delete(s.lobby, c)
	_ = c.Close()
	s.checkDrainedLocked()
	s.signalWake()
}

// watchLocked starts the goroutine that waits for a silent connection's
// first byte, or for the read-header timeout, whichever comes first. It is
// parked in the runtime's poller meanwhile, which is all a silent
// connection costs besides its descriptor.
func (s *Server) watchLocked(c net.Conn, st *connState) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(st.accepted.Add(s.opts.readHeaderTimeout))
	s.watches.Add(1)
	go func() {
		defer s.watches.Done()
		s.watched(c, st, waitFirstByte(rc))
	}()
}

// watched handles the end of a watch: the first bytes arrived (the
// connection goes on to a place), or the peer left, or the read-header
// timeout ended the wait.
func (s *Server) watched(c net.Conn, st *connState, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !st.waiting {
		return // evicted or closed meanwhile
	}
	kind, gone := peekHead(c, s.peekBuf)
	switch {
	case gone || kind == headNone && err != nil:
		if !gone {
			s.log.Debug().Str("remote", c.RemoteAddr().String()).Msg("no request within the read-header timeout")
		}
		s.dropWaitingLocked(c, st)
		return
	case kind == headNone:
		// Spurious: look again.
		s.watchLocked(c, st)
		return
	}
	now := time.Now()
	st.kind, st.lastByte = kind, now
	s.scheduleLocked(now)
}

// scheduleLocked gives places to the lobby's connections that have sent
// bytes, complete requests first and the longest waiting first, and, when
// the places are full, evicts one connection for the first that waits.
func (s *Server) scheduleLocked(now time.Time) {
	for {
		var next net.Conn
		var ns *connState
		for c, m := range s.lobby {
			if m.kind == headNone {
				continue
			}
			if ns == nil || m.kind > ns.kind || m.kind == ns.kind && m.accepted.Before(ns.accepted) {
				next, ns = c, m
			}
		}
		if next == nil {
			return
		}
		complete := ns.kind == headComplete
		if s.hasPlaceLocked(complete) {
			s.placeLocked(next, ns, now)
			continue
		}
		for _, m := range s.conns {
			if m.evicting {
				return // its place comes next
			}
		}
		// Lingering connections free a place, not a head reader's.
		lingering := complete || len(s.conns) >= maxConns && s.headReadersLocked() < maxHeadReaders
		victim, retry := s.pickVictimLocked(lingering, now)
		if victim == nil {
			s.retryAtLocked(retry)
			return
		}
		vs := s.conns[victim]
		vs.evicting = true
		_ = victim.SetReadDeadline(time.Unix(1, 0))
		s.log.Debug().Str("remote", victim.RemoteAddr().String()).Msg("connection limit reached; cutting off an idle connection")
		return
	}
}

// placeLocked moves a connection from the lobby to a place and starts its
// goroutine. The read-header timeout starts again from here, so that a
// complete request that waited for a place is still read.
func (s *Server) placeLocked(c net.Conn, st *connState, now time.Time) {
	delete(s.lobby, c)
	st.waiting = false
	st.phase = phaseHead
	s.conns[c] = st
	_ = c.SetReadDeadline(now.Add(s.opts.readHeaderTimeout))
	s.signalWake() // the lobby has room again
	go s.serveConn(c, st)
}

// retryAtLocked arranges for scheduleLocked to run again at t (zero: no
// need), when a head reader may have been idle long enough to be evicted.
func (s *Server) retryAtLocked(t time.Time) {
	if t.IsZero() || !s.retryAt.IsZero() && !t.Before(s.retryAt) {
		return
	}
	s.retryAt = t
	d := time.Until(t)
	if s.retry == nil {
		s.retry = time.AfterFunc(d, s.retryFired)
	} else {
		s.retry.Reset(d)
	}
}

func (s *Server) retryFired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAt = time.Time{}
	s.scheduleLocked(time.Now())
}

// pickVictimLocked returns the connection with a place to evict: a
// lingering one (if lingering counts), else the head reader idle longest
// (no byte for the longest time) among those idle for at least idleGrace
// and with nothing pending in the kernel. With none, it returns when the
// earliest head reader could qualify.
func (s *Server) pickVictimLocked(lingering bool, now time.Time) (net.Conn, time.Time) {
	var retry time.Time
	later := func(t time.Time) {
		if retry.IsZero() || t.Before(retry) {
			retry = t
		}
	}
	var best net.Conn
	var bestAt time.Time
	type cand struct {
		c     net.Conn
		since time.Time
	}
	var heads []cand
	for c, m := range s.conns {
		switch {
		case m.evicting:
		case m.phase == phaseLinger && lingering:
			if best == nil || m.lingered.Before(bestAt) {
				best, bestAt = c, m.lingered
			}
		case m.phase == phaseHead:
			since := m.idleSince()
			if now.Sub(since) < s.opts.idleGrace {
				later(since.Add(s.opts.idleGrace))
				continue
			}
			heads = append(heads, cand{c, since})
		}
	}
	if best != nil {
		return best, time.Time{}
	}
	// Idle longest first; one with bytes waiting for its goroutine is not
	// idle: skipped, and looked at again a grace later.
	for len(heads) > 0 {
		i := 0
		for j := range heads {
			if heads[j].since.Before(heads[i].since) {
				i = j
			}
		}
		h := heads[i]
		heads = append(heads[:i], heads[i+1:]...)
		if hasPending(h.c) {
			later(now.Add(s.opts.idleGrace))
			continue
		}
		return h.c, time.Time{}
	}
	return nil, retry
}

// noteBytes records that a connection's goroutine read bytes of its head.
func (s *Server) noteBytes(st *connState) {
	s.mu.Lock()
	st.lastByte = time.Now()
	s.mu.Unlock()
}

// headDone records that a connection's goroutine read a complete head: from
// now on it is answered, whatever an eviction decided meanwhile.
func (s *Server) headDone(st *connState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.phase = phaseAnswering
	if st.evicting {
		// The place it was to free will not free soon: find another.
		st.evicting = false
		s.scheduleLocked(time.Now())
	}
}

// beginLinger moves an answered connection to lingering and sets the
// linger's read deadline. An eviction cannot have cut it off meanwhile:
// headDone cleared any eviction when its head was read, and
// pickVictimLocked never picks a connection being answered.
func (s *Server) beginLinger(c net.Conn, st *connState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.phase, st.lingered = phaseLinger, time.Now()
	_ = c.SetReadDeadline(st.lingered.Add(lingerTimeout))
	if len(s.lobby) > 0 {
		// A lingering connection may give its place to one that waits.
		s.scheduleLocked(st.lingered)
	}
}

// signalWake tells Serve, if it waits for room in the lobby, to look again.
func (s *Server) signalWake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// headReader reads a request head from a connection for its goroutine. It
// records that bytes arrived (a partial head that keeps coming is not idle),
// and it reads what has arrived even after the read deadline passed: Go's
// poller fails a read whose deadline has passed without looking at the
// socket, so a goroutine that ran late (gm2-init shares the container's CPU
// quota, and may be throttled) would otherwise drop a request that arrived
// in time. One non-blocking read per timeout, so a client that keeps
// trickling bytes still ends at the deadline, or at maxHeaderBytes.
type headReader struct {
	c  net.Conn
	st *connState
	s  *Server
}

func (r headReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n == 0 && err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if m := readPending(r.c, p); m > 0 {
			n, err = m, nil
		}
	}
	if n > 0 {
		r.s.noteBytes(r.st)
	}
	return n, err
}

// readPending reads what c's receive queue holds, without waiting and
// whatever its deadline; 0 when nothing (or on any error).
func readPending(c net.Conn, p []byte) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		for {
			m, err := unix.Read(int(fd), p)
			if err == unix.EINTR {
				continue
			}
			if err == nil && m > 0 {
				n = m
			}
			return
		}
	})
	return n
}
