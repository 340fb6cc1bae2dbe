package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/health"
	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/procfs/procfstest"
	"github.com/gm2-init/gm2-init/internal/status"
)

// TestMain doubles as the real client in a subprocess: the tests run this
// binary as `gm2-init status|reload|scale` would run, as another uid too.
func TestMain(m *testing.M) {
	if os.Getenv("GM2_CONTROL_TEST_CLIENT") == "1" {
		dirs := strings.Split(os.Getenv("GM2_CONTROL_TEST_DIRS"), ":")
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, clientOptions{dirs: dirs}))
	}
	os.Exit(m.Run())
}

// t0 is the moment the fake's snapshot is taken: its uptimes (1m, 2h)
// hold for as long as a test can run.
var t0 = time.Now()

// fake is a Supervisor that records what it is asked.
type fake struct {
	mu      sync.Mutex
	snap    *status.Snapshot
	reloads [][]string
	scales  []string
	err     error
	block   chan struct{} // when set, Reload waits for it (or ctx)
	waiting chan struct{} // closed when a Reload starts waiting
	ctxErr  chan error    // the ctx error a blocked Reload saw
}

func newFake() *fake {
	return &fake{snap: &status.Snapshot{
		Version: "test", StartedAt: t0, Instances: 3,
		Apps: []status.App{{Name: "api", Instances: 2, Ready: 2}, {Name: "worker", Instances: 1, Ready: 1}},
		Slots: []status.Slot{
			{App: "api", Index: 0, State: status.Ready, Pid: 101, Restarts: 0, StartedAt: t0.Add(-90 * time.Second),
				Workers: []status.Worker{{Pid: 101, State: status.Ready, StartedAt: t0.Add(-90 * time.Second)}}},
			{App: "api", Index: 1, State: status.Ready, Pid: 102, Restarts: 3, StartedAt: t0.Add(-2 * time.Hour),
				Workers: []status.Worker{{Pid: 102, State: status.Ready}}},
			{App: "worker", Index: 0, State: status.Backoff, Restarts: 7},
		},
	}}
}

// Ping makes the fake a health.Source as well.
func (f *fake) Ping(context.Context) error { return nil }

func (f *fake) Snapshot() *status.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fake) Reload(ctx context.Context, apps []string) error {
	f.mu.Lock()
	f.reloads = append(f.reloads, apps)
	block, err := f.block, f.err
	f.mu.Unlock()
	if block != nil {
		close(f.waiting)
		select {
		case <-block:
		case <-ctx.Done():
			f.ctxErr <- ctx.Err()
			return ctx.Err()
		}
	}
	return err
}

// Scale records what the server asked; the count is computed against the
// snapshot's instances (the real supervisor does it in its loop).
func (f *fake) Scale(ctx context.Context, app string, n int, delta bool) (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	from := 0
	for _, a := range f.snap.Apps {
		if a.Name == app {
			from = a.Instances
		}
	}
	to := n
	if delta {
		to = from + n
	}
	f.scales = append(f.scales, fmt.Sprintf("%s=%d", app, to))
	if f.err != nil {
		return 0, 0, f.err
	}
	if to < 1 {
		return 0, 0, fmt.Errorf("%d instances is out of range (1 to 1024; it has %d)", to, from)
	}
	return from, to, nil
}

// base makes a short base directory (a unix socket path holds 107 bytes).
func base(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type served struct {
	*Server
	dirs []string
	log  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeProcRoot is a /proc with the trees of newFake's workers as the
// usage reader reads them: pid 101 uses 11,597 pages and 1,235 ticks of
// CPU; pid 102 is gone.
func fakeProcRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	procfstest.Write(t, root, procfstest.Proc{Pid: 101, Comm: "node", UTime: 1200, STime: 35, Threads: 7, RSSPages: fakeRSSPages})
	return root
}

const fakeRSSPages = 11597

// fakeUsage is what the table shows for pid 101 of fakeProcRoot.
func fakeUsage() (cpu, mem string) {
	return cpuTime(procfs.TicksToSeconds(1235)), bytesText(float64(fakeRSSPages * os.Getpagesize()))
}

func serve(t *testing.T, sup Supervisor, o Options) *served {
	t.Helper()
	if o.Dirs == nil {
		o.Dirs = []string{base(t)}
	}
	if o.Status == nil {
		o.Status = health.NewStatusDocument(sup.Snapshot, fakeProcRoot(t)).Body
	}
	log := &syncBuffer{}
	o.Supervisor, o.Log = sup, zerolog.New(log)
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return &served{Server: s, dirs: o.Dirs, log: log}
}

// client runs the client in-process.
func (s *served) client(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb, clientOptions{dirs: s.dirs})
	return code, out.String(), errb.String()
}

