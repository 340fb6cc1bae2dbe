package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/status"
)

// fakeSource stands in for the supervisor, which is not the unit under test.
type fakeSource struct {
	snap atomic.Pointer[status.Snapshot]
	mu   sync.Mutex
	ping func(ctx context.Context) error // nil: answer at once
}

func newFakeSource(snap *status.Snapshot) *fakeSource {
	f := &fakeSource{}
	f.snap.Store(snap)
	return f
}

func (f *fakeSource) Snapshot() *status.Snapshot { return f.snap.Load() }

func (f *fakeSource) Ping(ctx context.Context) error {
	f.mu.Lock()
	p := f.ping
	f.mu.Unlock()
	if p == nil {
		return nil
	}
	return p(ctx)
}

func (f *fakeSource) setPing(p func(ctx context.Context) error) {
	f.mu.Lock()
	f.ping = p
	f.mu.Unlock()
}

// testOptions keep production's structure with timeouts short enough for a
// test to observe them.
func testOptions() options {
	o := defaultOptions()
	o.readHeaderTimeout = 200 * time.Millisecond
	o.writeTimeout = 2 * time.Second
	o.pingTimeout = 100 * time.Millisecond
	return o
}

// syncBuffer collects log output written from the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer runs a Server on 127.0.0.1:0 and stops it at the end of the
// test, failing the test if Serve does not return nil after Shutdown.
func startServer(t *testing.T, src Source, opts options) (*Server, string, *syncBuffer) {
	t.Helper()
	return startServerWith(t, src, opts, Config{})
}

// startServerWith is startServer with a Config.
func startServerWith(t *testing.T, src Source, opts options, cfg Config) (*Server, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := listenWith("127.0.0.1:0", src, zerolog.New(logs), opts, cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return within 5s of Shutdown")
		}
	})
	return s, "http://" + s.Addr().String(), logs
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, url string) response { t.Helper(); return do(t, http.MethodGet, url) }

// healthySnapshot has two slots, both ready, one needed.
func healthySnapshot() *status.Snapshot {
	start := time.Now().Add(-90 * time.Second)
	return &status.Snapshot{
		Version:   "1.2.3",
		StartedAt: start,
		Instances: 2,
		MinReady:  1,
		Slots: []status.Slot{
			{Index: 0, State: status.Ready, Pid: 101, StartedAt: start, Workers: []status.Worker{{Pid: 101, State: status.Ready, Generation: 1, StartedAt: start, Status: "listening"}}},
			{Index: 1, State: status.Ready, Pid: 102, Restarts: 2, StartedAt: start.Add(30 * time.Second), LastExit: "exit status 1", LastStatus: "warming up",
				Workers: []status.Worker{{Pid: 102, State: status.Ready, Generation: 1, StartedAt: start.Add(30 * time.Second)}}},
		},
		Reload:   status.Reload{Generation: 1, LastResult: "ok"},
		Counters: status.Counters{Restarts: 2, Reloads: map[string]uint64{"ok": 1}, OrphansReaped: 7, WorkersStarted: 4, MemoryRestarts: 3},
	}
}

