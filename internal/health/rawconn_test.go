package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// rawExchange sends raw bytes on a new connection to addr and reads until the
// server closes it. It fails the test if the connection is still open after
// 5 s or is reset: the server must deliver its answer and then close.
func rawExchange(t *testing.T, addr, raw string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("after %q: read %q, then %v (want the answer, then EOF)", truncate(raw, 80), got, err)
	}
	return got
}

// parseAnswer reads raw as one HTTP answer with net/http, an independent
// implementation, and checks that nothing follows it.
func parseAnswer(t *testing.T, raw []byte, method string) (*http.Response, string) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("answer %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer %q: body: %v", raw, err)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Errorf("bytes after the answer: %q", rest)
	}
	if !resp.Close {
		t.Errorf("answer without Connection: close: %q", raw)
	}
	return resp, string(body)
}

func TestRawRequests(t *testing.T) {
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), testOptions())
	addr := s.Addr().String()
	for _, tc := range []struct {
		name, raw, method string
		code              int
		body              string // "" for any
		allow             bool
	}{
		{name: "HTTP/1.0", raw: "GET /livez HTTP/1.0\r\n\r\n", code: 200, body: "ok"},
		{name: "LF only", raw: "GET /livez HTTP/1.1\nHost: x\n\n", code: 200, body: "ok"},
		{name: "leading CRLF", raw: "\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n", code: 200, body: "ok"},
		{name: "absolute form with verbose", raw: "GET http://" + addr + "/livez?verbose HTTP/1.1\r\nHost: " + addr + "\r\n\r\n",
			code: 200, body: "[+]ping ok\n[+]slots ok\nlivez check passed\n"},
		{name: "HEAD", raw: "HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n", method: "HEAD", code: 200, body: ""},
		{name: "keep-alive asked, close given", raw: "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", code: 200, body: "ok"},
		{name: "pipelined: one answer", raw: "GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", code: 200, body: "ok"},
		{name: "GET with a body", raw: "GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", code: 200, body: "ok"},
		{name: "lowercase method", raw: "get /livez HTTP/1.1\r\nHost: x\r\n\r\n", code: 405, allow: true},
		{name: "lowercase method, unknown path", raw: "get /nope HTTP/1.1\r\nHost: x\r\n\r\n", code: 404},
		// The body is never read; up to lingerBytes of it are
		// discarded after the answer so that closing does not reset
		// the connection under the client's feet.
		{name: "POST with a body", raw: "POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("x", lingerBytes/2),
			code: 405, allow: true},
		{name: "POST chunked", raw: "POST /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("x", 4096),
			code: 405, allow: true},
		{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", code: 505},
		{name: "no version", raw: "GET /livez\r\n\r\n", code: 400},
		{name: "missing Host", raw: "GET /livez HTTP/1.1\r\n\r\n", code: 400},
		{name: "obsolete line folding", raw: "GET /livez HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", code: 400},
		{name: "head too large", raw: "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", code: 431},
		{name: "TLS client hello", raw: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			resp, body := parseAnswer(t, rawExchange(t, addr, tc.raw), method)
			if resp.StatusCode != tc.code || tc.body != "" && body != tc.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.code, tc.body)
			}
			if got := resp.Header.Get("Allow"); (got == "GET, HEAD") != tc.allow {
				t.Errorf("Allow %q", got)
			}
			if resp.Header.Get("Content-Type") == "" || resp.Header.Get("Date") == "" {
				t.Errorf("headers %v", resp.Header)
			}
			if method == "HEAD" && resp.Header.Get("Content-Length") != "2" {
				t.Errorf("HEAD: Content-Length %q, want 2", resp.Header.Get("Content-Length"))
			}
		})
	}
}

// TestIncompleteHeadClosedSilently checks that a client that stops in the
// middle of its head is cut off by the read-header timeout, without an
// answer.
func TestIncompleteHeadClosedSilently(t *testing.T) {
	opts := testOptions()
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), opts)
	for _, partial := range []string{"", "GET /livez HTTP/1.1\r\nHost: x\r\n"} {
		// Before the dial, so before the accept from which the
		// timeout runs.
		start := time.Now()
		c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(partial)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		elapsed := time.Since(start)
		c.Close()
		if err != nil || len(got) > 0 {
			t.Errorf("partial head %q: read %q, %v; want EOF and nothing", partial, got, err)
		}
		if elapsed < opts.readHeaderTimeout || elapsed > opts.readHeaderTimeout+2*time.Second {
			t.Errorf("partial head %q: closed after %v, want about %v", partial, elapsed, opts.readHeaderTimeout)
		}
	}
}

