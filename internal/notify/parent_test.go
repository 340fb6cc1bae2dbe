package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

func monotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// rawPayloads reads datagrams as a service manager does, keeping the
// payload as sent (Parse drops MONOTONIC_USEC).
type rawReceiver struct {
	fd   int
	path string
}

func newRawReceiver(t *testing.T, addr string) *rawReceiver {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &rawReceiver{fd: fd, path: addr}
}

// next returns the next payload and its sender's pid, waiting at most
// waitTimeout (testtool.Recvmsg: a wait no signal cuts short).
func (r *rawReceiver) next(t *testing.T) (string, int) {
	t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, err := testtool.Recvmsg(r.fd, buf, oob, 0, waitTimeout)
	if err != nil {
		t.Fatalf("recvmsg: %v", err)
	}
	pid, err := senderPid(oob[:oobn])
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	return string(buf[:n]), pid
}

// pending returns what is queued now, without waiting.
func (r *rawReceiver) pending(t *testing.T) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(buf[:n]))
	}
}

func dialParent(t *testing.T, addr string, onError func(error)) *Parent {
	t.Helper()
	p, err := DialParent(addr, onError)
	if err != nil || p == nil {
		t.Fatalf("DialParent(%q) = %v, %v", addr, p, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestParentMessages(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@gm2-parent-test-" + strconv.Itoa(os.Getpid())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRawReceiver(t, tc.addr)
			p := dialParent(t, tc.addr, func(err error) { t.Errorf("send error: %v", err) })

			p.Status(1, 2)
			p.Ready(2, 2)
			before := monotonicUsec()
			p.Reloading()
			after := monotonicUsec()
			p.Ready(2, 2)
			p.Stopping()
			p.Ready(2, 2)  // after STOPPING=1: not sent
			p.Reloading()  // neither
			p.Stopping()   // once is enough
			p.Status(0, 2) // still sent
			want := []string{
				"STATUS=1/2 workers ready",
				"READY=1\nSTATUS=2/2 workers ready",
				"RELOADING=1\nMONOTONIC_USEC=*\nSTATUS=reloading",
				"READY=1\nSTATUS=2/2 workers ready",
				"STOPPING=1\nSTATUS=stopping",
				"STATUS=0/2 workers ready",
			}
			for i, w := range want {
				got, pid := r.next(t)
				if pid != os.Getpid() {
					t.Errorf("message %d from pid %d, want this process %d", i, pid, os.Getpid())
				}
				if strings.Contains(w, "*") {
					lines := strings.Split(got, "\n")
					usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
					if err != nil || usec < before || usec > after {
						t.Errorf("MONOTONIC_USEC in %q: %d, want the monotonic clock in [%d, %d]", got, usec, before, after)
					}
					lines[1] = "MONOTONIC_USEC=*"
					got = strings.Join(lines, "\n")
				}
				if got != w {
					t.Errorf("message %d = %q, want %q", i, got, w)
				}
				// The receiver gm2-init uses for its workers reads it the
				// same way.
				if m := Parse([]byte(got)); strings.HasPrefix(w, "READY=1") && (!m.Ready || !m.HasStatus) {
					t.Errorf("Parse(%q) = %+v", got, m)
				}
			}
			if extra := r.pending(t); len(extra) != 0 {
				t.Errorf("unexpected messages %q", extra)
			}
		})
	}
}

// TestParentToOwnReceiver: gm2-init under another gm2-init speaks to the
// receiver of this package.
func TestParentToOwnReceiver(t *testing.T) {
	for _, cfg := range []Config{{Dirs: []string{t.TempDir()}}, {Dirs: []string{filepath.Join(os.DevNull, "x")}}} {
		s := listen(t, cfg)
		p := dialParent(t, s.Env(), nil)
		p.Ready(3, 3)
		if m := receive(t, s); !m.Ready || m.Status != "3/3 workers ready" || m.Pid != os.Getpid() {
			t.Errorf("%s: got %+v", s.Env(), m)
		}
		p.Stopping()
		if m := receive(t, s); !m.Stopping {
			t.Errorf("%s: got %+v", s.Env(), m)
		}
	}
}