func TestLivez(t *testing.T) {
	errored := healthySnapshot()
	errored.Slots[1].State = status.Errored
	errored.Slots[1].Pid = 0
	errored.Slots[1].Workers = nil

	shutting := healthySnapshot()
	shutting.ShuttingDown = true
	noneReady := healthySnapshot()
	for i := range noneReady.Slots {
		noneReady.Slots[i].State = status.Starting
		noneReady.Slots[i].Workers[0].State = status.Starting
	}

	for _, tc := range []struct {
		name      string
		snap      *status.Snapshot
		ping      func(context.Context) error
		code      int
		firstLine string
	}{
		{name: "healthy", snap: healthySnapshot(), code: 200, firstLine: "ok"},
		// Liveness stays 200 through the drain, as kube-apiserver's does:
		// a restart then would cut the drain short.
		{name: "shutting down", snap: shutting, code: 200, firstLine: "ok"},
		// Not ready is not dead: restarting would not make workers ready.
		{name: "no worker ready", snap: noneReady, code: 200, firstLine: "ok"},
		{name: "errored slot", snap: errored, code: 503,
			firstLine: "[-]slots failed: slot(s) 1 errored (crash-looped past --max-restarts)"},
		{name: "ping error", snap: healthySnapshot(), ping: func(context.Context) error { return errors.New("loop\nstopped") },
			code: 503, firstLine: "[-]ping failed: supervisor loop: loop stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(tc.snap)
			src.setPing(tc.ping)
			_, base, _ := startServer(t, src, testOptions())
			for _, path := range []string{"/livez", "/healthz"} {
				r := get(t, base+path)
				if r.code != tc.code {
					t.Errorf("%s: code %d, want %d; body %q", path, r.code, tc.code, r.body)
				}
				if got := strings.SplitN(r.body, "\n", 2)[0]; got != tc.firstLine {
					t.Errorf("%s: first line %q, want %q", path, got, tc.firstLine)
				}
				if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("%s: Content-Type %q", path, ct)
				}
				if tc.code != 200 {
					probe := strings.TrimPrefix(path, "/")
					if !strings.HasSuffix(r.body, probe+" check failed\n") {
						t.Errorf("%s: body %q does not end with %q", path, r.body, probe+" check failed\n")
					}
				}
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	oneReady := healthySnapshot()
	oneReady.MinReady = 2
	oneReady.Slots[0].State = status.Backoff
	oneReady.Slots[0].Pid = 0
	oneReady.Slots[0].Workers = nil

	shutting := healthySnapshot()
	shutting.ShuttingDown = true

	// Mid-reload: slot 0's old worker drains while its replacement starts,
	// slot 1 is untouched; two ready workers still meet MinReady 2.
	reloading := healthySnapshot()
	reloading.MinReady = 2
	reloading.Reload.InProgress = true
	reloading.Slots[0].Workers = []status.Worker{
		{Pid: 101, State: status.Ready, Generation: 1},
		{Pid: 201, State: status.Starting, Generation: 2},
	}
	reloadingShort := healthySnapshot()
	reloadingShort.MinReady = 2
	reloadingShort.Reload.InProgress = true
	reloadingShort.Slots[0].Workers = []status.Worker{
		{Pid: 101, State: status.Draining, Generation: 1},
		{Pid: 201, State: status.Starting, Generation: 2},
	}

	zeroMin := healthySnapshot()
	zeroMin.MinReady = 0
	for i := range zeroMin.Slots {
		zeroMin.Slots[i].Workers[0].State = status.Starting
	}

	errored := healthySnapshot()
	errored.Slots[1].State = status.Errored
	errored.Slots[1].Workers = nil

	for _, tc := range []struct {
		name      string
		snap      *status.Snapshot
		code      int
		firstLine string
	}{
		{name: "ready", snap: healthySnapshot(), code: 200, firstLine: "ok"},
		{name: "below min-ready", snap: oneReady, code: 503, firstLine: "[-]workers failed: 1 worker(s) ready, 2 required"},
		{name: "shutting down", snap: shutting, code: 503, firstLine: "[-]shutdown failed: shutting down"},
		{name: "reload keeps min-ready", snap: reloading, code: 200, firstLine: "ok"},
		{name: "reload below min-ready", snap: reloadingShort, code: 503, firstLine: "[-]workers failed: 1 worker(s) ready, 2 required"},
		{name: "min-ready 0 still needs one", snap: zeroMin, code: 503, firstLine: "[-]workers failed: 0 worker(s) ready, 1 required"},
		// Readiness follows capacity: one errored slot with enough ready
		// workers left keeps serving (liveness reports the slot).
		{name: "errored slot but enough ready", snap: errored, code: 200, firstLine: "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base, _ := startServer(t, newFakeSource(tc.snap), testOptions())
			r := get(t, base+"/readyz")
			if r.code != tc.code {
				t.Errorf("code %d, want %d; body %q", r.code, tc.code, r.body)
			}
			if got := strings.SplitN(r.body, "\n", 2)[0]; got != tc.firstLine {
				t.Errorf("first line %q, want %q", got, tc.firstLine)
			}
		})
	}
}

func TestVerbose(t *testing.T) {
	snap := healthySnapshot()
	snap.ShuttingDown = true
	_, base, _ := startServer(t, newFakeSource(snap), testOptions())

	r := get(t, base+"/livez?verbose")
	want := "[+]ping ok\n[+]slots ok\nlivez check passed\n"
	if r.code != 200 || r.body != want {
		t.Errorf("livez?verbose: %d %q, want 200 %q", r.code, r.body, want)
	}
	r = get(t, base+"/readyz?verbose=1")
	want = "[-]shutdown failed: shutting down\n[+]workers ok\nreadyz check failed\n"
	if r.code != 503 || r.body != want {
		t.Errorf("readyz?verbose: %d %q, want 503 %q", r.code, r.body, want)
	}
	// Without verbose only the failed checks are listed, so the first line
	// is the reason.
	r = get(t, base+"/readyz")
	want = "[-]shutdown failed: shutting down\nreadyz check failed\n"
	if r.code != 503 || r.body != want {
		t.Errorf("readyz: %d %q, want 503 %q", r.code, r.body, want)
	}
}

func TestPingTimeoutFailsLivez(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	var calls atomic.Int32
	// A supervisor loop that never answers: Ping returns only when its
	// context ends, as the contract requires.
	src.setPing(func(ctx context.Context) error {
		calls.Add(1)
		<-ctx.Done()
		return ctx.Err()
	})
	opts := testOptions()
	_, base, logs := startServer(t, src, opts)
	start := time.Now()
	r := get(t, base+"/livez")
	elapsed := time.Since(start)
	want := "[-]ping failed: supervisor loop did not answer within 100ms\nlivez check failed\n"
	if r.code != 503 || r.body != want {
		t.Errorf("livez: %d %q, want 503 %q", r.code, r.body, want)
	}
	if elapsed < opts.pingTimeout || elapsed > opts.pingTimeout+2*time.Second {
		t.Errorf("livez answered after %v, want about %v", elapsed, opts.pingTimeout)
	}
	if calls.Load() != 1 {
		t.Errorf("Ping called %d times, want 1", calls.Load())
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "probe failing") {
		t.Errorf("failing liveness not logged as a warning: %s", logs.String())
	}
}

// TestPingCoalesced checks that a burst of /livez requests never has more
// than one round trip in flight through the supervisor's loop.
func TestPingCoalesced(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	var inFlight, maxInFlight, calls atomic.Int32
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	src.setPing(func(ctx context.Context) error {
		calls.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	opts := testOptions()
	opts.pingTimeout = 5 * time.Second // the test releases the ping itself
	_, base, _ := startServer(t, src, opts)

	const n = 10
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/livez", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no Ping within 5s")
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("livez answered %d, want 200", c)
		}
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Errorf("%d pings in flight at once, want 1", m)
	}
	t.Logf("%d requests, %d round trips", n, calls.Load())
}

