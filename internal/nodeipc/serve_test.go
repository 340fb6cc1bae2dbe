package nodeipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// waitLimit bounds every wait: Serve answers at once on a socketpair.
const waitLimit = 10 * time.Second

// peer is the worker's end of a channel, driven by the test the way Node
// would: whole lines, descriptors in SCM_RIGHTS.
type peer struct {
	t    *testing.T
	fd   int
	buf  []byte
	fds  []int
	errc chan error
}

// serveFake starts Serve with h on a fresh channel and returns the
// worker's end. Serve ends with the test.
func serveFake(t *testing.T, h Handler) (*peer, context.CancelFunc, *os.File) {
	t.Helper()
	parent, child, err := NewChannel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{t: t, fd: int(child.Fd()), errc: make(chan error, 1)}
	if err := unix.SetNonblock(p.fd, false); err != nil {
		t.Fatal(err)
	}
	go func() { p.errc <- Serve(ctx, parent, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.errc:
		case <-time.After(waitLimit):
			t.Error("Serve did not end after cancel")
		}
		parent.Close()
		child.Close()
		for _, fd := range p.fds {
			unix.Close(fd)
		}
	})
	return p, cancel, parent
}

func (p *peer) send(line string, fd int) {
	p.t.Helper()
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(p.fd, []byte(line+"\n"), oob, nil, 0); err != nil {
		p.t.Fatalf("send: %v", err)
	}
}

// line returns the next line Serve wrote and the descriptor that came with
// it (-1 for none).
func (p *peer) line() (map[string]any, string, int) {
	p.t.Helper()
	for {
		if i := bytes.IndexByte(p.buf, '\n'); i >= 0 {
			l := string(p.buf[:i])
			p.buf = p.buf[i+1:]
			fd := -1
			if len(p.fds) > 0 {
				fd, p.fds = p.fds[0], p.fds[1:]
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				p.t.Fatalf("Serve wrote %q, not JSON: %v", l, err)
			}
			return m, l, fd
		}
		b := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4*4))
		n, oobn, err := testtool.Recvmsg(p.fd, b, oob, unix.MSG_CMSG_CLOEXEC, waitLimit)
		if err != nil {
			p.t.Fatalf("read from Serve: %v", err)
		}
		if n == 0 {
			p.t.Fatal("Serve closed the channel")
		}
		p.buf = append(p.buf, b[:n]...)
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				p.fds = append(p.fds, fds...)
			}
		}
	}
}

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat %d: %v", fd, err)
	}
	return st.Ino
}

func listenerFile(t *testing.T) (*os.File, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ln
}

// TestServeQuery: a query is answered with the socket in SCM_RIGHTS and the
// reply Node's cluster worker expects; a second query gets the same socket
// with another key; the preload's tag comes back with the id.
func TestServeQuery(t *testing.T) {
	t.Parallel()
	f, _ := listenerFile(t)
	var mu sync.Mutex
	var got []Query
	p, _, _ := serveFake(t, Handler{Query: func(q Query) Reply {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, q)
		return Reply{File: f, ID: 7, Data: json.RawMessage(`{"ticketKeys":"aa"}`)}
	}})
	p.send(lineQuery, -1)
	m, raw, fd := p.line()
	if fd < 0 {
		t.Fatalf("reply %s came without a descriptor", raw)
	}
	if inode(t, fd) != inode(t, int(f.Fd())) {
		t.Fatalf("the descriptor is not the handler's socket")
	}
	if m["cmd"] != "NODE_HANDLE" || m["type"] != "net.Native" {
		t.Fatalf("reply %s: want a NODE_HANDLE of type net.Native", raw)
	}
	msg, _ := m["msg"].(map[string]any)
	if msg["cmd"] != "NODE_CLUSTER" || msg["ack"] != 1.0 || msg["errno"] != 0.0 {
		t.Fatalf("inner message %v: want NODE_CLUSTER, ack 1, errno 0", msg)
	}
	if d, _ := msg["data"].(map[string]any); d["ticketKeys"] != "aa" {
		t.Fatalf("data %v, want the handler's", msg["data"])
	}
	if tag, _ := msg["gm2"].(map[string]any); tag["pid"] != 42.0 || tag["ref"] != 1.0 || tag["id"] != 7.0 {
		t.Fatalf("gm2 tag %v, want pid 42, ref 1, id 7", msg["gm2"])
	}
	key1, _ := msg["key"].(string)
	p.send(`{"cmd":"NODE_HANDLE_ACK"}`, -1)
	p.send(strings.Replace(lineQuery, `"seq":1`, `"seq":2`, 1), -1)
	m, _, fd2 := p.line()
	msg, _ = m["msg"].(map[string]any)
	if key2, _ := msg["key"].(string); key2 == "" || key2 == key1 || !strings.HasPrefix(key2, "7:") {
		t.Fatalf("keys %q then %q: want two different keys of socket 7", key1, key2)
	}
	if fd2 < 0 || inode(t, fd2) != inode(t, fd) {
		t.Fatal("the second reply does not carry the same socket")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Port != 3000 || got[0].Tag == nil {
		t.Fatalf("handler saw %+v", got)
	}
}

