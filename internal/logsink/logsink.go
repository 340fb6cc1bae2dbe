// Package logsink is the writer under gm2-init's log: it never blocks the
// process that logs.
//
// gm2-init shares stderr with its workers, and whoever reads it may stop
// reading: Docker's default blocking log mode behind a stalled log driver,
// a terminal paused with Ctrl-S, a `| less` left open. A write(2) to a full
// pipe then blocks, and a log line written from the supervisor's loop
// would freeze PID 1 with it: no reaping, no restarts, /livez unanswered,
// and SIGTERM unheard past every stop budget. So a line is queued (Write
// copies it and returns at once) and one goroutine writes the queue out,
// line by line: each line stays one write(2), which a pipe keeps whole next
// to the workers' output (up to PIPE_BUF, 4 KiB).
//
// The lines not yet written, queued or in the writer's hands, hold at most
// a fixed number of bytes. Once a line does not fit, it and every line
// after it are dropped and counted until the writer takes the queue
// again; the count is then written as a line of its own, in the place of
// the lines it stands for.
package logsink

import (
	"io"
	"sync"
	"time"
)

// Sink queues lines for w. Its zero value is not usable: see New.
type Sink struct {
	w        io.Writer
	max      int
	dropNote func(n int) []byte

	mu      sync.Mutex
	queue   [][]byte
	pending int    // bytes queued or being written
	dropped int    // lines dropped since the writer last took the queue
	last    []byte // written after everything else, on Close
	closed  bool

	wake chan struct{} // a line was queued (capacity 1)
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the writer has ended
}

// New starts the writer of a sink that holds at most max bytes for w.
// dropNote makes the line that stands for n dropped lines. The writer
// ends with Close.
func New(w io.Writer, max int, dropNote func(n int) []byte) *Sink {
	s := &Sink{
		w:        w,
		max:      max,
		dropNote: dropNote,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.run()
	return s
}

// Write queues a copy of p, or drops it: counted while lines are being
// dropped or when it does not fit, not counted once the sink is closed
// (nothing would write the count). It never blocks on w and never fails:
// a log line must not stop what it reports on.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	switch {
	case s.closed:
	case s.dropped > 0 || s.pending+len(p) > s.max:
		s.dropped++
	case len(p) > 0:
		s.queue = append(s.queue, append([]byte(nil), p...))
		s.pending += len(p)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// SetLast sets the line Close writes after every queued line and the drop
// count: gm2-init's last word (an error that ends it) comes after the log
// lines that came before it, and its writing is bounded by Close's
// timeout like theirs.
func (s *Sink) SetLast(p []byte) {
	s.mu.Lock()
	s.last = append([]byte(nil), p...)
	s.mu.Unlock()
}

// Close writes out what is queued, then the last line, waiting at most
// timeout for w, and ends the writer. It reports whether everything was
// written. When w takes no writes within timeout, the writer is left
// blocked in its write: the process is about to exit, and nothing else can
// end a write(2) to a pipe nobody reads.
func (s *Sink) Close(timeout time.Duration) bool {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return false
	}
}

func (s *Sink) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		batch, dropped, closed := s.queue, s.dropped, s.closed
		s.queue, s.dropped = nil, 0
		s.mu.Unlock()
		written := 0
		for _, line := range batch {
			_, _ = s.w.Write(line)
			written += len(line)
		}
		// The dropped lines came after the batch (none is queued once one
		// is dropped) and before anything queued since.
		if dropped > 0 {
			_, _ = s.w.Write(s.dropNote(dropped))
		}
		s.mu.Lock()
		s.pending -= written
		last := s.last
		s.mu.Unlock()
		switch {
		case len(batch) > 0 || dropped > 0:
			continue
		case closed:
			if last != nil {
				_, _ = s.w.Write(last)
			}
			return
		}
		select {
		case <-s.wake:
		case <-s.stop:
		}
	}
}