func TestMethodsAndPaths(t *testing.T) {
	_, base, _ := startServer(t, newFakeSource(healthySnapshot()), testOptions())

	for _, path := range []string{"/livez", "/healthz", "/readyz", "/status", "/metrics"} {
		r := do(t, http.MethodHead, base+path)
		if r.code != 200 || r.body != "" {
			t.Errorf("HEAD %s: %d %q, want 200 and no body", path, r.code, r.body)
		}
		if r.header.Get("Content-Length") == "" || r.header.Get("Content-Length") == "0" {
			t.Errorf("HEAD %s: Content-Length %q, want the GET body's length", path, r.header.Get("Content-Length"))
		}
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
			r := do(t, m, base+path)
			if r.code != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", m, path, r.code)
			}
			if a := r.header.Get("Allow"); a != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q, want %q", m, path, a, "GET, HEAD")
			}
		}
	}
	if r := do(t, http.MethodHead, base+"/livez"); r.header.Get("Content-Length") != "2" {
		t.Errorf("HEAD /livez: Content-Length %q, want 2 (len \"ok\")", r.header.Get("Content-Length"))
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if r := do(t, m, base+"/nope"); r.code != 404 {
			t.Errorf("%s /nope: %d, want 404", m, r.code)
		}
	}
	if r := get(t, base+"/livez"); r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
	}
}

