package health

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// bindListener binds a listening TCP socket on 127.0.0.1 as gm2-init does
// for --listen, and returns it as the health server watches it.
func bindListener(t *testing.T, name string) WatchedListener {
	t.Helper()
	spec, err := sockets.ParseSpec("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := sockets.Bind([]sockets.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sockets.CloseAll(ls) })
	return WatchedListener{Name: name, Address: ls[0].Bound, File: ls[0].File}
}

// worker takes connections from l as a worker would, on a dup of its
// descriptor.
func worker(t *testing.T, l WatchedListener) net.Listener {
	t.Helper()
	nl, err := net.FileListener(l.File)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	return nl
}

func queueLen(t *testing.T, l WatchedListener) int {
	t.Helper()
	q, err := sockets.ReadAcceptQueue(l.File)
	if err != nil {
		t.Fatal(err)
	}
	return q.Len
}

// waitReadyz probes /readyz until it answers code, and returns the answer.
func waitReadyz(t *testing.T, base string, code int) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := get(t, base+"/readyz")
		if r.code == code {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after 10s, want %d", r.code, r.body, code)
		}
		time.Sleep(10 * time.Millisecond) // the kubelet's probe period, shortened
	}
}

// TestReadyzFailsWhenNoOneAccepts: connections wait in a listener's queue
// and nothing takes them. /readyz fails once the queue timeout has passed,
// not before, naming the listener and the count; the log says it once; and
// it passes again when a worker takes them.
func TestReadyzFailsWhenNoOneAccepts(t *testing.T) {
	const timeout = 300 * time.Millisecond
	web := bindListener(t, "web")
	_, base, logs := startServerWith(t, newFakeSource(healthySnapshot()), testOptions(),
		Config{Listeners: StaticListeners{web}, QueueTimeout: timeout})

	if r := get(t, base+"/readyz?verbose"); r.code != 200 || !strings.Contains(r.body, "[+]listener-queue ok") {
		t.Fatalf("empty queue: %d %q", r.code, r.body)
	}
	dialed := time.Now()
	for range 3 {
		c, err := net.DialTimeout("tcp", web.Address, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	r := waitReadyz(t, base, 503)
	if d := time.Since(dialed); d < timeout {
		t.Errorf("unready %v after the connections arrived, before the %v timeout", d, timeout)
	}
	first := strings.SplitN(r.body, "\n", 2)[0]
	want := fmt.Sprintf(`[-]listener-queue failed: 3 connection(s) wait in the accept queue of listener "web" (%s) and none was taken for `, web.Address)
	if !strings.HasPrefix(first, want) {
		t.Errorf("first line %q, want it to start with %q", first, want)
	}
	get(t, base+"/readyz") // still failing: logged once
	if n := strings.Count(logs.String(), "no worker takes them"); n != 1 {
		t.Errorf("%d warnings about the queue, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"listener":"web"`) || !strings.Contains(logs.String(), `"queued":3`) {
		t.Errorf("warning does not name the listener and the count:\n%s", logs.String())
	}

	// A worker takes them: ready again, and said once.
	nl := worker(t, web)
	for range 3 {
		c, err := nl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitReadyz(t, base, 200)
	if n := strings.Count(logs.String(), "takes connections from the listener's accept queue again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs.String())
	}
}

// TestReadyzStaysReadyWhileQueueDrains: a worker that takes one connection
// every 10 ms while 20 clients reconnect as soon as theirs is closed. The
// queue is never empty and keeps about the same length, since every accept
// is refilled at once: the case that queue lengths alone cannot tell from a
// stuck queue. Across many probes over many queue timeouts, /readyz never
// fails.
func TestReadyzStaysReadyWhileQueueDrains(t *testing.T) {
	const timeout = 300 * time.Millisecond
	web := bindListener(t, "web")
	_, base, logs := startServerWith(t, newFakeSource(healthySnapshot()), testOptions(),
		Config{Listeners: StaticListeners{web}, QueueTimeout: timeout})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var accepted atomic.Int64
	nl := worker(t, web)
	wg.Add(1)
	go func() { // the slow worker
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = nl.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second))
			c, err := nl.Accept()
			if err != nil {
				continue
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	for range 20 { // the clients
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", web.Address, 5*time.Second)
				if err != nil {
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(io.Discard, c) // until the worker closes it
				c.Close()
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	probes, busy := 0, 0
	for start := time.Now(); probes < 50 || time.Since(start) < 10*timeout; probes++ {
		if queueLen(t, web) > 0 {
			busy++
		}
		if r := get(t, base+"/readyz"); r.code != 200 {
			t.Fatalf("probe %d: %d %q while the worker drains the queue (%d accepted)", probes, r.code, r.body, accepted.Load())
		}
	}
	// The test means something only if the queue was busy.
	if busy < probes/2 {
		t.Errorf("queue non-empty at only %d of %d probes: the load did not keep it busy", busy, probes)
	}
	if strings.Contains(logs.String(), "no worker takes them") {
		t.Errorf("a draining queue was reported stuck:\n%s", logs.String())
	}
	t.Logf("%d probes, queue busy at %d, %d connections accepted", probes, busy, accepted.Load())
}

// changingListeners is a set of listeners that grows at runtime, as the
// supervisor's does when a worker asks for a socket on its first request.
type changingListeners struct {
	mu sync.Mutex
	ls []WatchedListener
}

func (c *changingListeners) TCPListeners() []WatchedListener {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]WatchedListener(nil), c.ls...)
}

func (c *changingListeners) add(l WatchedListener) {
	c.mu.Lock()
	c.ls = append(c.ls, l)
	c.mu.Unlock()
}

// TestQueueMetrics: /metrics exports each TCP listener's queue, follows the
// set as it changes, skips unix sockets and closed listeners, and passes
// promtool.
func TestQueueMetrics(t *testing.T) {
	web := bindListener(t, "web")
	set := &changingListeners{}
	set.add(web)
	dir, err := os.MkdirTemp("", "gm2h")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	spec, err := sockets.ParseSpec("unix://" + filepath.Join(dir, "u.sock"))
	if err != nil {
		t.Fatal(err)
	}
	us, err := sockets.Bind([]sockets.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sockets.CloseAll(us) })
	set.add(WatchedListener{Name: "sock", Address: us[0].Bound, File: us[0].File})
	set.add(web) // the same socket again (two apps name it): one series
	// No queue timeout: the metrics only.
	_, base, _ := startServerWith(t, newFakeSource(healthySnapshot()), testOptions(), Config{Listeners: set})

	for range 2 {
		c, err := net.DialTimeout("tcp", web.Address, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); queueLen(t, web) < 2; {
		if time.Now().After(deadline) {
			t.Fatal("connections not queued within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	api := bindListener(t, "api") // bound later, on a worker's first request
	set.add(api)
	closed := bindListener(t, "gone")
	closed.File.Close()
	set.add(closed)

	q, err := sockets.ReadAcceptQueue(web.File)
	if err != nil {
		t.Fatal(err)
	}
	if q.Backlog == q.Len {
		t.Fatalf("backlog %d equals the queue's length: the test cannot tell them apart", q.Backlog)
	}
	r := get(t, base+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`gm2_listener_queue_length{listener="web",address=%q} 2`+"\n", web.Address),
		fmt.Sprintf(`gm2_listener_queue_length{listener="api",address=%q} 0`+"\n", api.Address),
		fmt.Sprintf(`gm2_listener_backlog{listener="web",address=%q} %d`+"\n", web.Address, q.Backlog),
	} {
		if n := strings.Count(r.body, want); n != 1 {
			t.Errorf("%q %d times, want once, in\n%s", want, n, r.body)
		}
	}
	for _, not := range []string{`listener="sock"`, `listener="gone"`} {
		if strings.Contains(r.body, not) {
			t.Errorf("%s exported:\n%s", not, r.body)
		}
	}
	if err := checkExposition(r.body); err != nil {
		t.Errorf("exposition invalid: %v\n%s", err, r.body)
	}
	runPromtool(t, r.body)
	if r := get(t, base+"/readyz?verbose"); strings.Contains(r.body, "listener-queue") {
		t.Errorf("listener-queue checked with no queue timeout:\n%s", r.body)
	}
}

// TestQueueCheckCoalesced: a burst of probes while a queue is stuck is
// answered by one round of readings, and every probe gets the verdict.
func TestQueueCheckCoalesced(t *testing.T) {
	web := bindListener(t, "web")
	// 50 probes at once: burstOptions, so that a probe descheduled between
	// its connect and its write is not taken for a silent connection.
	s, base, _ := startServerWith(t, newFakeSource(healthySnapshot()), burstOptions(),
		Config{Listeners: StaticListeners{web}, QueueTimeout: 100 * time.Millisecond})
	c, err := net.DialTimeout("tcp", web.Address, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitReadyz(t, base, 503)
	codes := make(chan int, 50)
	for range cap(codes) {
		go func() { codes <- statusOf(s.Addr().String(), "/readyz") }()
	}
	for range cap(codes) {
		if code := <-codes; code != 503 {
			t.Errorf("probe in a burst: %d, want 503", code)
		}
	}
}

// TestQueueTrackSample: what a sequence of lengths makes of a stall.
func TestQueueTrackSample(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name      string
		lens      []int
		wantSince int // seconds after t0 of the last sample that started the stall; -1: none
	}{
		{"empty", []int{0, 0, 0}, -1},
		{"growing", []int{1, 2, 5}, 0},
		{"constant", []int{3, 3, 3}, 0},
		{"drains then waits", []int{3, 2, 2}, 1},
		{"emptied", []int{3, 0, 4}, 2},
		{"empties at the end", []int{3, 4, 0}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr queueTrack
			for i, n := range tc.lens {
				tr.sample(sockets.AcceptQueue{Len: n, Backlog: 10}, at(i))
			}
			switch {
			case tc.wantSince < 0 && !tr.since.IsZero():
				t.Errorf("stalled since %v, want no stall", tr.since.Sub(t0))
			case tc.wantSince >= 0 && !tr.since.Equal(at(tc.wantSince)):
				t.Errorf("stalled since %v, want %ds", tr.since.Sub(t0), tc.wantSince)
			}
		})
	}
}

func TestAnyGone(t *testing.T) {
	for _, tc := range []struct {
		prev, now []uint64
		want      bool
	}{
		{nil, nil, false},
		{nil, []uint64{1}, false},
		{[]uint64{1, 2}, []uint64{1, 2, 3}, false},
		{[]uint64{1, 2}, []uint64{2, 3}, true},
		{[]uint64{5}, nil, true},
		{[]uint64{1, 4, 9}, []uint64{1, 2, 4, 8, 9}, false},
		{[]uint64{1, 4, 9}, []uint64{1, 2, 4, 8}, true},
	} {
		if got := anyGone(tc.prev, tc.now); got != tc.want {
			t.Errorf("anyGone(%v, %v) = %v, want %v", tc.prev, tc.now, got, tc.want)
		}
	}
}

func TestTCPListenersOf(t *testing.T) {
	dir, err := os.MkdirTemp("", "gm2h")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var specs []sockets.Spec
	for _, raw := range []string{"web=127.0.0.1:0", "unix://" + filepath.Join(dir, "s.sock"), "udp://127.0.0.1:0", "api=127.0.0.1:0"} {
		sp, err := sockets.ParseSpec(raw)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, sp)
	}
	ls, err := sockets.Bind(specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sockets.CloseAll(ls) })
	got := TCPListenersOf(ls).TCPListeners()
	if len(got) != 2 || got[0].Name != "web" || got[1].Name != "api" || got[0].Address != ls[0].Bound || got[1].File != ls[3].File {
		t.Errorf("TCPListenersOf: %+v", got)
	}
}

// A socket shared on demand that no worker holds any more (the app closed
// that server, or a new version no longer listens there) is no stuck
// worker: connections waiting in its queue never fail /readyz, however
// long they wait, and /metrics still shows them. Once a worker holds it
// again, the same queue counts.
func TestUnservedSharedSocketNeverFailsReadyz(t *testing.T) {
	const timeout = 200 * time.Millisecond
	reg := sockets.NewRegistry(0, nil)
	t.Cleanup(reg.Close)
	port := strconv.Itoa(freeLoopbackPort(t))
	spec, err := sockets.ParseSpec("127.0.0.1:" + port)
	if err != nil {
		t.Fatal(err)
	}
	sh, _, err := reg.Get("web", spec)
	if err != nil {
		t.Fatal(err)
	}
	_, base, _ := startServerWith(t, newFakeSource(healthySnapshot()), testOptions(),
		Config{Listeners: ListenersOf(nil, reg), QueueTimeout: timeout})
	c, err := net.DialTimeout("tcp", sh.Listener.Bound, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Probed over several queue timeouts: the connection waits, unserved.
	for end := time.Now().Add(4 * timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if r := get(t, base+"/readyz"); r.code != 200 {
			t.Fatalf("/readyz %d %q with the only waiting connection on a socket no worker holds", r.code, r.body)
		}
	}
	if m := get(t, base+"/metrics"); !strings.Contains(m.body, `gm2_listener_queue_length{listener="tcp-`+port+`",address="`+sh.Listener.Bound+`"} 1`) {
		t.Errorf("/metrics does not show the waiting connection:\n%s", m.body)
	}
	reg.Hold(sh.ID) // a worker's server holds it, and takes nothing
	waitReadyz(t, base, 503)
	reg.Release(sh.ID)
	waitReadyz(t, base, 200)
}

// freeLoopbackPort returns a TCP port of 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