// serveConnGoroutines counts the goroutines that handle a connection.
func serveConnGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("health.(*Server).serveConn("))
}

// waitNoServeConn fails the test unless every connection goroutine ends
// within a second: Shutdown must leave none behind.
func waitNoServeConn(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for serveConnGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection goroutines left after Shutdown", serveConnGoroutines())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownWaitsForInFlightRequest holds a /livez answer in the ping and
// checks that Shutdown closes the listener at once but waits for the answer.
func TestShutdownWaitsForInFlightRequest(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	held := holdPings(src)
	entered, release := held.first, held.release
	opts := testOptions()
	opts.pingTimeout = 5 * time.Second // only release ends the ping
	s, _, _ := startServer(t, src, opts)
	addr := s.Addr().String()

	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no Ping within 5s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	// The listener closes at once; the in-flight request keeps Shutdown
	// waiting.
	deadline := time.Now().Add(2 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting 2s after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read answer: %q, %v", got, err)
	}
	c.Close() // as clients do after "Connection: close"; ends the server's linger
	if resp, body := parseAnswer(t, got, "GET"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("in-flight answer %d %q, want 200 ok", resp.StatusCode, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the in-flight request ended")
	}
	waitNoServeConn(t)
}

// TestShutdownClosesWhatRemains checks that when ctx ends first, Shutdown
// closes the connections still open and reports it.
func TestShutdownClosesWhatRemains(t *testing.T) {
	opts := testOptions()
	opts.readHeaderTimeout = time.Minute // the client would hold its slot that long
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), opts)

	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /livez HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	// Wait until the server handles the connection.
	for deadline := time.Now().Add(5 * time.Second); serveConnGoroutines() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("connection not accepted within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a 100ms context", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); len(got) > 0 || isTimeout(err) {
		t.Errorf("client after Shutdown: %q, %v; want the connection closed", got, err)
	}
	waitNoServeConn(t)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// connCounts is what the server holds: connections with a place, by
// phase, and in the lobby.
type connCounts struct{ placed, head, answering, waiting int }

func countConns(s *Server) connCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := connCounts{placed: len(s.conns), waiting: len(s.lobby)}
	for _, st := range s.conns {
		switch st.phase {
		case phaseHead:
			n.head++
		case phaseAnswering:
			n.answering++
		}
	}
	return n
}

// waitConns waits until cond holds of the server's connections.
func waitConns(t *testing.T, s *Server, what string, cond func(connCounts) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n := countConns(s)
		if cond(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s (%+v)", what, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// openConns opens n connections to s, one at a time (so that "longest"
// is their order), each sending send (maybe nothing) and each held by the
// server as held says before the next is opened.
func openConns(t *testing.T, s *Server, n int, send string, held func(connCounts) int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	base := held(countConns(s))
	for i := range n {
		c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if send != "" {
			if _, err := c.Write([]byte(send)); err != nil {
				t.Fatal(err)
			}
		}
		waitConns(t, s, "connection held", func(n connCounts) bool { return held(n) == base+i+1 })
	}
	return conns
}

func waiting(n connCounts) int { return n.waiting }
func reading(n connCounts) int { return n.head }

// stillOpen fails the test if one of conns was closed by the server.
func stillOpen(t *testing.T, what string, conns []net.Conn) {
	t.Helper()
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			t.Errorf("%s %d closed: %v", what, i, err)
			return
		}
	}
}