// TestParentNeverBlocks: a receiver that does not read fills up; the
// supervisor's calls still return at once, the messages wait in order (the
// newest count replacing an unsent one) and arrive once the receiver reads
// again; a ping that finds them waiting is dropped.
func TestParentNeverBlocks(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	r := newRawReceiver(t, addr)
	// Fill the receiver's queue from another socket.
	filler, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(filler)
	fill := 0
	for ; ; fill++ {
		err := unix.Sendto(filler, []byte("X=1"), unix.MSG_DONTWAIT, &unix.SockaddrUnix{Name: addr})
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if fill > 1<<20 {
			t.Fatal("the receiver's queue never filled")
		}
	}
	var mu sync.Mutex
	var errs []error
	p := dialParent(t, addr, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	p.Ready(1, 2)
	p.Status(1, 2)
	p.Status(2, 2)
	p.ping()
	p.Stopping()
	p.mu.Lock()
	queued := append([]string(nil), p.queue...)
	p.mu.Unlock()
	want := []string{"READY=1\nSTATUS=1/2 workers ready", "STATUS=2/2 workers ready", "STOPPING=1\nSTATUS=stopping"}
	if strings.Join(queued, "|") != strings.Join(want, "|") {
		t.Fatalf("queued %q, want %q", queued, want)
	}
	// The receiver reads again: the filler first, then the queue, in order,
	// brought by the retry timer.
	for range fill {
		if got, _ := r.next(t); got != "X=1" {
			t.Fatalf("got %q before the filler was read", got)
		}
	}
	for _, w := range want {
		if got, _ := r.next(t); got != w {
			t.Errorf("got %q, want %q", got, w)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 0 {
		t.Errorf("a busy receiver is no error: %v", errs)
	}
}

// TestParentReceiverGone: a receiver that went away is reported once, not
// once per message, and again after it came back and left again.
func TestParentReceiverGone(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	var errs []error
	p := dialParent(t, addr, func(err error) { errs = append(errs, err) })
	p.Ready(1, 1)
	p.Status(1, 1)
	p.Status(0, 1)
	if len(errs) != 1 || !errors.Is(errs[0], unix.ENOENT) || !strings.Contains(errs[0].Error(), addr) {
		t.Fatalf("errors %v, want one ENOENT naming %s", errs, addr)
	}
	r := newRawReceiver(t, addr)
	p.Status(1, 1)
	if got, _ := r.next(t); got != "STATUS=1/1 workers ready" {
		t.Fatalf("got %q", got)
	}
	unix.Close(r.fd)
	p.Status(0, 1)
	if len(errs) != 2 {
		t.Errorf("errors %v, want a second report once the receiver is gone again", errs)
	}
}

func TestDialParent(t *testing.T) {
	for _, tc := range []struct{ addr, err string }{
		{"", ""},
		{"/run/systemd/notify", ""},
		{"@abstract", ""},
		{"@", "needs a name"},
		{"relative/notify", "not an absolute path"},
		{"vsock:2:1234", "AF_VSOCK"},
		{"/" + strings.Repeat("x", 200), "longer than"},
	} {
		p, err := DialParent(tc.addr, nil)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
				t.Errorf("DialParent(%q) error %v, want %q naming NOTIFY_SOCKET", tc.addr, err, tc.err)
			}
		case err != nil:
			t.Errorf("DialParent(%q): %v", tc.addr, err)
		case tc.addr == "" && p != nil:
			t.Errorf("DialParent(\"\") = %v, want nil", p)
		case p != nil:
			p.Close()
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       string
	}{
		{"", "", 0, ""},
		{"30000000", "", 15 * time.Second, ""},
		{"30000000", "77", 15 * time.Second, ""},
		{"30000000", "78", 0, ""}, // another process's watchdog
		{"10000", "", 5 * time.Millisecond, ""},
		{"9999", "", 0, "below"},
		{"0", "", 0, "WATCHDOG_USEC"},
		{"-5", "", 0, "WATCHDOG_USEC"},
		{"5s", "", 0, "WATCHDOG_USEC"},
		{"99999999999999999999", "", 0, "WATCHDOG_USEC"},
		{"30000000", "x", 0, "WATCHDOG_PID"},
	} {
		got, err := WatchdogInterval(tc.usec, tc.pid, 77)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("(%q, %q): error %v, want one naming %s", tc.usec, tc.pid, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("(%q, %q) = %v, %v; want %v", tc.usec, tc.pid, got, err, tc.want)
		}
	}
}

// TestWatchdog: pings while the check passes, none while it fails (a stuck
// loop), again once it passes, and the loop ends with its context.
func TestWatchdog(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	r := newRawReceiver(t, addr)
	var mu sync.Mutex
	var errs []error
	p := dialParent(t, addr, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	var stuck sync.Mutex // held = the loop does not answer
	checks := make(chan struct{}, 100)
	alive := func(ctx context.Context) error {
		defer func() { checks <- struct{}{} }()
		got := make(chan struct{})
		go func() { stuck.Lock(); stuck.Unlock(); close(got) }()
		select {
		case <-got:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	const every = 20 * time.Millisecond
	go func() { p.Watchdog(ctx, every, alive); close(ended) }()
	for range 3 {
		if got, pid := r.next(t); got != "WATCHDOG=1" || pid != os.Getpid() {
			t.Fatalf("got %q from %d", got, pid)
		}
	}
	// nextCheck waits for the loop's next check to end.
	nextCheck := func() {
		t.Helper()
		select {
		case <-checks:
		case <-time.After(waitTimeout):
			t.Fatalf("no watchdog check ended within %v", waitTimeout)
		}
	}
	stuck.Lock()
	// A check under way may still pass; the one after it cannot, and by
	// the time it ends the earlier ping has been sent.
	for len(checks) > 0 {
		<-checks
	}
	nextCheck()
	nextCheck()
	r.pending(t)
	nextCheck()
	nextCheck()
	if got := r.pending(t); len(got) != 0 {
		t.Errorf("pings while stuck: %q", got)
	}
	mu.Lock()
	if len(errs) == 0 || !errors.Is(errs[len(errs)-1], context.DeadlineExceeded) {
		t.Errorf("errors %v, want the failed checks reported", errs)
	}
	mu.Unlock()
	stuck.Unlock()
	if got, _ := r.next(t); got != "WATCHDOG=1" {
		t.Errorf("after the loop answers again: %q", got)
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(waitTimeout):
		t.Fatal("Watchdog did not return after its context ended")
	}
}
