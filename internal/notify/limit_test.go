package notify

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	l := NewLimiter(10*time.Second, 3)

	// A sender's first datagram is reported at once.
	if r, ok := l.Note(7, at(0)); !ok || r != (Report{Sender: 7, Count: 1, First: true}) {
		t.Fatalf("first: %+v, %v", r, ok)
	}
	// The rest of its interval is held back and counted.
	for i := range 999 {
		if r, ok := l.Note(7, at(time.Duration(i)*time.Millisecond)); ok {
			t.Fatalf("datagram %d within the interval reported: %+v", i+2, r)
		}
	}
	if due, ok := l.Due(); !ok || !due.Equal(at(10*time.Second)) {
		t.Fatalf("Due = %v, %v; want the end of the interval", due, ok)
	}
	if got := l.Flush(at(9 * time.Second)); got != nil {
		t.Fatalf("Flush before the interval ended: %+v", got)
	}
	// Another sender is independent.
	if r, ok := l.Note(8, at(time.Second)); !ok || !r.First {
		t.Fatalf("second sender: %+v, %v", r, ok)
	}
	// The next datagram after the interval carries the count.
	if r, ok := l.Note(7, at(10*time.Second)); !ok || r != (Report{Sender: 7, Count: 1000}) {
		t.Fatalf("after the interval: %+v, %v; want 999 held + this one", r, ok)
	}
	if _, ok := l.Due(); ok {
		t.Error("Due reports a pending count after it was reported")
	}
	// A count held back with no later datagram comes out of Flush.
	l.Note(7, at(11*time.Second))
	l.Note(7, at(12*time.Second))
	if got := l.Flush(at(19 * time.Second)); got != nil {
		t.Fatalf("Flush too early: %+v", got)
	}
	got := l.Flush(at(20 * time.Second))
	if len(got) != 1 || got[0] != (Report{Sender: 7, Count: 2}) {
		t.Fatalf("Flush = %+v, want sender 7 with 2", got)
	}
	// Flush starts a new window: one line per interval holds.
	if r, ok := l.Note(7, at(21*time.Second)); ok {
		t.Fatalf("right after a flushed report: %+v", r)
	}
	// Sender 8 sent nothing in its last interval: forgotten by a Flush.
	l.Flush(at(31 * time.Second))
	if r, ok := l.Note(8, at(31*time.Second)); !ok || !r.First {
		t.Errorf("sender 8 after a quiet interval: %+v, %v; want a first report", r, ok)
	}
}

func TestLimiterBoundsTheSenders(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := NewLimiter(time.Minute, 4)
	lines := 0
	var total uint64
	// A fork loop: 10,000 datagrams from 10,000 pids.
	for pid := 1; pid <= 10_000; pid++ {
		if r, ok := l.Note(pid, t0); ok {
			lines++
			total += r.Count
		}
	}
	for _, r := range l.Flush(t0.Add(time.Minute)) {
		lines++
		total += r.Count
		if r.Sender != OtherSenders {
			t.Errorf("flushed %+v, want only the lumped senders", r)
		}
	}
	if lines != 5+1 || total != 10_000 {
		t.Errorf("%d lines counting %d datagrams; want 4 senders + OtherSenders + one flush, 10000", lines, total)
	}
	if len(l.senders) > 5 {
		t.Errorf("table holds %d senders, want at most 4 + OtherSenders", len(l.senders))
	}
	// Once their interval is over without datagrams, the senders make room
	// for new ones, which get lines of their own again.
	if r, ok := l.Note(20_000, t0.Add(2*time.Minute)); !ok || r.Sender != 20_000 {
		t.Errorf("new sender after the others went quiet: %+v, %v", r, ok)
	}
}

// TestLimiterKeepsHeldCounts: a full table makes room only with senders
// that hold nothing back; one whose interval ended with datagrams held
// stays, and its count is reported, not lost.
func TestLimiterKeepsHeldCounts(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := NewLimiter(time.Minute, 2)
	l.Note(1, t0)
	l.Note(1, t0.Add(time.Second)) // held back
	l.Note(2, t0)
	// A new sender after the interval: sender 1 still holds a count.
	if r, ok := l.Note(3, t0.Add(2*time.Minute)); !ok || r.Sender != 3 {
		t.Errorf("new sender: %+v, %v; want a line of its own (sender 2 made room)", r, ok)
	}
	var held uint64
	for _, r := range l.Flush(t0.Add(3 * time.Minute)) {
		if r.Sender == 1 {
			held += r.Count
		}
	}
	if held != 1 {
		t.Errorf("sender 1's held datagram reported %d times, want once", held)
	}
}

func TestLimiterConcurrentUse(t *testing.T) {
	l := NewLimiter(time.Hour, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total uint64
	now := time.Now()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if r, ok := l.Note(g, now); ok {
					mu.Lock()
					total += r.Count
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range l.Flush(now.Add(time.Hour)) {
		total += r.Count
	}
	if total != 8000 {
		t.Errorf("counted %d datagrams, want 8000", total)
	}
}

// TestDropFloodIsFewLines is issue 12's flood on Receive's own drop path:
// thousands of oversized datagrams from one sender are two reports (the
// first, and the count when the socket closes), not one each.
func TestDropFloodIsFewLines(t *testing.T) {
	const n = 2000
	var mu sync.Mutex
	var drops []Drop
	s := listen(t, Config{Dirs: []string{t.TempDir()}, DropInterval: time.Hour, OnDrop: func(d Drop) {
		mu.Lock()
		defer mu.Unlock()
		drops = append(drops, d)
	}})
	big := "STATUS=" + strings.Repeat("x", recvBufSize)
	done := make(chan error, 1)
	go func() {
		c, err := dialUnixgram(s.Env())
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		for range n {
			if _, err := c.Write([]byte(big)); err != nil {
				done <- err
				return
			}
		}
		_, err = c.Write([]byte("READY=1"))
		done <- err
	}()
	if m := receive(t, s); !m.Ready {
		t.Fatalf("got %+v, want the READY=1 after the flood", m)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var total uint64
	for _, d := range drops {
		total += d.Count
	}
	if len(drops) != 2 || total != n || drops[0].Err == nil || drops[0].Pid != pidSelf() || drops[1].Err != nil {
		t.Errorf("%d reports counting %d: %s; want 2 counting %d (the first with its reason)", len(drops), total, fmtDrops(drops), n)
	}
}

func fmtDrops(ds []Drop) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "[pid %d count %d err %v] ", d.Pid, d.Count, d.Err)
	}
	return b.String()
}

func dialUnixgram(addr string) (*net.UnixConn, error) {
	return net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
}

func pidSelf() int { return os.Getpid() }