// table renders rows as tabwriter does for the status table.
func table(rows [][]string) string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	return b.String()
}

// `gm2-init status --json` is the document GET /status serves, byte for
// byte; `gm2-init status` (and ls, list) shows it as a table, CPU and
// memory from its usage figures.
func TestStatus(t *testing.T) {
	f := newFake()
	doc := health.NewStatusDocument(f.Snapshot, fakeProcRoot(t))
	s := serve(t, f, Options{Status: doc.Body})
	hs, err := health.Listen("127.0.0.1:0", f, zerolog.Nop(), health.Config{Status: doc})
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve()
	defer hs.Shutdown(context.Background())

	// The snapshot's times are those of newFake: the uptimes in the
	// document change between two requests. The same snapshot with no
	// start times has none to change.
	f.mu.Lock()
	still := *f.snap
	still.StartedAt = time.Time{}
	still.Slots = append([]status.Slot(nil), f.snap.Slots...)
	for i := range still.Slots {
		still.Slots[i].StartedAt = time.Time{}
		still.Slots[i].Workers = append([]status.Worker(nil), still.Slots[i].Workers...)
		for j := range still.Slots[i].Workers {
			still.Slots[i].Workers[j].StartedAt = time.Time{}
		}
	}
	moving := f.snap
	f.snap = &still
	f.mu.Unlock()
	code, out, errs := s.client("status", "--json")
	resp, err := http.Get("http://" + hs.Addr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if code != 0 || errs != "" || out != string(body) || !strings.Contains(out, `"rss_bytes": `) {
		t.Errorf("status --json: %d %q\n%s\nGET /status:\n%s", code, errs, out, body)
	}
	f.mu.Lock()
	f.snap = moving
	f.mu.Unlock()

	cpu, mem := fakeUsage()
	want := table([][]string{
		{"APP", "INSTANCE", "PID", "STATE", "UPTIME", "RESTARTS", "CPU", "MEMORY"},
		{"api", "0", "101", "ready", "1m", "0", cpu, mem},
		{"api", "1", "102", "ready", "2h", "3", "-", "-"}, // gone: no usage
		{"worker", "0", "-", "backoff", "-", "7", "-", "-"},
	})
	for _, cmd := range []string{"status", "ls", "list"} {
		code, out, errs := s.client(cmd)
		if code != 0 || out != want || errs != "" {
			t.Errorf("%s: %d\n%s\nwant\n%s\nstderr %q", cmd, code, out, want, errs)
		}
	}
	if code, _, errs := s.client("ls", "-l"); code != 2 || errs != "gm2-init ls: unexpected argument \"-l\"; usage: gm2-init ls [--json]\n" {
		t.Errorf("ls -l: %d %q", code, errs)
	}
}

// The table reads the document the real builder makes: CPU and memory of
// each slot's current worker, "-" where the document has no figures, and
// the reloads in progress or failed.
func TestRenderTableFromTheDocument(t *testing.T) {
	snap := &status.Snapshot{
		ShuttingDown: true,
		Apps: []status.App{{Name: "api", Reload: status.Reload{InProgress: true}},
			{Name: "w", Reload: status.Reload{LastResult: "failed: new worker exited"}}},
		Reload: status.Reload{InProgress: true},
		Slots: []status.Slot{
			// During a reload: the old worker (100) and its replacement
			// (101), the slot's current one.
			{App: "api", Index: 0, State: status.Starting, Pid: 101, Restarts: 1, StartedAt: t0.Add(-3 * time.Hour),
				Workers: []status.Worker{{Pid: 100, State: status.Draining}, {Pid: 101, State: status.Starting}}},
			{App: "w", Index: 0, State: status.Errored, Restarts: 16},
		},
	}
	body, err := health.NewStatusDocument(func() *status.Snapshot { return snap }, fakeProcRoot(t)).Body(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := renderTable(&out, body); err != nil {
		t.Fatal(err)
	}
	cpu, mem := fakeUsage()
	want := table([][]string{
		{"APP", "INSTANCE", "PID", "STATE", "UPTIME", "RESTARTS", "CPU", "MEMORY"},
		{"api", "0", "101", "starting", "3h", "1", cpu, mem},
		{"w", "0", "-", "errored", "-", "16", "-", "-"},
	})
	want += "api: reload in progress\nw: last reload failed: new worker exited\n"
	want += "gm2-init is shutting down\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant\n%s\nfrom %s", out.String(), want, body)
	}
	if cpu != "12.35s" && procfs.ClockTicks() == 100 || mem != "45.3 MiB" && os.Getpagesize() == 4096 {
		t.Errorf("figures shown as %s and %s", cpu, mem)
	}

	// With no usage figures (a document without a read: no workers
	// running), "-" and no error.
	out.Reset()
	if err := renderTable(&out, []byte(`{"slots":[{"app":"api","instance":0,"state":"ready","pid":7,"uptime_seconds":59.9,"workers":[{"pid":7,"usage_error":"process gone"}]}]}`)); err != nil {
		t.Fatal(err)
	}
	if want := table([][]string{{"APP", "INSTANCE", "PID", "STATE", "UPTIME", "RESTARTS", "CPU", "MEMORY"}, {"api", "0", "7", "ready", "59s", "0", "-", "-"}}); out.String() != want {
		t.Errorf("without usage:\n%s\nwant\n%s", out.String(), want)
	}
}

