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
// to the workers' output (up to PIPE_BUF, 4 KiB). The queue holds at most
// a fixed number of bytes; what comes while it is full is dropped and
// counted, and the count is written as a line of its own, in the place of
// the lines it stands for, once stderr takes writes again.
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
	queue   []entry
	queued  int // bytes in queue
	dropped int // lines dropped since the queue was last taken
	closed  bool

	wake chan struct{} // a line was queued (capacity 1)
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the writer has ended
}

// entry is a line to write, or (line nil) a Flush's mark: reached is
// closed once every line queued before it was written.
type entry struct {
	line    []byte
	reached chan struct{}
}

// New starts the writer of a sink that queues at most max bytes for w.
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

// Write queues a copy of p, or drops it when the queue is full (counted)
// or the sink closed (not counted: nothing would write the count). It never blocks on w and never fails: a log line must not stop
// what it reports on.
func (s *Sink) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // and a nil line is a Flush's mark
	}
	s.mu.Lock()
	if s.closed || s.queued+len(p) > s.max {
		if !s.closed {
			s.dropped++
		}
		s.mu.Unlock()
		return len(p), nil
	}
	s.queue = append(s.queue, entry{line: append([]byte(nil), p...)})
	s.queued += len(p)
	s.mu.Unlock()
	s.signal()
	return len(p), nil
}

func (s *Sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Flush waits, at most timeout, until every line queued before it was
// written, so that what is written to w next by another way (a last
// message on stderr) comes after them. It reports whether they were.
func (s *Sink) Flush(timeout time.Duration) bool {
	reached := make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.wait(s.done, timeout)
	}
	s.queue = append(s.queue, entry{reached: reached})
	s.mu.Unlock()
	s.signal()
	return s.wait(reached, timeout)
}

func (s *Sink) wait(c <-chan struct{}, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

// Close writes out what is queued, waiting at most timeout for w, and ends
// the writer. It reports whether everything was written. When w takes no
// writes within timeout, the writer is left blocked in its write: the
// process is about to exit, and nothing else can end a write(2) to a pipe
// nobody reads.
func (s *Sink) Close(timeout time.Duration) bool {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	return s.wait(s.done, timeout)
}

func (s *Sink) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		batch, dropped := s.queue, s.dropped
		s.queue, s.queued, s.dropped = nil, 0, 0
		closed := s.closed
		s.mu.Unlock()
		// The dropped lines came after the lines of the batch (the queue
		// was full when they came) and before anything queued since: the
		// note goes before the first mark that follows them.
		for _, e := range batch {
			if e.line != nil {
				_, _ = s.w.Write(e.line)
				continue
			}
			if dropped > 0 {
				_, _ = s.w.Write(s.dropNote(dropped))
				dropped = 0
			}
			close(e.reached)
		}
		if dropped > 0 {
			_, _ = s.w.Write(s.dropNote(dropped))
		}
		if len(batch) > 0 || dropped > 0 {
			continue
		}
		if closed {
			return
		}
		select {
		case <-s.wake:
		case <-s.stop:
		}
	}
}
