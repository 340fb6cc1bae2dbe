package notify

import (
	"sync"
	"time"
)

// OtherSenders is the Report.Sender under which a Limiter counts the
// senders it has no room left to track one by one.
const OtherSenders = -1

// DefaultDropInterval is how often, at most, one sender's dropped datagrams
// are reported again.
const DefaultDropInterval = 10 * time.Second

// defaultMaxSenders bounds the senders a Limiter tracks one by one: a flood
// from ever new pids (a fork loop) must not grow the table without limit.
const defaultMaxSenders = 64

// Limiter thins out the warnings about datagrams gm2-init drops (from a
// process that is not a worker, without credentials, too long): the first
// one from a sender is reported at once, then at most one report per sender
// per interval, which carries the number of datagrams it stands for.
//
// Why: a warning per datagram lets any process that can reach the socket
// make PID 1 write without limit — 100,000 spoofed datagrams were 100,000
// log lines, 17.9 MB in 10 s and 92 % of a CPU. With a Limiter the same flood
// is two lines per sender and interval, and the count is not lost.
//
// Keys are sender pids (0 when the pid is unknown). Past maxSenders
// distinct senders in a window, new ones are counted together under
// OtherSenders.
//
// The zero value is not usable; create one with NewLimiter. A Limiter is
// safe for concurrent use.
type Limiter struct {
	interval time.Duration
	max      int

	mu      sync.Mutex
	senders map[int]*window
	// due is the earliest end of a window holding back a count (zero when
	// none does): Flush and Due need not scan the table before then.
	due time.Time
}

// window is one sender's current interval.
type window struct {
	start time.Time // when its last report was made
	held  uint64    // datagrams since then, not reported yet
}

// Report is one line to log: Count datagrams from Sender (OtherSenders for
// the senders not tracked one by one). First marks a sender's first report,
// whose Count is 1.
type Report struct {
	Sender int
	Count  uint64
	First  bool
}

// NewLimiter returns a Limiter that reports each sender at most once per
// interval (DefaultDropInterval when ≤ 0), tracking up to maxSenders senders
// one by one (64 when ≤ 0).
func NewLimiter(interval time.Duration, maxSenders int) *Limiter {
	if interval <= 0 {
		interval = DefaultDropInterval
	}
	if maxSenders <= 0 {
		maxSenders = defaultMaxSenders
	}
	return &Limiter{interval: interval, max: maxSenders, senders: map[int]*window{}}
}

// Note counts one dropped datagram from sender at now. When ok, the caller
// logs r now; otherwise the datagram is held back and counted into the
// sender's next report — at its next datagram after the interval, or from
// Flush.
func (l *Limiter) Note(sender int, now time.Time) (r Report, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.senders[sender]
	if w == nil && len(l.senders) >= l.max {
		l.expire(now)
		if len(l.senders) >= l.max {
			sender = OtherSenders
			w = l.senders[sender]
		}
	}
	if w == nil {
		l.senders[sender] = &window{start: now}
		return Report{Sender: sender, Count: 1, First: true}, true
	}
	if now.Sub(w.start) >= l.interval {
		r = Report{Sender: sender, Count: w.held + 1}
		w.start, w.held = now, 0
		l.recomputeDue()
		return r, true
	}
	w.held++
	if end := w.start.Add(l.interval); l.due.IsZero() || end.Before(l.due) {
		l.due = end
	}
	return Report{}, false
}

// Due returns when Flush will next have a held-back count to report, and
// false when nothing is held back. A caller with a timer arms it for then, so
// that the count of a flood that stopped is reported too.
func (l *Limiter) Due() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.due, !l.due.IsZero()
}

// Flush returns a report for every sender whose interval has ended with
// datagrams held back, and forgets the senders that sent nothing in their
// last interval. To report every count still held, at the end, pass a time
// one interval ahead.
func (l *Limiter) Flush(now time.Time) []Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.due.IsZero() || now.Before(l.due) {
		return nil
	}
	var out []Report
	l.due = time.Time{}
	for sender, w := range l.senders {
		end := w.start.Add(l.interval)
		switch {
		case w.held > 0 && !now.Before(end):
			out = append(out, Report{Sender: sender, Count: w.held})
			// A new window starts with this report: the sender's next
			// datagram within the interval is held back again.
			w.start, w.held = now, 0
		case w.held > 0:
			if l.due.IsZero() || end.Before(l.due) {
				l.due = end
			}
		case !now.Before(end):
			delete(l.senders, sender)
		}
	}
	return out
}

// recomputeDue sets due to the earliest end of a window that holds back a
// count. It runs when a count is reported outside Flush: once per sender and
// interval at most.
func (l *Limiter) recomputeDue() {
	l.due = time.Time{}
	for _, w := range l.senders {
		if end := w.start.Add(l.interval); w.held > 0 && (l.due.IsZero() || end.Before(l.due)) {
			l.due = end
		}
	}
}

// expire forgets the senders whose interval ended with nothing held back:
// they have no count to lose, and a new sender then gets a line of its own
// instead of being lumped with OtherSenders. It runs only when the table is
// full and a new sender comes, so a flood from known senders never pays for
// a scan.
func (l *Limiter) expire(now time.Time) {
	for sender, w := range l.senders {
		if w.held == 0 && now.Sub(w.start) >= l.interval {
			delete(l.senders, sender)
		}
	}
}
