package spawn

import (
	"context"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/status"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// TestMain lets the test binary stand in for gm2-init's own executable:
// workers are started through the ExecArg re-exec, as in production.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ExecArg {
		os.Exit(ExecMain(os.Args[2:]))
	}
	if f := os.Getenv("GM2_TEST_ESCAPE"); f != "" {
		escapeWorker(f)
	}
	os.Exit(m.Run())
}

// running is a Supervisor whose Run loop supervises real `sleep` workers,
// with a real reaper.
type running struct {
	*Supervisor
	sigs   chan os.Signal
	result chan int
}

func startSupervisor(t *testing.T, n int) *running {
	t.Helper()
	return startSupervisorWith(t, n, nil)
}

func startSupervisorWith(t *testing.T, n int, sock *notify.Socket) *running {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sleep := testtool.Require(t, "sleep", "Debian package coreutils")
	a := testApp("sleep", n)
	a.Path, a.Command = sleep, []string{"sleep", "60"}
	a.KillTimeout, a.MinUptime = 5*time.Second, 20*time.Millisecond
	s := New(Options{Apps: []App{a}, Env: os.Environ(), System: NewSystem(self, "/proc"), Notify: sock, Log: zerolog.Nop()})
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	stop := make(chan struct{})
	exits := make(chan []reaper.Exit, 16)
	reaped := make(chan struct{})
	go func() { reaper.Run(stop, sigchld, time.Second, exits); close(reaped) }()
	r := &running{Supervisor: s, sigs: make(chan os.Signal, 4), result: make(chan int, 1)}
	go func() { r.result <- s.Run(r.sigs, exits) }()
	t.Cleanup(func() {
		r.sigs <- syscall.SIGTERM
		select {
		case <-r.result:
		case <-time.After(30 * time.Second):
			t.Error("supervisor did not stop within 30 s of SIGTERM")
		}
		close(stop)
		<-reaped
		signal.Stop(sigchld)
	})
	return r
}

// waitSnapshot polls Snapshot until ok holds; each poll is a round trip
// through the loop, so it waits on the loop's events, bounded.
func waitSnapshot(t *testing.T, s *Supervisor, what string, ok func(*status.Snapshot) bool) *status.Snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		snap := s.Snapshot()
		if ok(snap) {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s; last snapshot %+v", what, snap)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSnapshotIsCurrent: snapshots are built on demand, yet a reader never
// gets one older than an event the loop applied before its call, while other
// readers hammer Snapshot concurrently (run with -race).
func TestSnapshotIsCurrent(t *testing.T) {
	skipShort(t)
	r := startSupervisor(t, 2)
	stopReaders := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				if r.Snapshot() == nil {
					t.Error("nil snapshot")
					return
				}
			}
		}()
	}
	defer func() { close(stopReaders); readers.Wait() }()

	waitSnapshot(t, r.Supervisor, "2 workers ready", func(s *status.Snapshot) bool { return s.ReadyWorkers() == 2 })
	for want := 3; want <= 5; want++ {
		r.sigs <- syscall.SIGTTIN
		// Ping returns once the loop has handled everything sent before
		// it, the signal included.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if snap := r.Snapshot(); snap.Instances != want || len(snap.Slots) != want {
			t.Fatalf("after SIGTTIN: %d instances, %d slots; want %d", snap.Instances, len(snap.Slots), want)
		}
	}
}

// TestSnapshotStuckLoop: a reader of a stuck loop gets the last snapshot
// instead of hanging, later readers do not queue behind the stuck loop, and
// the first round trip after the loop recovers brings the snapshot up to
// date again.
func TestSnapshotStuckLoop(t *testing.T) {
	skipShort(t)
	r := startSupervisor(t, 1)
	waitSnapshot(t, r.Supervisor, "1 worker ready", func(s *status.Snapshot) bool { return s.ReadyWorkers() == 1 })

	block, entered := make(chan struct{}), make(chan struct{})
	r.post(func() { close(entered); <-block }) // the loop is stuck in this event
	<-entered
	r.sigs <- syscall.SIGTTIN // applied only after it

	got := make(chan *status.Snapshot, 1)
	go func() { got <- r.Snapshot() }()
	select {
	case snap := <-got:
		if snap.Instances != 1 {
			t.Errorf("snapshot of a stuck loop shows %d instances, want the last one (1)", snap.Instances)
		}
	case <-time.After(10 * time.Second):
		close(block)
		t.Fatal("Snapshot hung on a stuck loop")
	}
	if !r.stuck.Load() {
		t.Error("an unanswered round trip did not mark the loop stuck")
	}
	go func() { got <- r.Snapshot() }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		close(block)
		t.Fatal("a second Snapshot hung on a stuck loop")
	}

	close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if r.stuck.Load() {
		t.Error("still marked stuck after an answered ping")
	}
	if snap := r.Snapshot(); snap.Instances != 2 {
		t.Errorf("after the loop recovered: %d instances, want 2", snap.Instances)
	}
}

// The control commands go through the loop and wait for its answer.
func TestControlCommandsThroughTheLoop(t *testing.T) {
	skipShort(t)
	sock, err := notify.Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	r := startSupervisorWith(t, 1, sock)
	waitSnapshot(t, r.Supervisor, "1 worker ready", func(s *status.Snapshot) bool { return s.ReadyWorkers() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := r.Scale(ctx, "sleep", 2, false); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, r.Supervisor, "2 workers ready", func(s *status.Snapshot) bool { return s.ReadyWorkers() == 2 })
	if err := r.Reload(ctx, nil); err != nil { // returns once the pass ended
		t.Fatal(err)
	}
	if snap := r.Snapshot(); snap.Reload.LastResult != "ok" || snap.Reload.Generation != 1 {
		t.Fatalf("after gm2-init reload: %+v", snap.Reload)
	}
	if err := r.Reload(ctx, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "no app named") {
		t.Errorf("reload of an unknown app: %v", err)
	}
	if _, _, err := r.Scale(ctx, "sleep", 0, false); err == nil {
		t.Error("scaled to 0")
	}
	// A datagram from the test itself, no worker: dropped, the loop goes on.
	c, err := net.Dial("unixgram", sock.Env())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("READY=1"))
	c.Close()
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