func TestReloadAndScale(t *testing.T) {
	f := newFake()
	s := serve(t, f, Options{})
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"reload"}, 0, "reloaded api, worker\n", ""},
		{[]string{"reload", "api"}, 0, "reloaded api\n", ""},
		// PM2's pm2 reload all.
		{[]string{"reload", "all"}, 0, "reloaded api, worker\n", ""},
		// A comma list as --only takes it, with or without blanks.
		{[]string{"reload", "api,worker"}, 0, "reloaded api, worker\n", ""},
		{[]string{"reload", "api,", "worker"}, 0, "reloaded api, worker\n", ""},
		// Each app once.
		{[]string{"reload", "api", "api"}, 0, "reloaded api\n", ""},
		{[]string{"reload", "worker,api,worker"}, 0, "reloaded worker, api\n", ""},
		{[]string{"reload", ","}, 2, "", "gm2-init reload: no app name in \",\"; usage: gm2-init reload [APP...|all] (apps separated by spaces or commas)\n"},
		{[]string{"reload", "api", "web"}, 1, "", "gm2-init reload: unknown app \"web\" (apps: api, worker)\n"},
		{[]string{"reload", "api,web"}, 1, "", "gm2-init reload: unknown app \"web\" (apps: api, worker)\n"},
		{[]string{"scale", "api", "3"}, 0, "api: 3 instances (was 2)\n", ""},
		{[]string{"scale", "api", "+2"}, 0, "api: 4 instances (was 2)\n", ""},
		{[]string{"scale", "api", "-1"}, 0, "api: 1 instances (was 2)\n", ""},
		{[]string{"scale", "api", "-2"}, 1, "", "gm2-init scale: api: 0 instances is out of range (1 to 1024; it has 2)\n"},
		{[]string{"scale", "web", "2"}, 1, "", "gm2-init scale: unknown app \"web\" (apps: api, worker)\n"},
		{[]string{"scale", "all", "3"}, 1, "", "gm2-init scale: scale all: scale sets the workers of one app (PM2 has no scale all either): name it: gm2-init scale APP 3 (apps: api, worker)\n"},
		{[]string{"scale", "all", "+1"}, 1, "", "gm2-init scale: scale all: scale sets the workers of one app (PM2 has no scale all either): name it: gm2-init scale APP +1 (apps: api, worker)\n"},
		{[]string{"scale", "api", "abc"}, 2, "", "gm2-init scale: invalid count \"abc\": accepted: a count from 1 to 1024, or +N / -N to add or remove workers\n"},
		{[]string{"scale", "api", "0"}, 2, "", "gm2-init scale: invalid count \"0\": accepted: a count from 1 to 1024, or +N / -N to add or remove workers\n"},
		{[]string{"scale", "api", "+0"}, 2, "", "gm2-init scale: invalid count \"+0\": accepted: a count from 1 to 1024, or +N / -N to add or remove workers\n"},
		{[]string{"scale", "api", "-0"}, 2, "", "gm2-init scale: invalid count \"-0\": accepted: a count from 1 to 1024, or +N / -N to add or remove workers\n"},
		{[]string{"scale", "api"}, 2, "", "gm2-init scale: usage: gm2-init scale APP N (N: a count from 1 to 1024, or +N / -N to add or remove workers)\n"},
		{[]string{"status", "api"}, 2, "", "gm2-init status: unexpected argument \"api\"; usage: gm2-init status [--json]\n"},
		{[]string{"reload", "--all"}, 2, "", "gm2-init reload: unknown flag \"--all\"; usage: gm2-init reload [APP...|all]\n"},
		// Help in any spelling, anywhere, before any check or command.
		{[]string{"reload", "api", "-h"}, 0, Usage + "\n", ""},
		{[]string{"scale", "--help"}, 0, Usage + "\n", ""},
		{[]string{"status", "-help"}, 0, Usage + "\n", ""},
	} {
		code, out, errs := s.client(tc.args...)
		if code != tc.code || out != tc.out || errs != tc.err {
			t.Errorf("%q: %d %q %q\nwant %d %q %q", tc.args, code, out, errs, tc.code, tc.out, tc.err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := fmt.Sprint(f.reloads); got != "[[] [api] [] [api worker] [api worker] [api] [worker api]]" || fmt.Sprint(f.scales) != "[api=3 api=4 api=1 api=0]" {
		t.Errorf("supervisor saw reloads %q, scales %q", f.reloads, f.scales)
	}
	if !strings.Contains(s.log.String(), `"message":"control: reload"`) {
		t.Errorf("commands are not logged: %s", s.log)
	}
}

// With one app, scale all is that app (gm2-init -- node app.js: pm2 scale
// all 3 means it); an app named all is that one.
func TestScaleAllOneApp(t *testing.T) {
	for _, name := range []string{"app", "all"} {
		f := newFake()
		f.snap.Apps = f.snap.Apps[:1]
		f.snap.Apps[0].Name = name
		s := serve(t, f, Options{})
		if code, out, errs := s.client("scale", "all", "3"); code != 0 || out != name+": 3 instances (was 2)\n" {
			t.Errorf("%s: scale all 3: %d %q %q", name, code, out, errs)
		}
		if code, out, errs := s.client("reload", "all"); code != 0 || out != "reloaded "+name+"\n" {
			t.Errorf("%s: reload all: %d %q %q", name, code, out, errs)
		}
		f.mu.Lock()
		if fmt.Sprint(f.scales) != "["+name+"=3]" || fmt.Sprint(f.reloads) != "[[]]" {
			t.Errorf("%s: supervisor saw scales %q, reloads %q", name, f.scales, f.reloads)
		}
		f.mu.Unlock()
	}
}

// The supervisor's error names the app that failed; the message says
// "reload" and the app once each.
func TestSupervisorErrors(t *testing.T) {
	f := newFake()
	f.err = errors.New("api: failed: 1 slot(s) not replaced")
	s := serve(t, f, Options{})
	code, _, errs := s.client("reload", "api")
	if code != 1 || errs != "gm2-init reload: api: failed: 1 slot(s) not replaced\n" {
		t.Errorf("%d %q", code, errs)
	}
	f.mu.Lock()
	f.snap = &status.Snapshot{ShuttingDown: true, Apps: f.snap.Apps}
	f.mu.Unlock()
	code, _, errs = s.client("scale", "api", "2")
	if code != 1 || errs != "gm2-init scale: gm2-init is shutting down\n" {
		t.Errorf("%d %q", code, errs)
	}
}

// dialRaw connects without the client's checks, to misbehave.
func dialRaw(t *testing.T, s *served) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

func readResponse(t *testing.T, c net.Conn) response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRequestBounds(t *testing.T) {
	s := serve(t, newFake(), Options{ReadTimeout: 200 * time.Millisecond})
	c := dialRaw(t, s)
	c.Write(bytes.Repeat([]byte("x"), maxRequest+10))
	if r := readResponse(t, c); r.Error != "request longer than 4096 bytes" {
		t.Errorf("long request: %+v", r)
	}
	// The bound is on the line without its '\n': a valid request of
	// maxRequest bytes is served, one byte more is not.
	line := func(n int) []byte {
		b := []byte(`{"cmd":"status"`)
		b = append(b, bytes.Repeat([]byte(" "), n-len(b)-1)...)
		return append(b, '}', '\n')
	}
	c = dialRaw(t, s)
	c.Write(line(maxRequest))
	if r := readResponse(t, c); !r.OK {
		t.Errorf("request of %d bytes: %+v", maxRequest, r.Error)
	}
	c = dialRaw(t, s)
	c.Write(line(maxRequest + 1))
	if r := readResponse(t, c); r.Error != "request longer than 4096 bytes" {
		t.Errorf("request of %d bytes: ok %v, error %q", maxRequest+1, r.OK, r.Error)
	}
	c = dialRaw(t, s)
	c.Write([]byte(`{"cmd":`)) // and nothing more: the read deadline ends it
	if r := readResponse(t, c); r.Error != "no complete request (one JSON line)" {
		t.Errorf("slow request: %+v", r)
	}
	c = dialRaw(t, s)
	c.Write([]byte("{\"cmd\": 1}\n"))
	if r := readResponse(t, c); !strings.HasPrefix(r.Error, "malformed request: ") {
		t.Errorf("malformed: %+v", r)
	}
	// A raw client may name the empty app: no app is named so (it did
	// not mean every app).
	c = dialRaw(t, s)
	c.Write([]byte(`{"cmd":"reload","apps":[""]}` + "\n"))
	if r := readResponse(t, c); r.OK || !strings.HasPrefix(r.Error, `unknown app ""`) {
		t.Errorf("reload of the empty name: %+v", r)
	}
	c = dialRaw(t, s)
	c.Write([]byte("{\"cmd\": \"stop\"}\n"))
	if r := readResponse(t, c); r.Error != `unknown command "stop" (accepted: status, reload, scale)` {
		t.Errorf("unknown: %+v", r)
	}
}

// A client that hangs up ends the server's wait (the supervisor sees its
// ctx end); a full server says busy; Close ends the waits that remain.
func TestWaitsAndLimits(t *testing.T) {
	f := newFake()
	f.block, f.waiting, f.ctxErr = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	s := serve(t, f, Options{MaxConns: 1})
	c := dialRaw(t, s)
	c.Write([]byte("{\"cmd\":\"reload\",\"apps\":[\"api\"]}\n"))
	<-f.waiting
	code, _, errs := s.client("status")
	if code != 1 || errs != "gm2-init status: busy: 1 control commands are running; try again\n" {
		t.Errorf("second command while one runs: %d %q", code, errs)
	}
	c.Close()
	select {
	case err := <-f.ctxErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ctx ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor's wait did not end when the client hung up")
	}

	// A client that shuts down only its write side after the request
	// (socat, nc -N) is not gone: it gets the answer when the reload ends.
	fh := newFake()
	fh.block, fh.waiting, fh.ctxErr = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	sh := serve(t, fh, Options{})
	ch := dialRaw(t, sh)
	ch.Write([]byte("{\"cmd\":\"reload\",\"apps\":[\"api\"]}\n"))
	if err := ch.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	<-fh.waiting
	// The server has read the request and sees end of file; the reload
	// must still be waiting when it is let go.
	probe, _, probeErr := sh.client("status")
	if probe != 0 {
		t.Fatalf("status during the half-closed client's reload: %d %q", probe, probeErr)
	}
	close(fh.block)
	if r := readResponse(t, ch); !r.OK || r.Message != "reloaded api" {
		t.Errorf("half-closed client: %+v", r)
	}
	select {
	case err := <-fh.ctxErr:
		t.Errorf("the half-closed client's wait was cancelled: %v", err)
	default:
	}

	// Close while a reload waits.
	f2 := newFake()
	f2.block, f2.waiting, f2.ctxErr = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	s2 := serve(t, f2, Options{})
	res := make(chan string, 1)
	go func() { _, _, e := s2.client("reload"); res <- e }()
	<-f2.waiting
	s2.Close()
	select {
	case e := <-res:
		if e != "gm2-init reload: gm2-init is stopping\n" {
			t.Errorf("client during Close: %q", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the wait")
	}
	if _, err := os.Stat(filepath.Dir(s2.Path())); !os.IsNotExist(err) {
		t.Errorf("Close left the directory: %v", err)
	}

	// A wait that exceeds WaitTimeout is reported as still going on.
	f3 := newFake()
	f3.block, f3.waiting, f3.ctxErr = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	s3 := serve(t, f3, Options{WaitTimeout: 50 * time.Millisecond})
	code, _, errs = s3.client("reload", "api")
	if code != 1 || errs != "gm2-init reload: api: still in progress after 50ms; it goes on (gm2-init status shows it)\n" {
		t.Errorf("%d %q", code, errs)
	}
}

func TestNoServer(t *testing.T) {
	b := base(t)
	key, err := namespaceKey()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"status"}, &out, &errb, clientOptions{dirs: []string{b}})
	want := fmt.Sprintf("gm2-init status: no gm2-init control socket for this PID namespace (looked for gm2-init-ctl.%s in %s): run the command inside the container of a gm2-init (docker exec, kubectl exec); a gm2-init that found none of these directories writable has none (its log says so: use kill -HUP 1 to reload, /status on its health port)\n", key, b)
	if code != 1 || errb.String() != want {
		t.Errorf("%d %q\nwant %q", code, errb.String(), want)
	}
	// A socket left by a killed gm2-init: the client says so, a new server
	// replaces it.
	dir := dirName(b, key)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, socketName), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	errb.Reset()
	code = run([]string{"status"}, &out, &errb, clientOptions{dirs: []string{b}})
	if want := fmt.Sprintf("gm2-init status: no gm2-init answers at %s (left by a gm2-init that was killed?)\n", filepath.Join(dir, socketName)); code != 1 || errb.String() != want {
		t.Errorf("stale: %d %q\nwant %q", code, errb.String(), want)
	}
	s := serve(t, newFake(), Options{Dirs: []string{b}})
	if code, _, errs := s.client("status"); code != 0 {
		t.Errorf("after replacing a stale socket: %d %s", code, errs)
	}
	// A second gm2-init of the same namespace does not steal it.
	second := newFake()
	_, err = Listen(Options{Supervisor: second, Status: health.NewStatusDocument(second.Snapshot, t.TempDir()).Body, Dirs: []string{b}, Log: zerolog.Nop()})
	if want := fmt.Sprintf("control socket: %s is served by another gm2-init of this PID namespace (pid %d); commands reach that one", s.Path(), os.Getpid()); err == nil || err.Error() != want {
		t.Errorf("second Listen: %v\nwant %s", err, want)
	}
}

// A directory someone else could have made (open to others) is not used
// by the server, nor trusted by the client.
func TestUntrustedDirectory(t *testing.T) {
	b1, b2 := base(t), base(t)
	key, _ := namespaceKey()
	open := dirName(b1, key)
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	s := serve(t, newFake(), Options{Dirs: []string{b1, b2}})
	if filepath.Dir(s.Path()) != dirName(b2, key) {
		t.Errorf("server took %s", s.Path())
	}
	// Make the server's own directory writable by others: the client
	// refuses to trust it.
	os.Chmod(filepath.Dir(s.Path()), 0o777)
	code, _, errs := s.client("status")
	if code != 1 || !strings.Contains(errs, "is not private to the server's user (uid ") {
		t.Errorf("%d %q", code, errs)
	}
	os.Chmod(filepath.Dir(s.Path()), 0o700)
	if os.Geteuid() != 0 {
		return // only root can give the directory away
	}
	// A private directory of another user than the server's is not
	// trusted either.
	if err := os.Chown(filepath.Dir(s.Path()), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	code, _, errs = s.client("status")
	if code != 1 || !strings.Contains(errs, "is not private to the server's user (uid ") {
		t.Errorf("directory of uid 65534, server of uid %d: %d %q", os.Geteuid(), code, errs)
	}
	os.Chown(filepath.Dir(s.Path()), 0, 0)
}

// clientBinary copies this test binary where another uid can run it.
func clientBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := base(t)
	os.Chmod(dir, 0o755)
	dst := filepath.Join(dir, "gm2-init-client")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func subprocess(t *testing.T, prefix []string, bin string, dirs []string, args ...string) (int, string, string) {
	t.Helper()
	argv := append(append(prefix, bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "GM2_CONTROL_TEST_CLIENT=1", "GM2_CONTROL_TEST_DIRS="+strings.Join(dirs, ":"))
	if prefix != nil && os.Getenv("GOCOVERDIR") != "" {
		// Under go test -cover the client writes its coverage when it
		// exits, and another uid cannot write into root's GOCOVERDIR: its
		// complaint would land in the stderr this test compares.
		d := base(t)
		os.Chmod(d, 0o777)
		cmd.Env = append(cmd.Env, "GOCOVERDIR="+d)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// The real client in its own process finds the server and prints the table.
func TestClientSubprocess(t *testing.T) {
	s := serve(t, newFake(), Options{})
	code, out, errs := subprocess(t, nil, clientBinary(t), s.dirs, "scale", "api", "+1")
	if code != 0 || out != "api: 3 instances (was 2)\n" || errs != "" {
		t.Errorf("%d %q %q", code, out, errs)
	}
	code, out, _ = subprocess(t, nil, clientBinary(t), s.dirs, "ls")
	cpu, mem := fakeUsage()
	if lines := strings.Split(out, "\n"); code != 0 || len(lines) != 5 || !slices.Equal(strings.Fields(lines[0]), []string{"APP", "INSTANCE", "PID", "STATE", "UPTIME", "RESTARTS", "CPU", "MEMORY"}) ||
		!strings.HasSuffix(lines[1], "  "+cpu+"  "+mem) {
		t.Errorf("%d %q", code, out)
	}
}

// Another uid is refused: by the kernel at the 0700 directory, and by the
// server's SO_PEERCRED check where the directory lets it through.
func TestOtherUIDRefused(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	switch {
	case os.Geteuid() != 0 && os.Getenv("CI") == "true":
		t.Fatal("CI runs as root: this test must run there")
	case os.Geteuid() != 0:
		t.Skip("needs root to run the client as another uid")
	case err != nil && os.Getenv("CI") == "true":
		t.Fatal("setpriv (util-linux) is not installed")
	case err != nil:
		t.Skip("setpriv (util-linux) is not installed")
	}
	b := base(t)
	os.Chmod(b, 0o755)
	s := serve(t, newFake(), Options{Dirs: []string{b}})
	bin := clientBinary(t)
	nobody := []string{setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"}

	code, out, errs := subprocess(t, nobody, bin, s.dirs, "reload", "api")
	want := "gm2-init reload: permission denied: only root and uid 0, the user gm2-init runs as, may control gm2-init (you are uid 65534)\n"
	if code != 1 || out != "" || errs != want {
		t.Errorf("through the 0700 directory: %d %q %q\nwant %q", code, out, errs, want)
	}

	// Open the directory and the socket: now the server itself refuses.
	os.Chmod(filepath.Dir(s.Path()), 0o711)
	os.Chmod(s.Path(), 0o666)
	code, out, errs = subprocess(t, nobody, bin, s.dirs, "reload", "api")
	want = "gm2-init reload: refused: uid 65534 may not control gm2-init (only root and uid 0, the user gm2-init runs as)\n"
	if code != 1 || out != "" || errs != want {
		t.Errorf("through SO_PEERCRED: %d %q %q\nwant %q", code, out, errs, want)
	}
	if !strings.Contains(s.log.String(), `"uid":65534,"message":"control socket: command refused: only root and gm2-init's own user may control it"`) {
		t.Errorf("refusal not logged: %s", s.log)
	}
	f := s.opts.Supervisor.(*fake)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reloads) != 0 {
		t.Errorf("a refused client reloaded: %v", f.reloads)
	}
}

// TestAllowed: root and gm2-init's own user may control it, whoever
// gm2-init runs as; nobody else may. (The tests run as root, where the
// two rules are one: this is where a gm2-init run as another user is.)
func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		peer uint32
		self int
		want bool
	}{
		{0, 0, true},
		{1000, 0, false},
		{0, 1000, true},
		{1000, 1000, true},
		{65534, 1000, false},
		{1001, 1000, false},
	} {
		if got := allowed(tc.peer, tc.self); got != tc.want {
			t.Errorf("allowed(peer %d, gm2-init as %d) = %v, want %v", tc.peer, tc.self, got, tc.want)
		}
	}
}