func TestStatusJSON(t *testing.T) {
	snap := healthySnapshot()
	snap.Reload.InProgress = true
	snap.Slots[1].Workers = append(snap.Slots[1].Workers, status.Worker{Pid: 202, State: status.Starting, Generation: 2})
	_, base, _ := startServer(t, newFakeSource(snap), testOptions())

	r := get(t, base+"/status")
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %q", r.code, r.header.Get("Content-Type"))
	}
	var v struct {
		Version       string   `json:"version"`
		UptimeSeconds *float64 `json:"uptime_seconds"`
		Instances     *int     `json:"instances"`
		MinReady      *int     `json:"min_ready"`
		ReadyWorkers  *int     `json:"ready_workers"`
		ShuttingDown  *bool    `json:"shutting_down"`
		Slots         []struct {
			Instance      *int     `json:"instance"`
			State         string   `json:"state"`
			Pid           *int     `json:"pid"`
			Restarts      *int     `json:"restarts"`
			UptimeSeconds *float64 `json:"uptime_seconds"`
			LastExit      *string  `json:"last_exit"`
			LastStatus    *string  `json:"last_status"`
			Workers       []struct {
				Pid           int      `json:"pid"`
				State         string   `json:"state"`
				Generation    uint64   `json:"generation"`
				UptimeSeconds *float64 `json:"uptime_seconds"`
				Status        *string  `json:"status"`
			} `json:"workers"`
		} `json:"slots"`
		Reload struct {
			Generation *uint64 `json:"generation"`
			InProgress *bool   `json:"in_progress"`
			LastResult string  `json:"last_result"`
		} `json:"reload"`
		Counters struct {
			Restarts *uint64           `json:"restarts_total"`
			Reloads  map[string]uint64 `json:"reloads_total"`
			Orphans  *uint64           `json:"orphans_reaped_total"`
			Started  *uint64           `json:"workers_started_total"`
			Memory   *uint64           `json:"memory_restarts_total"`
		} `json:"counters"`
		SlotsByState map[string]int `json:"slots_by_state"`
		Errored      []int          `json:"errored_slots"`
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	if v.Version != "1.2.3" || v.Instances == nil || *v.Instances != 2 || v.MinReady == nil || *v.MinReady != 1 ||
		v.ReadyWorkers == nil || *v.ReadyWorkers != 2 || v.ShuttingDown == nil || *v.ShuttingDown {
		t.Errorf("top level fields wrong: %s", r.body)
	}
	// Uptime is computed at request time: 90 s ago plus the test's own
	// duration, bounded generously.
	if v.UptimeSeconds == nil || *v.UptimeSeconds < 90 || *v.UptimeSeconds > 150 {
		t.Errorf("uptime_seconds %v, want about 90", v.UptimeSeconds)
	}
	if len(v.Slots) != 2 {
		t.Fatalf("%d slots, want 2: %s", len(v.Slots), r.body)
	}
	s1 := v.Slots[1]
	if s1.Instance == nil || *s1.Instance != 1 || s1.State != "ready" || s1.Pid == nil || *s1.Pid != 102 ||
		s1.Restarts == nil || *s1.Restarts != 2 || s1.LastExit == nil || *s1.LastExit != "exit status 1" ||
		s1.LastStatus == nil || *s1.LastStatus != "warming up" {
		t.Errorf("slot 1 wrong: %+v", s1)
	}
	if s1.UptimeSeconds == nil || *s1.UptimeSeconds < 60 || *s1.UptimeSeconds > 120 {
		t.Errorf("slot 1 uptime_seconds %v, want about 60", s1.UptimeSeconds)
	}
	if len(s1.Workers) != 2 || s1.Workers[1].Pid != 202 || s1.Workers[1].State != "starting" || s1.Workers[1].Generation != 2 ||
		s1.Workers[1].UptimeSeconds == nil || *s1.Workers[1].UptimeSeconds != 0 {
		t.Errorf("slot 1 workers wrong: %+v", s1.Workers)
	}
	if s0 := v.Slots[0]; len(s0.Workers) != 1 || s0.Workers[0].Status == nil || *s0.Workers[0].Status != "listening" {
		t.Errorf("slot 0 worker STATUS= text missing: %+v", s0.Workers)
	}
	if v.Reload.Generation == nil || *v.Reload.Generation != 1 || v.Reload.InProgress == nil || !*v.Reload.InProgress || v.Reload.LastResult != "ok" {
		t.Errorf("reload wrong: %+v", v.Reload)
	}
	if v.Counters.Restarts == nil || *v.Counters.Restarts != 2 || v.Counters.Orphans == nil || *v.Counters.Orphans != 7 ||
		v.Counters.Started == nil || *v.Counters.Started != 4 || v.Counters.Memory == nil || *v.Counters.Memory != 3 {
		t.Errorf("counters wrong: %+v", v.Counters)
	}
	if got, ok := v.Counters.Reloads["failed"]; !ok || got != 0 || v.Counters.Reloads["ok"] != 1 {
		t.Errorf("reloads_total %v, want ok:1 failed:0", v.Counters.Reloads)
	}
	if len(v.SlotsByState) != len(status.AllStates) || v.SlotsByState["ready"] != 2 || v.SlotsByState["errored"] != 0 {
		t.Errorf("slots_by_state %v", v.SlotsByState)
	}
	if v.Errored == nil || len(v.Errored) != 0 {
		t.Errorf("errored_slots %v, want []", v.Errored)
	}
}

