package logsink

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/logsink/logsinktest"
)

func note(n int) []byte { return fmt.Appendf(nil, "dropped %d\n", n) }

// closeWants closes s, waiting at most 10 s for its queue, and fails unless
// w was given exactly want, one Write each.
func closeWants(t *testing.T, s *Sink, w *logsinktest.StalledWriter, want ...string) {
	t.Helper()
	if !s.Close(10 * time.Second) {
		t.Fatal("Close did not write out the queue")
	}
	if got := w.Written(); !slices.Equal(got, want) {
		t.Errorf("written %q, want %q", got, want)
	}
}

func TestLinesInOrderEachItsOwnWrite(t *testing.T) {
	w := logsinktest.NewStalledWriter()
	s := New(w, 1<<20, note)
	var want []string
	for i := range 100 {
		line := fmt.Sprintf("line %d\n", i)
		want = append(want, line)
		s.Write([]byte(line))
	}
	closeWants(t, s, w, want...)
}

// A writer that takes no writes: Write still returns at once, the queue
// keeps what fits, the rest is counted, and once the writer takes writes
// again the count comes between what was queued and what came after.
func TestBlockedWriterDropsAndCounts(t *testing.T) {
	w, s := holding(t, 30, "first\n") // "first\n" (6 bytes) is being written: 3 lines of 7 bytes fit
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			s.Write(fmt.Appendf(nil, "line %d\n", i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked behind a writer that takes no writes")
	}
	w.Gate.Unlock()
	// Wait for the batch and the note (4 more writes), then add one line.
	for range 4 {
		select {
		case <-w.Calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("written so far: %q", w.Written())
		}
	}
	s.Write([]byte("after\n"))
	closeWants(t, s, w, "first\n", "line 0\n", "line 1\n", "line 2\n", "dropped 7\n", "after\n")
}

// Close gives up after its timeout when the writer takes no writes, and a
// Write after Close is dropped without a count.
func TestCloseBounded(t *testing.T) {
	w, s := holding(t, 1<<10, "stuck\n") // the writer holds it, blocked
	defer w.Gate.Unlock()
	if s.Close(50 * time.Millisecond) {
		t.Fatal("Close reported everything written to a writer that takes no writes")
	}
	if n, err := s.Write([]byte("late\n")); n != 5 || err != nil {
		t.Errorf("Write after Close = %d, %v", n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped != 0 || len(s.queue) != 0 {
		t.Errorf("after Close: %d queued, %d counted as dropped", len(s.queue), s.dropped)
	}
}

// With the real thing — a pipe of one page nobody reads — a thousand lines
// are written without blocking; once the pipe is read, every line comes
// whole, and the counts of the dropped ones make up the rest.
func TestStalledPipe(t *testing.T) {
	r, wf, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wf.Close()
	if _, err := unix.FcntlInt(wf.Fd(), unix.F_SETPIPE_SZ, os.Getpagesize()); err != nil {
		t.Fatal(err)
	}
	s := New(wf, 4096, note)
	line := strings.Repeat("x", 99) + "\n"
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			s.Write([]byte(line))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a full pipe")
	}
	read := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		read <- string(b)
	}()
	if !s.Close(10 * time.Second) {
		t.Fatal("Close did not write out the queue")
	}
	wf.Close() // the reader's EOF
	var whole, dropped, notes int
	for _, l := range strings.SplitAfter(<-read, "\n") {
		var n int
		switch _, err := fmt.Sscanf(l, "dropped %d\n", &n); {
		case l == line:
			whole++
		case err == nil:
			dropped += n
			notes++
		case l != "":
			t.Errorf("line %q is neither whole nor a count", l)
		}
	}
	if whole+dropped != 1000 || notes == 0 {
		t.Errorf("%d whole lines and %d counted as dropped in %d notes, want 1000 in all and a note", whole, dropped, notes)
	}
}

// Once a line does not fit, the lines after it are dropped too, even
// shorter ones that would fit, until the writer takes the queue: the count
// stands in their place. The last line comes after everything, and a line
// written after Close is dropped.
func TestDropsUntilTakenAndLastLine(t *testing.T) {
	w, s := holding(t, 20, "first\n") // the writer holds "first" (6 bytes), blocked
	s.Write([]byte("a long line\n"))  // 12: 18 in all
	s.Write([]byte("too long\n"))     // 9: dropped
	s.Write([]byte("x\n"))            // 2 would fit: dropped all the same
	s.SetLast([]byte("the end\n"))
	w.Gate.Unlock()
	if !s.Close(10 * time.Second) {
		t.Fatal("Close did not write out the queue")
	}
	s.Write([]byte("late\n"))
	want := []string{"first\n", "a long line\n", "dropped 2\n", "the end\n"}
	if got := w.Written(); !slices.Equal(got, want) {
		t.Errorf("written %q, want %q", got, want)
	}
}

// The bound is inclusive: lines that bring the bytes held to max exactly
// are kept; one byte more is dropped and counted.
func TestBoundIsInclusive(t *testing.T) {
	w, s := holding(t, 21, "first\n") // the writer holds "first" (6 bytes), blocked
	s.Write([]byte("to the byte!\n")) // 13: 19 in all
	s.Write([]byte("x\n"))            // 2: 21 of 21, kept
	s.Write([]byte("\n"))             // 22, one byte over: dropped
	w.Gate.Unlock()
	closeWants(t, s, w, "first\n", "to the byte!\n", "x\n", "dropped 1\n")
}

// Write and SetLast keep a copy: the logger reuses its buffer for the next
// line as soon as Write returns (zerolog pools them), so a sink that kept
// the caller's slice would write the later line's bytes for the earlier.
func TestWriteAndSetLastCopy(t *testing.T) {
	w, s := holding(t, 1<<10, "first\n") // the writer is blocked: what follows stays queued
	buf := []byte("line a\n")
	s.Write(buf)
	copy(buf, "line b\n")
	s.Write(buf)
	last := []byte("the end\n")
	s.SetLast(last)
	copy(last, "garbage\n")
	w.Gate.Unlock()
	closeWants(t, s, w, "first\n", "line a\n", "line b\n", "the end\n")
}

// waitParked waits (at most 10 s) until s's writer has nothing to write
// and waits in its select for a wake or the stop: what follows must wake it.
func waitParked(t *testing.T, s *Sink) {
	t.Helper()
	id := fmt.Sprintf("logsink.(*Sink).run(%p", s)
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, id) && strings.Contains(strings.SplitN(g, "\n", 2)[0], "[select") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the writer never waited idle:\n%s", buf[:n])
		}
		runtime.Gosched()
	}
}