// TestConnectionLimitReserve fills the lobby with connections that send
// nothing and the head readers' places with connections that send part of a
// head and stop (slowloris), with a grace so long that none may be evicted,
// and checks that probes are still answered at once, from the reserve.
func TestConnectionLimitReserve(t *testing.T) {
	opts := testOptions()
	opts.readHeaderTimeout = time.Minute
	opts.idleGrace = time.Minute
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), opts)
	addr := s.Addr().String()
	silent := openConns(t, s, maxWaiting, "", waiting)
	slow := openConns(t, s, maxHeadReaders, "GET /livez HTTP/1.1\r\n", reading)

	for range 2 * reservedConns {
		resp, body := parseAnswer(t, rawExchange(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"), "GET")
		if resp.StatusCode != 200 || body != "ok" {
			t.Errorf("probe beside %d silent and %d slow connections: %d %q, want 200 ok", maxWaiting, maxHeadReaders, resp.StatusCode, body)
		}
	}
	stillOpen(t, "silent connection", silent)
	stillOpen(t, "slow connection", slow)
	if n := countConns(s); n.head > maxHeadReaders || n.placed > maxConns || n.waiting > maxWaiting {
		t.Errorf("%+v: over the limits (%d places, %d head readers, %d waiting)", n, maxConns, maxHeadReaders, maxWaiting)
	}
}

// TestConnectionLimitEvictsSilentLongest checks which waiting connection
// makes room for a newcomer when the lobby is full: the one silent longest,
// and only once it has been silent for the grace.
func TestConnectionLimitEvictsSilentLongest(t *testing.T) {
	opts := testOptions()
	opts.readHeaderTimeout = time.Minute // only evictions end the silent ones
	opts.idleGrace = 300 * time.Millisecond
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), opts)
	firstDial := time.Now() // before the first accept, so before its grace began
	silent := openConns(t, s, maxWaiting, "", waiting)

	extra, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = silent[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("connection silent longest: read %v, want EOF (evicted)", err)
	}
	if d := time.Since(firstDial); d < opts.idleGrace {
		t.Errorf("silent connection evicted %v after it was dialled, before the %v grace", d, opts.idleGrace)
	}
	waitConns(t, s, "newcomer waiting", func(n connCounts) bool { return n.waiting == maxWaiting })
	stillOpen(t, "silent connection", silent[1:])
}

