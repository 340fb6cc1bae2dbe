// Command controlinit stands in for gm2-init's supervisor behind the real
// control socket: the e2e tests run it as PID 1 of new PID namespaces, side
// by side, and check that `gm2-init status|reload|scale` run inside each
// namespace (nsenter, as docker exec does) reach that namespace's server
// and no other. It serves the apps named on its command line and prints
// every command it receives as a JSON line on stdout.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/control"
	"github.com/gm2-init/gm2-init/internal/health"
	"github.com/gm2-init/gm2-init/internal/status"
)

type recorder struct {
	mu   sync.Mutex
	snap *status.Snapshot
	out  *json.Encoder
}

func (r *recorder) Snapshot() *status.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap
}

func (r *recorder) Reload(ctx context.Context, apps []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Encode(map[string]any{"reload": apps})
}

func (r *recorder) Scale(ctx context.Context, app string, n int, delta bool) (int, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	to := n
	if delta {
		to = 1 + n // every app has one instance
	}
	return 1, to, r.out.Encode(map[string]any{"scale": app, "n": to})
}

func main() {
	now := time.Now()
	snap := &status.Snapshot{Version: "controlinit", StartedAt: now}
	for i, name := range os.Args[1:] {
		snap.Apps = append(snap.Apps, status.App{Name: name, Instances: 1, Ready: 1})
		snap.Slots = append(snap.Slots, status.Slot{App: name, State: status.Ready, Pid: 100 + i, StartedAt: now})
	}
	rec := &recorder{snap: snap, out: json.NewEncoder(os.Stdout)}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	doc := health.NewStatusDocument(rec.Snapshot, "/proc")
	s, err := control.Listen(control.Options{Supervisor: rec, Status: doc.Body, Log: zerolog.New(os.Stderr)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	rec.mu.Lock()
	rec.out.Encode(map[string]any{"ready": s.Path()})
	rec.mu.Unlock()
	select {
	case <-sigs:
		s.Close()
		<-done
	case err := <-done:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