// TestServeQueryError: a refused query is answered with libuv's negative
// errno and no descriptor; a relayed query is answered as NODE_GM2; a UDP
// socket is a dgram.Native handle.
func TestServeQueryError(t *testing.T) {
	t.Parallel()
	f, _ := listenerFile(t)
	p, _, _ := serveFake(t, Handler{Query: func(q Query) Reply {
		if q.Network == "udp" {
			return Reply{File: f, UDP: true, ID: 2}
		}
		return Reply{Errno: unix.EADDRINUSE}
	}})
	p.send(lineQuery, -1)
	m, raw, fd := p.line()
	if fd >= 0 || m["cmd"] != "NODE_CLUSTER" || m["errno"] != -98.0 || m["ack"] != 1.0 {
		t.Fatalf("reply %s (fd %d): want NODE_CLUSTER errno -98 ack 1 without descriptor", raw, fd)
	}
	p.send(strings.Replace(lineQuery, "NODE_CLUSTER", "NODE_GM2", 1), -1)
	if m, raw, _ := p.line(); m["cmd"] != "NODE_GM2" {
		t.Fatalf("reply %s to a relayed query: want NODE_GM2", raw)
	}
	p.send(lineQueryUDP, -1)
	m, raw, fd = p.line()
	if fd < 0 || m["type"] != "dgram.Native" {
		t.Fatalf("reply %s: want a dgram.Native handle", raw)
	}
}

// TestServeNilQuery: without a Query handler every query is refused.
func TestServeNilQuery(t *testing.T) {
	t.Parallel()
	p, _, _ := serveFake(t, Handler{})
	p.send(lineQuery, -1)
	if m, raw, fd := p.line(); fd >= 0 || m["errno"] != -float64(unix.EADDRNOTAVAIL) {
		t.Fatalf("reply %s: want EADDRNOTAVAIL", raw)
	}
}

