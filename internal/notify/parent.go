package notify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables of gm2-init's own supervisor (systemd with
// Type=notify or WatchdogSec=, podman --sdnotify=container, another gm2-init).
const (
	EnvWatchdogUSec = "WATCHDOG_USEC"
	EnvWatchdogPid  = "WATCHDOG_PID"
)

// Parent tells whatever started gm2-init how its start, reloads and
// shutdown go, with the notify protocol its workers use towards gm2-init:
// READY=1 once the start has finished, RELOADING=1/READY=1 around a reload,
// STOPPING=1, STATUS="N/M workers ready", and WATCHDOG=1 while the
// supervisor's loop answers. Without it a systemd Type=notify unit (or a
// podman quadlet with Notify=true) never becomes active.
//
// Its methods Ready, Reloading, Stopping and Status are the supervisor's
// Lifecycle; they are called from the supervisor's loop and never block:
// every send is non-blocking. When the receiver's queue is full (EAGAIN:
// it is not reading right now), the message waits in a short queue of its
// own, in order, and a timer retries with backoff (10 ms doubling to 1 s)
// until the receiver takes it. Losing a READY=1 would leave the unit
// "activating" until its start timeout, and delaying the supervisor's loop
// would stall every worker; a late message is the lesser harm. A WATCHDOG=1
// that finds the queue busy is dropped instead: a late ping proves nothing,
// the next one comes in half the watchdog period.
//
// A Parent is safe for concurrent use (the watchdog runs in its own
// goroutine).
type Parent struct {
	env     string
	onError func(error)

	mu       sync.Mutex
	fd       int
	addr     unix.SockaddrUnix // not shared: sendto writes into it
	queue    []string          // waiting for room in the receiver's queue
	retry    *time.Timer
	backoff  time.Duration
	stopping bool   // STOPPING=1 was sent: no READY=1 or RELOADING=1 after it
	failing  string // the last send error reported, so that a dead receiver is one line
	closed   bool
}

const (
	// maxParentQueue bounds the messages waiting for the receiver. The
	// supervisor sends a handful per reload; a receiver that stays full
	// for that many is not reading at all.
	maxParentQueue = 32
	minRetry       = 10 * time.Millisecond
	// minWatchdogUSec is the shortest watchdog period honoured (10 ms).
	minWatchdogUSec = 10_000
	maxRetry        = time.Second
)

// DialParent prepares the notify socket named by addr, gm2-init's own
// NOTIFY_SOCKET: an absolute path, or "@name" for the abstract namespace (as
// the receiver in this package and libsystemd read it). It returns nil and
// no error when addr is empty: nobody is listening. onError, if set, is
// told about failed sends (once per kind of failure until a send works
// again); it must not call the Parent.
func DialParent(addr string, onError func(error)) (*Parent, error) {
	if addr == "" {
		return nil, nil
	}
	switch {
	case strings.HasPrefix(addr, "@"):
		if len(addr) < 2 {
			return nil, fmt.Errorf("%s=%q: an abstract socket needs a name after @", EnvNotifySocket, addr)
		}
	case filepath.IsAbs(addr):
	case strings.HasPrefix(addr, "vsock:"):
		return nil, fmt.Errorf("%s=%q: AF_VSOCK notify sockets are not supported (a unix socket path or @name is)", EnvNotifySocket, addr)
	default:
		return nil, fmt.Errorf("%s=%q: not an absolute path nor an @abstract name", EnvNotifySocket, addr)
	}
	if len(addr) > maxSunPath {
		return nil, fmt.Errorf("%s=%q: %d bytes, longer than the %d a unix socket address holds", EnvNotifySocket, addr, len(addr), maxSunPath)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("notify: socket for %s: %w", addr, err)
	}
	p := &Parent{env: addr, onError: onError, fd: fd, backoff: minRetry}
	p.addr.Name = addr
	return p, nil
}

// Env returns the NOTIFY_SOCKET value the Parent sends to.
func (p *Parent) Env() string { return p.env }

// Ready says that the start (or a reload) has finished: READY=1 with the
// count of ready workers in STATUS=.
func (p *Parent) Ready(ready, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return
	}
	p.sendLocked("READY=1\n" + statusLine(ready, total))
}

// Reloading says that a reload has begun. MONOTONIC_USEC is what systemd's
// Type=notify-reload requires with it, to tell this reload from an older one.
func (p *Parent) Reloading() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Nano() / int64(time.Microsecond)
	p.sendLocked("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(usec, 10) + "\nSTATUS=reloading")
}

// Stopping says that the shutdown has begun.
func (p *Parent) Stopping() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return
	}
	p.stopping = true
	p.sendLocked("STOPPING=1\nSTATUS=stopping")
}

// Status reports the count of ready workers.
func (p *Parent) Status(ready, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sendLocked(statusLine(ready, total))
}

func statusLine(ready, total int) string {
	return fmt.Sprintf("STATUS=%d/%d workers ready", ready, total)
}