func TestStatusEmptySnapshot(t *testing.T) {
	// A nil snapshot breaks the Source contract; the server must still
	// answer, as "alive, not ready".
	_, base, _ := startServer(t, newFakeSource(nil), testOptions())
	if r := get(t, base+"/status"); r.code != 200 || !strings.Contains(r.body, `"slots": []`) {
		t.Errorf("status: %d %s", r.code, r.body)
	}
	if r := get(t, base+"/livez"); r.code != 200 {
		t.Errorf("livez: %d %q", r.code, r.body)
	}
	if r := get(t, base+"/readyz"); r.code != 503 {
		t.Errorf("readyz: %d %q", r.code, r.body)
	}
}

// TestSlowHeaderClientCutOff sends a request header one byte every 10 ms and
// expects the server to close the connection after the read-header timeout,
// long before the header could be complete.
func TestSlowHeaderClientCutOff(t *testing.T) {
	opts := testOptions()
	_, base, _ := startServer(t, newFakeSource(healthySnapshot()), opts)

	start := time.Now()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// 1,000 bytes at one per 10 ms would take 10 s.
	header := "GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
	stop := make(chan struct{})
	writerDone := make(chan int, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := range len(header) {
			select {
			case <-stop:
				writerDone <- i
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{header[i]}); err != nil {
				writerDone <- i
				return
			}
		}
		writerDone <- len(header)
	}()
	defer func() {
		close(stop)
		select {
		case <-writerDone:
		case <-time.After(5 * time.Second):
			t.Error("slow writer did not stop")
		}
	}()

	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// The server either closes the connection silently or, when the
	// timeout strikes inside the header block, answers 400 and closes it;
	// both cut the client off. What must not happen is a connection that
	// stays open, or a real answer to an incomplete request.
	got, err := io.ReadAll(conn)
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s (read-header timeout %v)", opts.readHeaderTimeout)
	}
	if len(got) > 0 && !bytes.HasPrefix(got, []byte("HTTP/1.1 4")) {
		t.Fatalf("server answered an incomplete header: %q", got)
	}
	if elapsed < opts.readHeaderTimeout {
		t.Errorf("cut off after %v, before the read-header timeout %v", elapsed, opts.readHeaderTimeout)
	}
	if elapsed > 3*time.Second {
		t.Errorf("cut off after %v, want about %v", elapsed, opts.readHeaderTimeout)
	}
	t.Logf("cut off after %v: %q, %v", elapsed, got, err)
}

func TestProbeTransitionsLoggedOnce(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	_, base, logs := startServer(t, src, testOptions())

	get(t, base+"/readyz") // passing from the start: nothing to say
	down := healthySnapshot()
	down.ShuttingDown = true
	src.snap.Store(down)
	get(t, base+"/readyz")
	get(t, base+"/readyz")
	src.snap.Store(healthySnapshot())
	get(t, base+"/readyz")

	var failing, passing int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec["message"] {
		case "probe failing":
			failing++
			if rec["level"] != "info" || rec["probe"] != "readyz" {
				t.Errorf("readyz failing logged as %v", rec)
			}
		case "probe passing again":
			passing++
		}
	}
	if failing != 1 || passing != 1 {
		t.Errorf("%d failing and %d passing lines, want 1 and 1:\n%s", failing, passing, logs.String())
	}
}

func TestListenErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = Listen(addr, newFakeSource(healthySnapshot()), zerolog.Nop(), Config{})
	if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("bind health address %s: ", addr)) {
		t.Errorf("Listen on a taken port: %v, want a \"bind health address %s: …\" error", err, addr)
	}
	if _, err := Listen("127.0.0.1:0", nil, zerolog.Nop(), Config{}); err == nil {
		t.Error("Listen with a nil Source succeeded")
	}
}