// TestServeMessages: readiness, the disconnect handshake, a descriptor the
// worker sends (closed and acknowledged), other messages ignored.
func TestServeMessages(t *testing.T) {
	t.Parallel()
	var ready atomic.Int32
	events := make(chan Kind, 8)
	p, _, _ := serveFake(t, Handler{
		Ready: func() { ready.Add(1) },
		Event: func(m Message) { events <- m.Kind },
	})
	p.send(`{"app":"message"}`, -1)
	for range 100 { // once is news; the rest are not passed on
		p.send(`"ready"`, -1)
	}
	p.send(lineOnline, -1)
	p.send(`{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect","seq":5}`, -1)
	m, raw, _ := p.line()
	if m["cmd"] != "NODE_CLUSTER" || m["ack"] != 5.0 {
		t.Fatalf("reply %s: want the ack of seq 5", raw)
	}
	if ready.Load() != 1 {
		t.Fatalf("Ready called %d times, want 1", ready.Load())
	}
	for _, want := range []Kind{KindOnline, KindDisconnecting} {
		select {
		case k := <-events:
			if k != want {
				t.Fatalf("event %v, want %v", k, want)
			}
		case <-time.After(waitLimit):
			t.Fatalf("no %v event", want)
		}
	}
	// A descriptor from the worker: Serve closes its copy (the pipe's
	// reader then sees EOF once the test closes its own) and acknowledges.
	var pfd [2]int
	if err := unix.Pipe2(pfd[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd[0])
	p.send(`{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"hi":1}}`, pfd[1])
	unix.Close(pfd[1])
	if m, raw, _ := p.line(); m["cmd"] != "NODE_HANDLE_ACK" {
		t.Fatalf("reply %s: want NODE_HANDLE_ACK", raw)
	}
	if err := unix.SetNonblock(pfd[0], false); err != nil {
		t.Fatal(err)
	}
	n, err := unix.Read(pfd[0], make([]byte, 1))
	if n != 0 || err != nil {
		t.Fatalf("read of the pipe = %d, %v: want EOF (Serve closed the descriptor it got)", n, err)
	}
}

// serveHolding serves a fake worker every query of which is answered with
// one listening socket, registered as id; what Serve says of its holders
// comes on events as "held ID" and "released ID".
func serveHolding(t *testing.T, id int) (*peer, context.CancelFunc, chan string) {
	t.Helper()
	f, _ := listenerFile(t)
	events := make(chan string, 16)
	p, cancel, _ := serveFake(t, Handler{
		Query:    func(Query) Reply { return Reply{File: f, ID: id} },
		Held:     func(id int) { events <- "held " + strconv.Itoa(id) },
		Released: func(id int) { events <- "released " + strconv.Itoa(id) },
	})
	return p, cancel, events
}

// TestServeNack: a socket the worker could not receive is sent again, and
// after the resends the worker's listen() gets EMFILE instead of hanging.
func TestServeNack(t *testing.T) {
	t.Parallel()
	p, _, events := serveHolding(t, 1)
	p.send(lineQuery, -1)
	first, _, fd := p.line()
	if fd < 0 {
		t.Fatal("no descriptor")
	}
	for i := 0; i < maxResends; i++ {
		p.send(`{"cmd":"NODE_HANDLE_NACK"}`, -1)
		m, raw, fd := p.line()
		if fd < 0 || m["cmd"] != "NODE_HANDLE" {
			t.Fatalf("resend %d: %s without descriptor", i+1, raw)
		}
		if a, b := first["msg"].(map[string]any)["key"], m["msg"].(map[string]any)["key"]; a != b {
			t.Fatalf("resend %d has key %v, want the same %v", i+1, b, a)
		}
	}
	p.send(`{"cmd":"NODE_HANDLE_NACK"}`, -1)
	m, raw, fd := p.line()
	if fd >= 0 || m["errno"] != -float64(unix.EMFILE) || m["ack"] != 1.0 {
		t.Fatalf("after %d resends: %s, want errno EMFILE for ack 1 without descriptor", maxResends, raw)
	}
	// The worker never got the socket: it no longer holds it. Serve made
	// both events before it wrote the reply just read.
	for _, want := range []string{"held 1", "released 1"} {
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		default:
			t.Fatalf("no event, want %q", want)
		}
	}
	// Nothing left in flight: another NACK changes nothing, a query works.
	p.send(`{"cmd":"NODE_HANDLE_NACK"}`, -1)
	p.send(strings.Replace(lineQuery, `"seq":1`, `"seq":9`, 1), -1)
	if m, raw, fd := p.line(); fd < 0 || m["msg"].(map[string]any)["ack"] != 9.0 {
		t.Fatalf("next reply %s: want the answer to seq 9", raw)
	}
}