// A line written while the writer waits idle is written at once, without
// Close; and a Close that comes while it waits ends it, the last line
// written.
func TestIdleWriterWakes(t *testing.T) {
	w := logsinktest.NewStalledWriter()
	s := New(w, 1<<10, note)
	for i := range 3 {
		waitParked(t, s)
		s.Write(fmt.Appendf(nil, "line %d\n", i))
		select {
		case <-w.Calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("line %d queued to an idle writer was not written", i)
		}
	}
	waitParked(t, s)
	s.SetLast([]byte("the end\n"))
	if !s.Close(10 * time.Second) {
		t.Fatal("Close did not end an idle writer")
	}
	want := []string{"line 0\n", "line 1\n", "line 2\n", "the end\n"}
	if got := w.Written(); !slices.Equal(got, want) {
		t.Errorf("written %q, want %q", got, want)
	}
}

// holding returns a sink of max bytes over a stalled writer (its gate
// locked) that has taken line and is blocked in its Write: what is written
// next is queued.
func holding(t *testing.T, max int, line string) (*logsinktest.StalledWriter, *Sink) {
	t.Helper()
	w := logsinktest.NewStalledWriter()
	w.Gate.Lock()
	s := New(w, max, note)
	s.Write([]byte(line))
	select {
	case <-w.Calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never wrote")
	}
	return w, s
}