func TestShutdownWithoutServeReleasesPort(t *testing.T) {
	s, err := listen("127.0.0.1:0", newFakeSource(healthySnapshot()), zerolog.Nop(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still taken after Shutdown: %v", err)
	}
	ln.Close()
	if err := s.Serve(); err != nil {
		t.Errorf("Serve after Shutdown: %v, want nil", err)
	}
}

// TestPingerJoinsInFlightCall checks the coalescing deterministically: while
// the first round trip is blocked, later callers must wait for it (bounded by
// their context and the ping timeout) instead of starting their own.
func TestPingerJoinsInFlightCall(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	var calls atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce() // never leave the leader blocked, even on t.Fatal
	errLoop := errors.New("loop answered late")
	src.setPing(func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			close(entered)
		}
		select {
		case <-release:
			return errLoop
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	// The leader's deadline is the ping timeout: long, so that only
	// release ends its round trip.
	p := &pinger{src: src, timeout: 5 * time.Second}

	leader := make(chan error, 1)
	go func() { leader <- p.ping(context.Background()) }()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("leader did not call Ping within 5s")
	}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.ping(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("joiner with a canceled context: %v, want context.Canceled", err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := p.ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("joiner with a 50ms context: %v, want context.DeadlineExceeded", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Ping called %d times while one call was in flight, want 1", n)
	}
	releaseOnce()
	select {
	case err := <-leader:
		if !errors.Is(err, errLoop) {
			t.Errorf("leader: %v, want %v", err, errLoop)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("leader did not return within 5s")
	}
}

// severalApps is a process file's three apps: api (2 slots, both ready,
// both required), crash (its one slot errored) and migrate (a one-shot
// task whose slot stopped by its restart policy).
func severalApps() *status.Snapshot {
	snap := healthySnapshot()
	snap.MinReady = 4
	snap.Instances = 4
	snap.Slots[0].App, snap.Slots[1].App = "api", "api"
	snap.Slots = append(snap.Slots,
		status.Slot{App: "crash", Index: 0, State: status.Errored, Restarts: 16, LastExit: "exit status 1"},
		status.Slot{App: "migrate", Index: 0, State: status.Stopped, LastExit: "exit status 0"})
	snap.Apps = []status.App{
		{Name: "api", Instances: 2, MinReady: 2, Ready: 2, Reload: status.Reload{Generation: 1, LastResult: "ok"}},
		{Name: "crash", Instances: 1, MinReady: 1},
		{Name: "migrate", Instances: 1, MinReady: 1, Paused: 1},
	}
	return snap
}

// With several apps each is held to its own min_ready, and the probes name
// the app: the totals (2 ready of 4 required) would hide which one is down.
func TestSeveralAppsProbes(t *testing.T) {
	healthy := severalApps()
	healthy.Slots[2] = status.Slot{App: "crash", Index: 0, State: status.Ready, Pid: 301, Workers: []status.Worker{{Pid: 301, State: status.Ready}}}
	healthy.Apps[1].Ready = 1
	apiShort := severalApps()
	apiShort.Slots[1].Workers[0].State = status.Starting
	apiShort.Apps[0].Ready = 1

	for _, tc := range []struct {
		name             string
		snap             *status.Snapshot
		readyz, livez    int
		readyLine, lLine string
	}{
		// The stopped one-shot task is not waited for.
		{"every app ready", healthy, 200, 200, "ok", "ok"},
		{"one app down", severalApps(), 503, 503,
			"[-]workers failed: app crash: 0 worker(s) ready, 1 required",
			"[-]slots failed: app crash slot(s) 0 errored (crash-looped past --max-restarts)"},
		{"two apps short", apiShort, 503, 503,
			"[-]workers failed: app api: 1 worker(s) ready, 2 required; app crash: 0 worker(s) ready, 1 required",
			"[-]slots failed: app crash slot(s) 0 errored (crash-looped past --max-restarts)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base, _ := startServer(t, newFakeSource(tc.snap), testOptions())
			for _, p := range []struct {
				path, line string
				code       int
			}{{"/readyz", tc.readyLine, tc.readyz}, {"/livez", tc.lLine, tc.livez}} {
				r := get(t, base+p.path)
				if got := strings.SplitN(r.body, "\n", 2)[0]; r.code != p.code || got != p.line {
					t.Errorf("%s: %d %q, want %d %q", p.path, r.code, got, p.code, p.line)
				}
			}
		})
	}
}

// A single app whose every slot stopped for good is not ready: no worker
// serves at all.
func TestReadyzNoWorkerLeft(t *testing.T) {
	snap := healthySnapshot()
	for i := range snap.Slots {
		snap.Slots[i].State, snap.Slots[i].Workers = status.Stopped, nil
	}
	snap.Apps = []status.App{{Name: "web", Instances: 2, MinReady: 1, Paused: 2}}
	_, base, _ := startServer(t, newFakeSource(snap), testOptions())
	if r := get(t, base+"/readyz"); r.code != 503 || !strings.HasPrefix(r.body, "[-]workers failed: 0 worker(s) ready, 1 required\n") {
		t.Errorf("readyz: %d %q", r.code, r.body)
	}
}

// /status and /metrics tell the apps apart: each slot names its app, and
// the apps have their own figures.
func TestSeveralAppsStatusAndMetrics(t *testing.T) {
	_, base, _ := startServer(t, newFakeSource(severalApps()), testOptions())
	var v struct {
		Slots []struct {
			App      string `json:"app"`
			Instance int    `json:"instance"`
		} `json:"slots"`
		Apps []struct {
			Name         string        `json:"name"`
			Instances    int           `json:"instances"`
			MinReady     int           `json:"min_ready"`
			ReadyWorkers int           `json:"ready_workers"`
			Paused       int           `json:"paused"`
			Errored      []int         `json:"errored_slots"`
			Reload       status.Reload `json:"reload"`
		} `json:"apps"`
	}
	r := get(t, base+"/status")
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	var slots []string
	for _, s := range v.Slots {
		slots = append(slots, fmt.Sprintf("%s/%d", s.App, s.Instance))
	}
	if got := strings.Join(slots, " "); got != "api/0 api/1 crash/0 migrate/0" {
		t.Errorf("slots %s, want api/0 api/1 crash/0 migrate/0", got)
	}
	if len(v.Apps) != 3 {
		t.Fatalf("apps %+v, want 3", v.Apps)
	}
	api, crash := v.Apps[0], v.Apps[1]
	if api.Name != "api" || api.Instances != 2 || api.MinReady != 2 || api.ReadyWorkers != 2 || len(api.Errored) != 0 || api.Errored == nil ||
		api.Reload.Generation != 1 || api.Reload.LastResult != "ok" {
		t.Errorf("api %+v", api)
	}
	if crash.Name != "crash" || crash.ReadyWorkers != 0 || len(crash.Errored) != 1 || crash.Errored[0] != 0 {
		t.Errorf("crash %+v", crash)
	}
	if migrate := v.Apps[2]; migrate.Name != "migrate" || migrate.Paused != 1 || api.Paused != 0 {
		t.Errorf("paused: migrate %+v, api %+v", migrate, api)
	}
	m := get(t, base+"/metrics").body
	for _, want := range []string{
		`gm2_app_ready_workers{app="api"} 2`, `gm2_app_ready_workers{app="crash"} 0`,
		`gm2_app_min_ready_workers{app="api"} 2`, `gm2_app_instances_wanted{app="migrate"} 1`,
		`gm2_app_reload_generation{app="api"} 1`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	runPromtool(t, m)
}

// readyShortfall holds each app to at least one ready worker whatever its
// MinReady says, and a single app's errored slots are named without the
// app, as /livez answered before process files (the README shows the app
// only "with several apps").
func TestReadyShortfallAndSlotsEdges(t *testing.T) {
	// api is ready; web asks for no ready worker and has none.
	zero := severalApps()
	zero.Slots = zero.Slots[:2]
	zero.Apps = []status.App{
		{Name: "api", Instances: 2, MinReady: 2, Ready: 2},
		{Name: "web", Instances: 1, MinReady: 0},
	}
	if err := readyShortfall(zero); err == nil || err.Error() != "app web: 0 worker(s) ready, 1 required" {
		t.Errorf("app with MinReady 0 and no ready worker: %v, want it short of 1", err)
	}

	one := healthySnapshot()
	one.Slots[1].State, one.Slots[1].Workers = status.Errored, nil
	one.Apps = []status.App{{Name: "web", Instances: 2, MinReady: 1, Ready: 1}}
	_, base, _ := startServer(t, newFakeSource(one), testOptions())
	r := get(t, base+"/livez")
	if got := strings.SplitN(r.body, "\n", 2)[0]; r.code != 503 || got != "[-]slots failed: slot(s) 1 errored (crash-looped past --max-restarts)" {
		t.Errorf("livez of one app with an errored slot: %d %q", r.code, got)
	}
}
