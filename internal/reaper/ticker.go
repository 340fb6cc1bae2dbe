package reaper

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ticker fires every interval from a timerfd(2) that the Go netpoller
// watches, not from a runtime timer.
//
// Why not time.Ticker: a runtime timer tens of seconds away makes the
// netpoller sleep in epoll_wait with that timeout, and the kernel lets
// epoll_wait (like poll and select) wake up to 0.1 % of its timeout late
// (30 ms for 30 s), while the runtime's monitor thread (sysmon) sleeps
// until the same deadline with a futex, which wakes on time. Finding the
// timer overdue, sysmon then polls every 20 µs until the netpoller runs
// it: about 60 context switches for each expiry of a 30 s ticker, which
// was nearly all of an idle gm2-init's wakeups (bench/analysis.md, "Idle
// wakeups"). A timerfd has no runtime timer behind it: the netpoller
// sleeps without a timeout, the kernel wakes it when the timerfd expires,
// and sysmon stays asleep.
type ticker struct {
	C    <-chan struct{}
	file *os.File
	done chan struct{}
}

// newTicker starts a ticker; Stop ends it.
func newTicker(interval time.Duration) (*ticker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	ts := unix.NsecToTimespec(interval.Nanoseconds())
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("timerfd_settime %s: %w", interval, err)
	}
	// A non-blocking fd given to os.NewFile is registered with the
	// netpoller: Read parks the goroutine, Close wakes it.
	f := os.NewFile(uintptr(fd), "timerfd")
	c := make(chan struct{}, 1)
	t := &ticker{C: c, file: f, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		var b [8]byte // the count of expirations since the last read
		for {
			if _, err := f.Read(b[:]); err != nil {
				return // closed by Stop
			}
			if binary.NativeEndian.Uint64(b[:]) == 0 {
				continue
			}
			select {
			case c <- struct{}{}:
			default: // the last tick is still unread: one is enough
			}
		}
	}()
	return t, nil
}

// Stop ends the ticker and its goroutine.
func (t *ticker) Stop() {
	t.file.Close()
	<-t.done
}
