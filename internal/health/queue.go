package health

// Accept-queue truth (issue 16). gm2-init holds every listening socket it
// passes to its workers, so it can see connections pile up in a listener's
// accept queue when no worker takes them: a worker that closed the passed
// socket and bound a port of its own, a wrapper that broke LISTEN_PID, a
// server that ignores the activated socket. The kernel still completes
// every handshake for the listener gm2-init holds, so clients are not
// refused: they hang until they time out, while every worker says it is
// ready. /readyz must fail then.
//
// Definition. A listener is stuck when, for at least the queue timeout
// (--queue-timeout), connections have waited in its accept queue and none
// has left it. gm2-init knows this from samples it takes when /readyz or
// /metrics is asked (never on a timer: no periodic wakeup when idle):
//
//   - the queue's length (TCP_INFO). A sample that finds the queue empty,
//     or shorter than the sample before, shows progress;
//   - which connections wait (the kernel's socket diagnostics). A
//     connection seen waiting at one reading and gone at the next shows
//     progress (it was accepted).
//
// The listener is stalled since the first sample after the last one that
// showed progress. It is stuck when it has been stalled for the queue
// timeout and the latest reading of which connections wait confirmed that
// every connection seen waiting at the reading before still waits; until
// such a confirmation (or when the diagnostics cannot be read), it is not.
//
// Why this never marks a busy but healthy app unready. Connections leave an
// accept queue only through accept(2): a client that gives up leaves its
// connection in the queue, closed. So an app that accepts at all either
// empties or shrinks its queue, or takes connections that were seen
// waiting; one that accepts at least once per queue timeout is never stuck,
// however long its queue. Lengths alone would not do: a queue kept at the
// same length because every accept is refilled at once by a new client
// looks exactly like a stuck one (TestReadyzStaysReadyWhileQueueDrains
// fails with lengths alone).
//
// What a probe does. /metrics reads each length once. /readyz reads it and,
// for a queue that is not empty and shows no progress, takes up to
// queueSamples more readings queueSampleGap apart (a few tens of ms) to see
// a drain; if none, it reads which connections wait (about a millisecond)
// and compares with its previous reading. Probes are seconds apart: a
// listener that stops being served is reported within the queue timeout
// plus a probe period or two.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// WatchedListener is a listening TCP socket whose accept queue the health
// endpoints watch.
type WatchedListener struct {
	Name    string // the listener's name (LISTEN_FDNAMES), a label of the metrics
	Address string // as bound, e.g. "0.0.0.0:8080", a label of the metrics
	// File is gm2-init's descriptor of the socket. The health server only
	// reads its queue through it, never closes it; it may be closed by its
	// owner at any time (a reading then fails and the listener is skipped).
	File *os.File
	// Unserved: no worker holds the socket now (one shared on demand whose
	// servers all closed: the app no longer listens there). Its queue is
	// still exported, but connections waiting in it are no stuck worker.
	Unserved bool
}

// Listeners is what the health server needs from the supervisor to watch
// accept queues: the listening TCP sockets it holds now. The set may change
// at runtime (a socket bound on a worker's first request arrives later), so
// it is asked at every probe and scrape; it must be cheap and safe to call
// from any goroutine. Unix sockets have no accept queue to read this way:
// leave them out (they are skipped if given).
type Listeners interface {
	TCPListeners() []WatchedListener
}

// StaticListeners is a fixed set of listeners.
type StaticListeners []WatchedListener

// TCPListeners returns the set.
func (l StaticListeners) TCPListeners() []WatchedListener { return l }

// TCPListenersOf returns the TCP listeners among ls, as the health server
// watches them: the --listen sockets bound at start, for a caller whose set
// never changes.
func TCPListenersOf(ls []*sockets.Listener) StaticListeners {
	var out StaticListeners
	for _, l := range ls {
		if l.Spec.Network == sockets.TCP {
			out = append(out, WatchedListener{Name: l.Spec.Name, Address: l.Bound, File: l.File})
		}
	}
	return out
}

// ListenersOf watches the TCP sockets among ls (bound at start) and, as
// they are bound, those of reg (shared on demand with Node workers); reg
// may be nil. The registry is safe for concurrent use, and its sockets are
// held until gm2-init exits.
func ListenersOf(ls []*sockets.Listener, reg *sockets.Registry) Listeners {
	return sharedSet{static: TCPListenersOf(ls), reg: reg}
}

type sharedSet struct {
	static StaticListeners
	reg    *sockets.Registry
}

func (s sharedSet) TCPListeners() []WatchedListener {
	out := append([]WatchedListener(nil), s.static...)
	if s.reg != nil {
		for _, sh := range s.reg.Shared() {
			if l := sh.Listener; l.Spec.Network == sockets.TCP {
				out = append(out, WatchedListener{Name: l.Spec.Name, Address: l.Bound, File: l.File, Unserved: !s.reg.Serving(sh)})
			}
		}
	}
	return out
}