// TestServeLongLines: a line longer than maxLine is skipped without being
// buffered whole, and the query after it is answered.
func TestServeLongLines(t *testing.T) {
	t.Parallel()
	p, _, _ := serveFake(t, Handler{})
	big := `{"cmd":"NODE_CLUSTER","act":"queryServer","pad":"` + strings.Repeat("x", 3*maxLine) + `","seq":1}`
	go func() {
		// The worker's write of a big message may block until Serve reads.
		unix.Write(p.fd, []byte(big+"\n"+strings.Replace(lineQuery, `"seq":1`, `"seq":2`, 1)+"\n"))
	}()
	m, raw, _ := p.line()
	if m["ack"] != 2.0 {
		t.Fatalf("first reply %s: want the answer to seq 2 only", raw)
	}
}

// TestServeEnds: Serve returns nil when the worker's end closes, and
// ctx.Err() when ctx ends, leaving the channel open in both cases.
func TestServeEnds(t *testing.T) {
	t.Parallel()
	t.Run("eof", func(t *testing.T) {
		parent, child, err := NewChannel()
		if err != nil {
			t.Fatal(err)
		}
		defer parent.Close()
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), parent, Handler{}) }()
		child.Close()
		serveEndsClean(t, done, "EOF")
	})
	t.Run("cancel", func(t *testing.T) {
		p, cancel, parent := serveFake(t, Handler{})
		cancel()
		select {
		case err := <-p.errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Serve after cancel = %v, want context.Canceled", err)
			}
			p.errc <- err // for the cleanup
		case <-time.After(waitLimit):
			t.Fatal("Serve did not end after cancel")
		}
		// The worker's channel is still connected: gm2-init closes it only
		// once the worker is gone.
		if _, err := unix.Write(p.fd, []byte("\"x\"\n")); err != nil {
			t.Fatalf("write after Serve ended: %v (the channel was closed)", err)
		}
		if err := parent.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 8)
		if n, err := parent.Read(b); err != nil || string(b[:n]) != "\"x\"\n" {
			t.Fatalf("read on the parent end = %q, %v", b[:n], err)
		}
	})
}

// TestEnv: the variables a worker gets.
func TestEnv(t *testing.T) {
	t.Parallel()
	got := strings.Join(Env(4, 3), " ")
	if got != "NODE_CHANNEL_FD=4 NODE_CHANNEL_SERIALIZATION_MODE=json GM2_NODE_CLUSTER=3" {
		t.Fatalf("Env(4, 3) = %s", got)
	}
	if !strings.Contains(strings.Join(Env(4, 0), " "), "GM2_NODE_CLUSTER=1") {
		t.Fatal("Env with id 0 must give id 1")
	}
}

// TestServeHolds: each socket passed is Held; the worker's close of that
// server (its key) Releases it, and the end of the channel Releases what
// is still held: gm2-init knows which on-demand sockets a live worker
// serves.
func TestServeHolds(t *testing.T) {
	t.Parallel()
	p, cancel, events := serveHolding(t, 7)
	next := func(want string) {
		t.Helper()
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(waitLimit):
			t.Fatalf("no event, want %q", want)
		}
	}
	p.send(lineQuery, -1)
	m, _, _ := p.line()
	next("held 7")
	key, _ := m["msg"].(map[string]any)["key"].(string)
	p.send(`{"cmd":"NODE_HANDLE_ACK"}`, -1)
	p.send(`{"cmd":"NODE_CLUSTER","act":"close","key":"9:9","seq":2}`, -1) // not a key of ours: nothing
	p.send(`{"cmd":"NODE_CLUSTER","act":"close","key":"`+key+`","seq":3}`, -1)
	next("released 7")
	p.send(strings.Replace(lineQuery, `"seq":1`, `"seq":4`, 1), -1)
	p.line()
	next("held 7")
	cancel()
	next("released 7")
	select { // once Serve has returned, every event it made is in the channel
	case err := <-p.errc:
		p.errc <- err // for the cleanup
	case <-time.After(waitLimit):
		t.Fatal("Serve did not end after cancel")
	}
	select {
	case got := <-events:
		t.Fatalf("extra event %q", got)
	default:
	}
}

// queryKey returns the key of the socket a NODE_HANDLE line passes.
func queryKey(t *testing.T, m map[string]any, raw string) string {
	t.Helper()
	inner, _ := m["msg"].(map[string]any)
	key, _ := inner["key"].(string)
	if m["cmd"] != "NODE_HANDLE" || key == "" {
		t.Fatalf("%s: want a NODE_HANDLE with a key", raw)
	}
	return key
}