// WatchdogInterval reads WATCHDOG_USEC and WATCHDOG_PID (values as systemd
// sets them) and returns how often to send WATCHDOG=1: half the period, as
// sd_watchdog_enabled(3) advises. It returns 0 when the watchdog is off for
// gm2-init: WATCHDOG_USEC unset or empty, or WATCHDOG_PID naming another
// process (the variables leaked from a parent). A malformed value is an
// error, and the watchdog is off too.
func WatchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%s=%q: not a pid", EnvWatchdogPid, pid)
		}
		if n != self {
			return 0, nil
		}
	}
	n, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s=%q: not a positive number of microseconds", EnvWatchdogUSec, usec)
	}
	if n > uint64(time.Duration(1<<62)/time.Microsecond) {
		return 0, fmt.Errorf("%s=%q: too large", EnvWatchdogUSec, usec)
	}
	if n < minWatchdogUSec {
		// A ping every few microseconds would keep a CPU busy with round
		// trips through the loop; no service manager means that.
		return 0, fmt.Errorf("%s=%q: below the %d µs gm2-init can ping reliably", EnvWatchdogUSec, usec, minWatchdogUSec)
	}
	return time.Duration(n) * time.Microsecond / 2, nil
}

// Watchdog sends WATCHDOG=1 every interval for as long as alive says that
// the supervisor works, until ctx ends. alive is asked with a deadline of
// half the interval; it is meant to be the supervisor's Ping, a round trip
// through its loop (the check behind /livez), so that a stuck loop stops the
// pings and the service manager restarts gm2-init. The first ping is sent at
// once. A failed check is reported to onError.
func (p *Parent) Watchdog(ctx context.Context, interval time.Duration, alive func(context.Context) error) {
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, interval/2)
		err := alive(cctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.report(fmt.Errorf("watchdog: no WATCHDOG=1 this time: %w", err))
		default:
			p.ping()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *Parent) ping() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) > 0 || p.closed {
		return
	}
	if err := p.sendto("WATCHDOG=1"); err != nil && !retryable(err) {
		p.failedLocked(err)
	}
}

// sendLocked sends msg now, or queues it behind earlier ones.
func (p *Parent) sendLocked(msg string) {
	if p.closed {
		return
	}
	if len(p.queue) == 0 {
		err := p.sendto(msg)
		if err == nil {
			return
		}
		if !retryable(err) {
			p.failedLocked(err)
			return
		}
	}
	if n := len(p.queue); n > 0 && onlyStatus(msg) && onlyStatus(p.queue[n-1]) {
		p.queue[n-1] = msg // a newer count replaces one not sent yet
	} else if n >= maxParentQueue {
		p.failedLocked(fmt.Errorf("%d messages wait for the receiver; dropped %q", n, firstLine(msg)))
		return
	} else {
		p.queue = append(p.queue, msg)
	}
	if p.retry == nil {
		p.retry = time.AfterFunc(p.backoff, p.flush)
	}
}

// flush retries the queued messages, in order; it runs on the retry timer.
func (p *Parent) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retry = nil
	if p.closed {
		return
	}
	for len(p.queue) > 0 {
		err := p.sendto(p.queue[0])
		if err != nil && retryable(err) {
			p.backoff = min(2*p.backoff, maxRetry)
			p.retry = time.AfterFunc(p.backoff, p.flush)
			return
		}
		if err != nil {
			p.failedLocked(err)
		}
		p.queue = p.queue[1:]
	}
	p.queue = nil
	p.backoff = minRetry
}

// sendto makes one non-blocking send; p.mu is held.
func (p *Parent) sendto(msg string) error {
	err := unix.Sendto(p.fd, []byte(msg), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, &p.addr)
	for errors.Is(err, unix.EINTR) {
		err = unix.Sendto(p.fd, []byte(msg), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, &p.addr)
	}
	if err == nil {
		p.failing = ""
		return nil
	}
	return fmt.Errorf("notify %s: send %q: %w", p.env, firstLine(msg), err)
}

// retryable tells the errors of a receiver that is there but busy.
func retryable(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// failedLocked reports err unless the same kind of failure was the last one
// reported: a receiver that went away is one line, not one per message.
func (p *Parent) failedLocked(err error) {
	kind := err.Error()
	var errno unix.Errno
	if errors.As(err, &errno) {
		kind = errno.Error()
	}
	if kind == p.failing {
		return
	}
	p.failing = kind
	if p.onError != nil {
		p.onError(err)
	}
}

func (p *Parent) report(err error) {
	if p.onError != nil {
		p.onError(err)
	}
}

func onlyStatus(msg string) bool {
	return strings.HasPrefix(msg, "STATUS=") && !strings.Contains(msg, "\n")
}

func firstLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\n")
	return line
}

// Close tries once more to send what is queued, then closes the socket. It
// is safe to call more than once.
func (p *Parent) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if p.retry != nil {
		p.retry.Stop()
		p.retry = nil
	}
	for _, msg := range p.queue {
		if err := p.sendto(msg); err != nil {
			p.failedLocked(err)
			break
		}
	}
	p.queue = nil
	p.closed = true
	return unix.Close(p.fd)
}