// Config is what the caller chooses about the health server.
type Config struct {
	// Listeners, when set, has /metrics export each listener's accept
	// queue (gm2_listener_queue_length, gm2_listener_backlog) and, with
	// QueueTimeout, /readyz check that the queues are being served.
	Listeners Listeners
	// QueueTimeout is how long connections may wait in a listener's
	// accept queue with none taken before /readyz fails (--queue-timeout);
	// 0 turns the check off.
	QueueTimeout time.Duration
	// Status is the document /status serves, shared with the control
	// socket's `gm2-init status` (NewStatusDocument over the same
	// supervisor); nil: the server makes its own. /metrics reads the
	// workers' usage through it too, so that both share one read.
	Status *StatusDocument
}

// queueTrack is what is known of one listener's queue between samples.
type queueTrack struct {
	name, address string
	last          int       // length at the last sample
	backlog       int       // capacity at the last sample
	since         time.Time // start of the current stall; zero when none
	waiting       []uint64  // connections waiting at the last reading of them (sorted)
	waitingAt     time.Time // when they were read; zero: never, or void since
	stuck         bool      // the verdict last logged
}

// sample records a reading of the queue's length taken at t, and reports
// whether it shows the queue empty or moving.
func (tr *queueTrack) sample(q sockets.AcceptQueue, t time.Time) (moved bool) {
	moved = q.Len == 0 || q.Len < tr.last
	switch {
	case q.Len == 0:
		tr.since = time.Time{}
	case moved || tr.since.IsZero():
		tr.since = t
	}
	if q.Len == 0 {
		// Nothing waits: what was read of the waiting ones is void.
		tr.waiting, tr.waitingAt = nil, time.Time{}
	}
	tr.last, tr.backlog = q.Len, q.Backlog
	return moved
}

// queueWatch watches the accept queues of a set of listeners.
type queueWatch struct {
	src     Listeners
	timeout time.Duration // 0: /readyz does not check
	samples int           // extra readings when a queue shows no progress
	gap     time.Duration // between them
	log     zerolog.Logger

	mu         sync.Mutex
	tracks     map[*os.File]*queueTrack
	diagWarned bool // the failure to read waiting connections was logged

	// One check at a time: concurrent probes share its result, so that
	// a burst of probes costs one round of readings.
	callMu sync.Mutex
	call   *queueCall
}

type queueCall struct {
	done chan struct{}
	err  error
}

// Extra readings of a queue that shows no progress (see the file comment).
const (
	queueSamples   = 10
	queueSampleGap = 3 * time.Millisecond
)

func newQueueWatch(cfg Config, log zerolog.Logger) *queueWatch {
	if cfg.Listeners == nil {
		return nil
	}
	return &queueWatch{
		src: cfg.Listeners, timeout: max(cfg.QueueTimeout, 0),
		samples: queueSamples, gap: queueSampleGap, log: log,
		tracks: make(map[*os.File]*queueTrack),
	}
}

// queueReading is one listener's queue as read now.
type queueReading struct {
	l     WatchedListener
	tr    *queueTrack
	q     sockets.AcceptQueue
	moved bool // the queue was empty or shorter than at the sample before
	err   error
}

// readAll reads every listener's queue once, records the samples and
// forgets listeners that are gone.
func (w *queueWatch) readAll() []queueReading {
	ls := w.src.TCPListeners()
	out := make([]queueReading, 0, len(ls))
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := make(map[*os.File]bool, len(ls))
	for _, l := range ls {
		if l.File == nil || seen[l.File] {
			continue
		}
		seen[l.File] = true
		tr := w.tracks[l.File]
		if tr == nil {
			tr = &queueTrack{}
			w.tracks[l.File] = tr
		}
		tr.name, tr.address = l.Name, l.Address
		r := queueReading{l: l, tr: tr}
		r.q, r.err = sockets.ReadAcceptQueue(l.File)
		if r.err == nil {
			r.moved = tr.sample(r.q, time.Now())
		}
		out = append(out, r)
	}
	for f := range w.tracks {
		if !seen[f] {
			delete(w.tracks, f)
		}
	}
	return out
}