// TestConnectionLimitEvictsSlowReader fills every place: the reserve with
// requests in flight (their ping held), the head readers' places with
// slow-header clients. A complete request that arrives then waits in the
// lobby until the slow client idle longest has been idle for the grace, takes
// its place and is answered; the requests in flight are answered too.
func TestConnectionLimitEvictsSlowReader(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	held := holdPings(src)
	opts := testOptions()
	opts.readHeaderTimeout = time.Minute
	opts.pingTimeout = time.Minute
	opts.idleGrace = 300 * time.Millisecond
	s, _, _ := startServer(t, src, opts)
	addr := s.Addr().String()

	inFlight := make(chan int, reservedConns)
	for range reservedConns {
		go func() { inFlight <- statusOf(addr, "/livez") }()
	}
	waitConns(t, s, "requests in flight", func(n connCounts) bool { return n.answering == reservedConns })
	firstSlow := time.Now()
	slow := openConns(t, s, maxHeadReaders, "GET /livez HTTP/1.1\r\n", reading)

	// /status does not ping: it is answered as soon as it has a place.
	resp, _ := parseAnswer(t, rawExchange(t, addr, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n"), "GET")
	if resp.StatusCode != 200 {
		t.Errorf("request beside full places: %d, want 200", resp.StatusCode)
	}
	if d := time.Since(firstSlow); d < opts.idleGrace {
		t.Errorf("a slow reader was evicted %v after it started, before the %v grace", d, opts.idleGrace)
	}
	_ = slow[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := slow[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("slow reader idle longest: read %v, want EOF (evicted)", err)
	}
	stillOpen(t, "slow connection", slow[1:])
	close(held.release)
	for range reservedConns {
		if code := <-inFlight; code != 200 {
			t.Errorf("request in flight answered %d, want 200", code)
		}
	}
}

// TestConnectionLimitBusy checks that connections being answered are never
// evicted: with every slot busy, the next client waits for one to free.
func TestConnectionLimitBusy(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	held := holdPings(src)
	release := held.release
	opts := testOptions()
	opts.pingTimeout = 10 * time.Second
	s, _, _ := startServer(t, src, opts)
	addr := s.Addr().String()

	// maxConns /livez requests, all waiting on the same ping.
	answers := make(chan int, maxConns+1)
	for range maxConns {
		go func() { answers <- statusOf(addr, "/livez") }()
	}
	// Every connection past its request head, so none is idle and
	// evictable: only then is the server truly full.
	waitConns(t, s, "every place taken by a request in flight", func(n connCounts) bool {
		return held.count.Load() >= 1 && n.answering == maxConns
	})
	go func() { answers <- statusOf(addr, "/readyz") }()
	select {
	case code := <-answers:
		t.Fatalf("a request was answered (%d) while every slot was busy and the ping held", code)
	case <-time.After(100 * time.Millisecond): // a bound on a negative: nothing may happen
	}
	close(release)
	for range maxConns + 1 {
		select {
		case code := <-answers:
			if code != 200 {
				t.Errorf("answer %d, want 200", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("requests not answered after the ping returned")
		}
	}
}

// heldPings makes every ping of a fakeSource wait until release is closed
// or its context ends: a request in flight, held where the test wants it.
type heldPings struct {
	first   chan struct{} // closed when the first ping starts
	release chan struct{} // the test closes it to let the pings return
	count   atomic.Int32  // pings started
	once    sync.Once
}

func holdPings(src *fakeSource) *heldPings {
	h := &heldPings{first: make(chan struct{}), release: make(chan struct{})}
	src.setPing(func(ctx context.Context) error {
		h.count.Add(1)
		h.once.Do(func() { close(h.first) })
		select {
		case <-h.release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return h
}

// statusOf GETs path from addr on a connection of its own and returns the
// status code, or -1 on any failure; for goroutines, which must not call
// t.Fatal.
func statusOf(addr, path string) int {
	c, err := net.DialTimeout("tcp", addr, 20*time.Second)
	if err != nil {
		return -1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("GET " + path + " HTTP/1.0\r\n\r\n")); err != nil {
		return -1
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// flakyListener fails its first accepts with err.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
	err   error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAcceptErrors checks that a temporary accept error (out of descriptors)
// is logged once and retried with a back-off, and that a permanent one ends
// Serve with an error.
func TestAcceptErrors(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	logs := &syncBuffer{}
	s, err := listen("127.0.0.1:0", newFakeSource(healthySnapshot()), zerolog.New(logs), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: s.ln, err: emfile}
	fl.fails.Store(6) // back-offs of 5+10+20+40+80+160 ms
	s.ln = fl
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()

	start := time.Now()
	resp, body := parseAnswer(t, rawExchange(t, s.Addr().String(), "GET /livez HTTP/1.0\r\n\r\n"), "GET")
	if resp.StatusCode != 200 || body != "ok" {
		t.Errorf("after accept errors: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("6 accept errors retried within %v: no back-off", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := strings.Count(logs.String(), "cannot accept"); n != 1 {
		t.Errorf("%d accept error lines, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"failed_accepts":6`) {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}

	// Any other error is retried too; only a listener closed under Serve
	// ends it with an error.
	s, err = listen("127.0.0.1:0", newFakeSource(healthySnapshot()), zerolog.Nop(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	fl = &flakyListener{Listener: s.ln, err: errors.New("listener broken")}
	fl.fails.Store(2)
	s.ln = fl
	served = make(chan error, 1)
	go func() { served <- s.Serve() }()
	if resp, _ := parseAnswer(t, rawExchange(t, s.Addr().String(), "GET /livez HTTP/1.0\r\n\r\n"), "GET"); resp.StatusCode != 200 {
		t.Errorf("after unknown accept errors: %d", resp.StatusCode)
	}
	fl.Listener.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve on a closed listener: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when its listener was closed")
	}
	s.Shutdown(context.Background())
}

// TestCheckWire checks the exact request Check sends and its reading of
// answers from a server that is not ours.
func TestCheckWire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answers := make(chan string, 1)
	requests := make(chan string, 1)
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			head, _ := readHead(c, make([]byte, maxHeaderBytes))
			requests <- string(head)
			_, _ = io.WriteString(c, <-answers)
			c.Close()
		}
	}()
	addr := ln.Addr().String()

	answers <- "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n1b\r\n[-]workers failed: 0 ready\n\r\n0\r\n\r\n"
	err = Check(context.Background(), addr, "readyz?verbose", 5*time.Second)
	want := "GET /readyz?verbose HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: gm2-init-healthcheck\r\nConnection: close\r\n\r\n"
	if got := <-requests; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	if err == nil || err.Error() != "health check http://"+addr+"/readyz?verbose: 503 Service Unavailable: [-]workers failed: 0 ready" {
		t.Errorf("Check: %v", err)
	}

	answers <- "HTTP/1.1 200\r\n\r\n"
	if err := Check(context.Background(), addr, "/livez", 5*time.Second); err != nil {
		t.Errorf("Check on a bare 200: %v", err)
	}
	<-requests

	answers <- "SSH-2.0-OpenSSH_9.6\r\n"
	err = Check(context.Background(), addr, "/livez", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "read response: malformed status line") {
		t.Errorf("Check on a non-HTTP server: %v", err)
	}
	<-requests

	for _, path := range []string{"/livez x", "/livez\r\nX: y", "/livez#top", "/livéz"} {
		if err := Check(context.Background(), addr, path, time.Second); err == nil || !strings.Contains(err.Error(), "invalid character") {
			t.Errorf("Check(%q): %v, want an invalid character error", path, err)
		}
	}
}