// TestServeNackAfterAck: a NACK is about the socket still in flight, never
// one the worker acknowledged already.
func TestServeNackAfterAck(t *testing.T) {
	t.Parallel()
	f, _ := listenerFile(t)
	id := 0
	p, _, _ := serveFake(t, Handler{Query: func(Query) Reply { id++; return Reply{File: f, ID: id} }})
	p.send(lineQuery, -1)
	p.line()
	p.send(`{"cmd":"NODE_HANDLE_ACK"}`, -1)
	p.send(strings.Replace(lineQuery, `"seq":1`, `"seq":2`, 1), -1)
	m, raw, _ := p.line()
	second := queryKey(t, m, raw)
	p.send(`{"cmd":"NODE_HANDLE_NACK"}`, -1)
	m, raw, fd := p.line()
	if got := queryKey(t, m, raw); got != second || fd < 0 {
		t.Fatalf("resent %s (descriptor %d), want the second socket, key %s", raw, fd, second)
	}
}

// TestServeInFlightBound: past maxInFlight unacknowledged sockets the
// oldest is forgotten: a NACK then resends the next one.
func TestServeInFlightBound(t *testing.T) {
	t.Parallel()
	f, _ := listenerFile(t)
	id := 0
	p, _, _ := serveFake(t, Handler{Query: func(Query) Reply { id++; return Reply{File: f, ID: id} }})
	var keys []string
	for i := 1; i <= maxInFlight+1; i++ {
		p.send(strings.Replace(lineQuery, `"seq":1`, `"seq":`+strconv.Itoa(i), 1), -1)
		m, raw, fd := p.line()
		keys = append(keys, queryKey(t, m, raw))
		unix.Close(fd)
	}
	p.send(`{"cmd":"NODE_HANDLE_NACK"}`, -1)
	m, raw, fd := p.line()
	unix.Close(fd)
	if got := queryKey(t, m, raw); got != keys[1] {
		t.Fatalf("resent key %s, want %s (the oldest, %s, forgotten)", got, keys[1], keys[0])
	}
}

// TestServeLineOfMaxLength: a line of exactly maxLine bytes is read.
func TestServeLineOfMaxLength(t *testing.T) {
	t.Parallel()
	p, _, _ := serveFake(t, Handler{})
	q := strings.Replace(lineQuery, `"seq":1`, `"seq":5,"pad":"`, 1)
	q = strings.Replace(q, `"pad":"`, `"pad":"`+strings.Repeat("x", maxLine-len(q)-1)+`"`, 1)
	if len(q) != maxLine {
		t.Fatalf("built a line of %d bytes", len(q))
	}
	go func() {
		unix.Write(p.fd, []byte(q+"\n"))
	}()
	if m, raw, _ := p.line(); m["ack"] != 5.0 {
		t.Fatalf("reply %s: want the answer to seq 5", raw)
	}
}

// TestServeEndsAtReset: a worker that exits with replies unread resets
// the channel (ECONNRESET): an end like EOF, not an error.
func TestServeEndsAtReset(t *testing.T) {
	t.Parallel()
	parent, child, err := NewChannel()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), parent, Handler{}) }()
	cfd := int(child.Fd())
	if _, err := unix.Write(cfd, []byte(lineQuery+"\n")); err != nil {
		t.Fatal(err)
	}
	// Wait, bounded, for the reply to sit unread in the worker's end.
	deadline := time.Now().Add(waitLimit)
	for {
		n, err := unix.IoctlGetInt(cfd, unix.SIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reply within the wait limit")
		}
		runtime.Gosched()
	}
	child.Close()
	serveEndsClean(t, done, "a reset")
}

// serveEndsClean waits (within waitLimit) for the Serve whose result done
// carries to end at what, with no error.
func serveEndsClean(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve at %s = %v, want nil", what, err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Serve did not end at %s", what)
	}
}