// check is the listener-queue check of /readyz: an error naming every stuck
// listener, with how many connections wait and for how long none was taken.
func (w *queueWatch) check(ctx context.Context) error {
	w.callMu.Lock()
	c := w.call
	leader := c == nil
	if leader {
		c = &queueCall{done: make(chan struct{})}
		w.call = c
	}
	w.callMu.Unlock()
	if !leader {
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Detached from the request: the probes waiting on this result
	// deserve a complete one even if the first client hangs up.
	c.err = w.evaluate(context.WithoutCancel(ctx))
	w.callMu.Lock()
	w.call = nil
	w.callMu.Unlock()
	close(c.done)
	return c.err
}

func (w *queueWatch) evaluate(ctx context.Context) error {
	rs := w.readAll()
	// The queues that show no progress get a closer look.
	var still []queueReading
	for _, r := range rs {
		if r.err != nil {
			if !errors.Is(r.err, sockets.ErrNotTCPListener) {
				w.log.Debug().Err(r.err).Str("listener", r.l.Name).Msg("accept queue unreadable")
			}
			continue
		}
		if r.q.Len > 0 && !r.moved && !r.l.Unserved {
			still = append(still, r)
		}
	}
	for i := 0; i < w.samples && len(still) > 0; i++ {
		t := time.NewTimer(w.gap)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		w.mu.Lock()
		keep := still[:0]
		for _, r := range still {
			q, err := sockets.ReadAcceptQueue(r.l.File)
			if err != nil || r.tr.sample(q, time.Now()) {
				continue
			}
			keep = append(keep, r)
		}
		still = keep
		w.mu.Unlock()
	}
	// Still no progress seen: which connections wait, against the last
	// reading of them. Only this can confirm a stall: lengths alone
	// cannot tell a stuck queue from one whose every accept is refilled.
	confirmed := make(map[*queueTrack]bool, len(still))
	for _, r := range still {
		now, err := sockets.WaitingConnections(r.l.File)
		if err != nil {
			w.diagFailed(r.l, err)
			continue
		}
		at := time.Now()
		w.mu.Lock()
		tr := r.tr
		switch {
		case tr.waitingAt.IsZero():
			// The first reading: the next one can confirm.
		case anyGone(tr.waiting, now):
			// Some were accepted since the last reading: the stall,
			// if any, starts now.
			tr.since = at
		default:
			confirmed[tr] = true
		}
		tr.waiting, tr.waitingAt = now, at
		w.mu.Unlock()
	}
	return w.verdicts(rs, confirmed)
}

// diagFailed reports, once, that which connections wait cannot be read:
// then no listener can be found stuck.
func (w *queueWatch) diagFailed(l WatchedListener, err error) {
	w.mu.Lock()
	first := !w.diagWarned
	w.diagWarned = true
	w.mu.Unlock()
	ev := w.log.Debug()
	if first {
		ev = w.log.Warn()
	}
	ev.Err(err).Str("listener", l.Name).Msg("cannot read which connections wait in the accept queue (socket diagnostics); the listener-queue check cannot find a listener stuck")
}

// verdicts decides which listeners are stuck, logs the changes and returns
// the reasons.
func (w *queueWatch) verdicts(rs []queueReading, confirmed map[*queueTrack]bool) error {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var reasons []string
	for _, r := range rs {
		tr := r.tr
		if r.err != nil {
			continue
		}
		stalled := time.Duration(0)
		if !tr.since.IsZero() {
			stalled = now.Sub(tr.since)
		}
		stuck := tr.last > 0 && stalled >= w.timeout && confirmed[tr]
		if stuck {
			reasons = append(reasons, fmt.Sprintf("%d connection(s) wait in the accept queue of listener %q (%s) and none was taken for %s",
				tr.last, tr.name, tr.address, stalled.Round(time.Millisecond)))
		}
		if stuck == tr.stuck {
			continue
		}
		tr.stuck = stuck
		if stuck {
			w.log.Warn().Str("listener", tr.name).Str("address", tr.address).Int("queued", tr.last).Int("backlog", tr.backlog).
				Str("none_taken_for", stalled.Round(time.Millisecond).String()).
				Msg("connections wait in a listener's accept queue and no worker takes them: not ready")
		} else {
			w.log.Info().Str("listener", tr.name).Str("address", tr.address).Int("queued", tr.last).
				Msg("a worker takes connections from the listener's accept queue again")
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	return errors.New(strings.Join(reasons, "; "))
}

// writeQueueMetrics reads each listener's queue once and writes the two
// gauge families; nothing when no listener could be read.
func (w *queueWatch) writeQueueMetrics(e *exposition) {
	var ok []queueReading
	for _, r := range w.readAll() {
		if r.err == nil {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return
	}
	labels := func(r queueReading) []label {
		return []label{{"listener", r.l.Name}, {"address", r.l.Address}}
	}
	e.family("gm2_listener_queue_length", "gauge", "Connections waiting in the listener's accept queue (accepted by no worker yet), read at scrape time.")
	for _, r := range ok {
		e.sample("gm2_listener_queue_length", formatInt(r.q.Len), labels(r)...)
	}
	e.family("gm2_listener_backlog", "gauge", "Capacity of the listener's accept queue (listen backlog capped at net.core.somaxconn).")
	for _, r := range ok {
		e.sample("gm2_listener_backlog", formatInt(r.q.Backlog), labels(r)...)
	}
}

// anyGone reports whether some element of prev is not in now (both sorted):
// a connection that waited at the earlier reading and no longer does.
func anyGone(prev, now []uint64) bool {
	j := 0
	for _, p := range prev {
		for j < len(now) && now[j] < p {
			j++
		}
		if j == len(now) || now[j] != p {
			return true
		}
	}
	return false
}
