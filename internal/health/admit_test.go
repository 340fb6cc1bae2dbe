package health

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// waitPending waits until c's receive queue holds n bytes.
func waitPending(t *testing.T, c net.Conn, n int) {
	t.Helper()
	buf := make([]byte, n)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if m, err := peek(c, buf); err == nil && m == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes not pending within 5s", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A head that fills the peek buffer without ending needs no more bytes to
// be answered (431): it counts as complete, and so may take the reserve.
func TestPeekHeadFullBufferIsComplete(t *testing.T) {
	client, server := tcpPair(t)
	buf := make([]byte, maxHeaderBytes)
	if kind, gone := peekHead(server, buf); kind != headNone || gone {
		t.Fatalf("nothing sent: %v %v", kind, gone)
	}
	if _, err := client.Write([]byte("GET /livez HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	waitPending(t, server, len("GET /livez HTTP/1.1\r\n"))
	if kind, _ := peekHead(server, buf); kind != headPartial {
		t.Fatalf("part of a head: %v, want partial", kind)
	}
	if _, err := client.Write([]byte(strings.Repeat("a", maxHeaderBytes))); err != nil {
		t.Fatal(err)
	}
	waitPending(t, server, maxHeaderBytes)
	if kind, gone := peekHead(server, buf); kind != headComplete || gone {
		t.Errorf("%d bytes without the end of a head: %v %v, want complete", maxHeaderBytes, kind, gone)
	}
}

// A head reader idle past the grace is evicted, unless bytes wait in the
// kernel for its goroutine (one starved of CPU is not an idle client).
func TestPickVictimSkipsReaderWithPendingBytes(t *testing.T) {
	client, server := tcpPair(t)
	s := &Server{opts: options{idleGrace: time.Second}}
	now := time.Now()
	s.conns = map[net.Conn]*connState{server: {accepted: now.Add(-2 * time.Second), phase: phaseHead}}
	if victim, _ := s.pickVictimLocked(false, now); victim != server {
		t.Fatalf("idle reader with nothing pending: victim %v, want it", victim)
	}
	if _, err := client.Write([]byte("G")); err != nil {
		t.Fatal(err)
	}
	waitPending(t, server, 1)
	victim, retry := s.pickVictimLocked(false, now)
	if victim != nil || retry.IsZero() {
		t.Errorf("reader with a byte pending: victim %v, retry %v; want none, and a retry", victim, retry)
	}
}

// More slow-header clients than head readers' places: the surplus waits
// in the lobby, and the reserve is still there for complete requests.
func TestConnectionLimitSlowReadersNeverTakeTheReserve(t *testing.T) {
	opts := testOptions()
	opts.readHeaderTimeout = time.Minute
	opts.idleGrace = time.Minute
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), opts)
	addr := s.Addr().String()
	slow := openConns(t, s, maxHeadReaders+reservedConns, "GET /livez HTTP/1.1\r\n",
		func(n connCounts) int { return n.head + n.waiting })
	if n := countConns(s); n.head != maxHeadReaders || n.waiting != reservedConns {
		t.Fatalf("%+v: want %d head readers and %d waiting", n, maxHeadReaders, reservedConns)
	}
	for range reservedConns {
		resp, body := parseAnswer(t, rawExchange(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"), "GET")
		if resp.StatusCode != 200 || body != "ok" {
			t.Errorf("probe beside %d slow connections: %d %q, want 200 ok", len(slow), resp.StatusCode, body)
		}
	}
	stillOpen(t, "slow connection", slow)
}

// Requests whose head has arrived are never closed unanswered: not to make
// room in a full lobby for a newcomer, however long they waited, nor by
// Shutdown, which gives them a place and their answer.
func TestWaitingRequestsSurviveFullLobbyAndShutdown(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	held := holdPings(src)
	opts := testOptions()
	opts.pingTimeout = time.Minute
	opts.idleGrace = time.Nanosecond // anything not complete is evictable at once
	s, _, _ := startServer(t, src, opts)
	addr := s.Addr().String()
	var release sync.Once // the pings end before the server's cleanup, even on failure
	t.Cleanup(func() { release.Do(func() { close(held.release) }) })

	answers := make(chan int, maxConns+maxWaiting)
	for range maxConns {
		go func() { answers <- statusOf(addr, "/livez") }()
	}
	waitConns(t, s, "every place taken by a request in flight", func(n connCounts) bool { return n.answering == maxConns })
	for range maxWaiting {
		go func() { answers <- statusOf(addr, "/readyz") }()
	}
	waitConns(t, s, "lobby full of complete requests", func(connCounts) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		complete := 0
		for _, st := range s.lobby {
			if st.kind == headComplete {
				complete++
			}
		}
		return complete == maxWaiting
	})
	newcomer := make(chan int, 1)
	go func() { newcomer <- statusOf(addr, "/readyz") }()
	select {
	case code := <-answers:
		t.Fatalf("a request answered %d while every place was busy: one waiting was dropped for the newcomer", code)
	case <-time.After(200 * time.Millisecond): // a bound on a negative: nothing may happen
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	waitConns(t, s, "Shutdown begun", func(connCounts) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closing
	})
	release.Do(func() { close(held.release) })
	ok := 0
	for range maxConns + maxWaiting {
		select {
		case code := <-answers:
			if code == 200 {
				ok++
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d requests answered 200 in 30s, want %d", ok, maxConns+maxWaiting)
		}
	}
	if ok != maxConns+maxWaiting {
		t.Errorf("%d requests answered 200, want every one of %d (in flight and waiting)", ok, maxConns+maxWaiting)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	<-newcomer // closed unanswered by Serve when Shutdown began: it never entered
}
