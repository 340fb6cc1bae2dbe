// Package httpload is the bounded HTTP load that tests put on a server
// while they reload, replace or stop its workers, and then ask: did any
// request fail?
//
// Half the clients open a new connection per request, so that the kernel
// spreads them over the workers and a connection can arrive while no
// worker accepts; the other half keep their connection alive, so that a
// worker that stops must finish the request it has. Counts are kept per
// mode, because the two fail in different ways. The load stops when Stop
// is called or after its own time limit, whichever comes first, and every
// wait on it is bounded. Only tests import this package.
package httpload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Mode is how a client connects; it indexes the counts of a Result.
type Mode int

const (
	NewConnection Mode = iota // a new connection per request
	KeepAlive                 // one connection kept alive
)

func (m Mode) String() string {
	if m == KeepAlive {
		return "keep-alive"
	}
	return "new connection"
}

// Options shape a load. Clients and Limit are required.
type Options struct {
	Clients int           // client i uses Mode(i % 2)
	Limit   time.Duration // the load stops by itself after this long
	Timeout time.Duration // bounds each request; 10 s when 0
	// Dial opens the clients' connections (for a server in another
	// network namespace); nil for the default dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// PIDBodies says that the server answers with its pid: answers are
	// counted by pid (AnsweredBy), and another body is a failure.
	PIDBodies bool
}

// Result is what a load counted.
type Result struct {
	OK, Failed [2]int64 // by Mode
	Errs       []string // the first ten failures
}

// Sums are the counts over both modes, and the first failures.
func (r Result) Sums() (ok, failed int64, errs []string) {
	return r.OK[0] + r.OK[1], r.Failed[0] + r.Failed[1], r.Errs
}

// Load is a running load; its methods are safe for concurrent use.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	modes  [2]bool // which modes have clients
	stop   sync.Once
	final  Result

	mu      sync.Mutex
	res     Result
	byPID   map[int]int64
	waiters []waiter
}

// waiter is a condition on the counts, and the channel closed once it
// holds.
type waiter struct {
	holds func() bool // called with mu held
	ch    chan struct{}
}

// Start starts the load on http://addr/.
func Start(addr string, o Options) *Load {
	ctx, cancel := context.WithTimeout(context.Background(), o.Limit)
	l := &Load{cancel: cancel, byPID: map[int]int64{}}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	for i := 0; i < o.Clients; i++ {
		mode := Mode(i % 2)
		l.modes[mode] = true
		tr := &http.Transport{DisableKeepAlives: mode == NewConnection, MaxIdleConnsPerHost: 1, DialContext: o.Dial}
		c := &http.Client{Timeout: timeout, Transport: tr}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for ctx.Err() == nil {
				l.one(c, addr, mode, o.PIDBodies)
			}
		}()
	}
	return l
}

// one makes one request and counts it.
func (l *Load) one(c *http.Client, addr string, mode Mode, pidBodies bool) {
	pid := 0
	resp, err := c.Get("http://" + addr + "/")
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
		}
		if err == nil && pidBodies {
			var perr error
			if pid, perr = strconv.Atoi(string(b)); perr != nil {
				err = errors.Join(fmt.Errorf("body %q is not a pid", b), perr)
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.res.Failed[mode]++
		if len(l.res.Errs) < 10 {
			l.res.Errs = append(l.res.Errs, fmt.Sprintf("%v (%v)", err, mode))
		}
	} else {
		l.res.OK[mode]++
		if pidBodies {
			l.byPID[pid]++
		}
	}
	keep := l.waiters[:0]
	for _, w := range l.waiters {
		if w.holds() {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	l.waiters = keep
}

// when returns a channel closed once holds (called with mu held) does.
func (l *Load) when(holds func() bool) <-chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if holds() {
		close(ch)
	} else {
		l.waiters = append(l.waiters, waiter{holds, ch})
	}
	return ch
}

func wait(ch <-chan struct{}, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// Counts is what the load counted so far.
func (l *Load) Counts() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.Errs = append([]string(nil), r.Errs...)
	return r
}

// OK is the count of successful requests so far, both modes.
func (l *Load) OK() int64 {
	ok, _, _ := l.Counts().Sums()
	return ok
}

// Reached returns a channel closed once n requests have succeeded, both
// modes together.
func (l *Load) Reached(n int64) <-chan struct{} {
	return l.when(func() bool { return l.res.OK[0]+l.res.OK[1] >= n })
}

// WaitRequests waits until n more requests than now have succeeded in
// each mode that has clients — so that a test knows traffic of both kinds
// flows at this point — for at most timeout.
func (l *Load) WaitRequests(n int64, timeout time.Duration) bool {
	l.mu.Lock()
	target := l.res.OK
	l.mu.Unlock()
	for m := range target {
		if l.modes[m] {
			target[m] += n
		}
	}
	return wait(l.when(func() bool { return l.res.OK[0] >= target[0] && l.res.OK[1] >= target[1] }), timeout)
}

// WaitAnswers waits until pid has answered n requests (Options.PIDBodies),
// for at most timeout.
func (l *Load) WaitAnswers(pid int, n int64, timeout time.Duration) bool {
	return wait(l.when(func() bool { return l.byPID[pid] >= n }), timeout)
}

// AnsweredBy is how many requests each pid answered so far
// (Options.PIDBodies).
func (l *Load) AnsweredBy() map[int]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.byPID)
}

// Stop ends the load, waits for every client to finish its request, and
// returns the final counts. Calling it again returns the same counts.
func (l *Load) Stop() Result {
	l.stop.Do(func() {
		l.cancel()
		l.wg.Wait()
		l.final = l.Counts()
	})
	return l.final
}
