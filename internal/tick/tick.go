// Package tick is a periodic tick for the rare, long intervals of an idle
// gm2-init (the reaper's safety net, the --max-memory-restart check), from
// a timerfd(2) that the Go netpoller watches instead of a runtime timer.
//
// Why not time.Ticker: a runtime timer tens of seconds away makes the
// netpoller sleep in epoll_wait with that timeout, and the kernel lets
// epoll_wait (like poll and select) wake up to 0.1 % of its timeout late
// (30 ms for 30 s), while the runtime's monitor thread (sysmon) sleeps
// until the same deadline on a futex, which wakes on time. Finding the
// timer overdue, sysmon then polls every 20 µs until the netpoller has run
// it: about 60 context switches for each expiry of a 30 s ticker, which
// was nearly all of an idle gm2-init's wakeups (bench/analysis.md, "Idle
// wakeups"). A timerfd has no runtime timer behind it: the netpoller
// sleeps without a timeout, the kernel wakes it when the timerfd expires,
// and sysmon stays asleep.
package tick

import (
	"encoding/binary"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Ticker delivers a value on C every interval, dropping ticks the reader
// has not taken (one pending is enough). C is closed once Stop has ended
// it.
type Ticker struct {
	C    <-chan struct{}
	stop func()
	done chan struct{}
}

// New starts a Ticker. Where timerfd_create is refused (a seccomp profile
// that forbids it, no descriptor left), it ticks from a runtime ticker
// instead, at the cost of those wakeups.
func New(interval time.Duration) *Ticker {
	c := make(chan struct{}, 1)
	t := &Ticker{C: c, done: make(chan struct{})}
	send := func() {
		select {
		case c <- struct{}{}:
		default: // the last tick is still unread
		}
	}
	if f, err := timerfd(interval); err == nil {
		t.stop = func() { f.Close() }
		go func() {
			defer close(t.done)
			defer close(c)
			var b [8]byte // the count of expirations since the last read
			for {
				if _, err := f.Read(b[:]); err != nil {
					return // closed by Stop
				}
				if binary.NativeEndian.Uint64(b[:]) > 0 {
					send()
				}
			}
		}()
		return t
	}
	rt := time.NewTicker(interval)
	quit := make(chan struct{})
	t.stop = func() { close(quit) }
	go func() {
		defer close(t.done)
		defer close(c)
		defer rt.Stop()
		for {
			select {
			case <-quit:
				return
			case <-rt.C:
				send()
			}
		}
	}()
	return t
}

// Stop ends the ticker; its goroutine is gone when Stop returns. It never
// waits on the reader of C.
func (t *Ticker) Stop() {
	t.stop()
	<-t.done
}

// timerfd returns a periodic timerfd as a file the netpoller watches: a
// non-blocking descriptor given to os.NewFile is registered with it, so
// Read parks the goroutine and Close wakes it.
func timerfd(interval time.Duration) (*os.File, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	ts := unix.NsecToTimespec(interval.Nanoseconds())
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "timerfd"), nil
}
