package drain

import (
	"bufio"
	"context"
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

	"github.com/gm2-init/gm2-init/internal/httpload"
)

// wait bounds every wait of these tests; none of them waits on a timer
// otherwise.
const wait = 10 * time.Second

// hookListener reports when its Close is called and can hold back the
// connections it accepted until the test lets them go.
type hookListener struct {
	net.Listener
	closed    chan struct{}
	closeOnce sync.Once

	holdFirst bool
	accepted  chan struct{} // closed when the first connection is held
	release   chan struct{} // closed by the test to hand it to Serve
	n         atomic.Int32
}

func newHookListener(t *testing.T) *hookListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &hookListener{
		Listener: ln,
		closed:   make(chan struct{}),
		accepted: make(chan struct{}),
		release:  make(chan struct{}),
	}
}

func (l *hookListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.holdFirst && l.n.Add(1) == 1 {
		close(l.accepted)
		<-l.release
	}
	return c, err
}

func (l *hookListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out after %v waiting for %s", wait, what)
	}
	var zero T
	return zero
}

// served runs s.Serve(ln) and returns the channel its result arrives on.
func served(s *Server, ln net.Listener) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Serve(ln) }()
	return ch
}

func drained(s *Server, ctx context.Context) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Drain(ctx) }()
	return ch
}

// rawGet writes one HTTP/1.1 GET on c and reads the answer.
func rawGet(c net.Conn) (*http.Response, string, error) {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil, "", fmt.Errorf("write request: %w", err)
	}
	return readAnswer(c)
}

func readAnswer(c net.Conn) (*http.Response, string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func hello(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }

func TestDrainFinishesTheRequestInFlight(t *testing.T) {
	ln := newHookListener(t)
	inHandler := make(chan struct{})
	finish := make(chan struct{})
	s := New(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-finish
		io.WriteString(w, "late")
	})})
	serveErr := served(s, ln)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answer := make(chan string, 1)
	go func() {
		resp, body, err := rawGet(c)
		if err != nil {
			answer <- err.Error()
			return
		}
		answer <- fmt.Sprintf("%d %s close=%v", resp.StatusCode, body, resp.Close)
	}()
	recv(t, inHandler, "the request to reach the handler")

	drainErr := drained(s, context.Background())
	recv(t, ln.closed, "Drain to close the listener")
	select {
	case err := <-drainErr:
		t.Fatalf("Drain returned (%v) while a request was in its handler", err)
	default:
	}
	close(finish)
	if got := recv(t, answer, "the answer"); got != "200 late close=true" {
		t.Errorf("answer: %q, want %q", got, "200 late close=true")
	}
	if err := recv(t, drainErr, "Drain"); err != nil {
		t.Errorf("Drain: %v", err)
	}
	if err := recv(t, serveErr, "Serve"); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// A client that connected but has not sent its request yet is answered: it
// was accepted, so no other worker will ever see it.
func TestDrainAnswersAnAcceptedConnectionBeforeItsRequest(t *testing.T) {
	ln := newHookListener(t)
	registered := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(hello)}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			registered <- struct{}{}
		}
	}
	s := New(srv)
	serveErr := served(s, ln)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recv(t, registered, "the connection to be registered (and the chained hook to run)")
	drainErr := drained(s, context.Background())
	recv(t, ln.closed, "Drain to close the listener")

	resp, body, err := rawGet(c)
	if err != nil {
		t.Fatalf("a connection accepted before the drain got no answer: %v", err)
	}
	if resp.StatusCode != 200 || body != "hello" || !resp.Close {
		t.Errorf("answer %d %q close=%v, want 200 \"hello\" close=true", resp.StatusCode, body, resp.Close)
	}
	if err := recv(t, drainErr, "Drain"); err != nil {
		t.Errorf("Drain: %v", err)
	}
	if err := recv(t, serveErr, "Serve"); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// The race the first version lost: Accept has returned a connection but
// Serve has not registered it (ConnState StateNew) when the drain begins.
// The listener hands the connection to Serve only after Drain has closed
// it; the client's request is already in the socket. It must be answered.
func TestDrainAnswersAConnectionAcceptedButNotYetRegistered(t *testing.T) {
	ln := newHookListener(t)
	ln.holdFirst = true
	s := New(&http.Server{Handler: http.HandlerFunc(hello)})
	serveErr := served(s, ln)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	recv(t, ln.accepted, "the listener to accept the connection")

	drainErr := drained(s, context.Background())
	recv(t, ln.closed, "Drain to close the listener")
	close(ln.release)

	resp, body, err := readAnswer(c)
	if err != nil {
		t.Fatalf("a connection accepted just before the drain got no answer: %v", err)
	}
	if resp.StatusCode != 200 || body != "hello" {
		t.Errorf("answer %d %q, want 200 \"hello\"", resp.StatusCode, body)
	}
	if err := recv(t, drainErr, "Drain"); err != nil {
		t.Errorf("Drain: %v", err)
	}
	if err := recv(t, serveErr, "Serve"); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestDrainEndsWhenTheContextDoes(t *testing.T) {
	ln := newHookListener(t)
	inHandler := make(chan struct{})
	s := New(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-r.Context().Done() // never answers on its own
	})})
	serveErr := served(s, ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answer := make(chan error, 1)
	go func() { _, _, err := rawGet(c); answer <- err }()
	recv(t, inHandler, "the request to reach the handler")

	ctx, cancel := context.WithCancel(context.Background())
	drainErr := drained(s, ctx)
	recv(t, ln.closed, "Drain to close the listener")
	cancel()
	if err := recv(t, drainErr, "Drain"); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain: %v, want %v", err, context.Canceled)
	}
	if err := recv(t, answer, "the client to see its connection closed"); err == nil {
		t.Error("the stuck request got an answer; its connection should have been closed")
	}
	if err := recv(t, serveErr, "Serve"); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// A stop signal that arrives while the app is still starting: Drain waits
// for Serve, then drains it at once.
func TestDrainBeforeServe(t *testing.T) {
	ln := newHookListener(t)
	s := New(&http.Server{Handler: http.HandlerFunc(hello)})
	drainErr := drained(s, context.Background())
	serveErr := served(s, ln)
	if err := recv(t, drainErr, "Drain"); err != nil {
		t.Errorf("Drain: %v", err)
	}
	if err := recv(t, serveErr, "Serve"); err != nil {
		t.Errorf("Serve: %v", err)
	}
	select {
	case <-ln.closed:
	default:
		t.Error("the listener is still open after the drain")
	}
}

func TestDrainWithoutServeEndsWithTheContext(t *testing.T) {
	s := New(&http.Server{Handler: http.HandlerFunc(hello)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Drain(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain: %v, want %v", err, context.Canceled)
	}
}

// failingListener fails Accept with a permanent error.
type failingListener struct{ net.Listener }

var errBroken = errors.New("listener broken")

func (failingListener) Accept() (net.Conn, error) { return nil, errBroken }

func TestServeReturnsARealError(t *testing.T) {
	ln := newHookListener(t)
	s := New(&http.Server{Handler: http.HandlerFunc(hello)})
	if err := s.Serve(failingListener{ln}); !errors.Is(err, errBroken) {
		t.Errorf("Serve: %v, want %v", err, errBroken)
	}
	if err := s.Serve(ln); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Serve: %v, want an error", err)
	}
}

// sharedSocket is what gm2-init gives its workers: one listening socket that
// stays open in the parent, and a descriptor of it per worker.
type sharedSocket struct {
	t    *testing.T
	ln   *net.TCPListener
	addr string
}

func newSharedSocket(t *testing.T) *sharedSocket {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &sharedSocket{t: t, ln: ln, addr: ln.Addr().String()}
}

// listener returns a new descriptor of the shared socket, as a worker gets
// fd 3.
func (s *sharedSocket) listener() net.Listener {
	s.t.Helper()
	f, err := s.ln.File()
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		s.t.Fatal(err)
	}
	return ln
}

// worker is one in-process server on the shared socket.
type worker struct {
	srv      *Server
	serveErr <-chan error
	first    chan struct{} // closed after its first answer
	once     sync.Once
}

func startWorker(sock *sharedSocket, id int) *worker {
	w := &worker{first: make(chan struct{})}
	body := fmt.Sprintf("worker %d", id)
	w.srv = New(&http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			io.WriteString(rw, body)
			w.once.Do(func() { close(w.first) })
		}),
		ReadHeaderTimeout: wait,
	})
	w.serveErr = served(w.srv, sock.listener())
	return w
}

// The promise the README makes: a worker that drains on a shared socket
// under load returns no error and fails no request, every time. Two
// workers serve; each round starts a new one and drains the oldest after
// it has answered at least one request — a rolling reload, in process.
func TestThousandGracefulStopsUnderLoad(t *testing.T) {
	stops := 1000
	if testing.Short() {
		stops = 100
	}
	sock := newSharedSocket(t)
	ld := httpload.Start(sock.addr, httpload.Options{Clients: 8, Limit: 5 * time.Minute, Timeout: wait})
	defer ld.Stop()

	workers := []*worker{startWorker(sock, 0), startWorker(sock, 1)}
	for i := 0; i < stops; i++ {
		old := workers[0]
		workers = append(workers[1:], startWorker(sock, i+2))
		select {
		case <-old.first:
		case <-time.After(wait):
			t.Fatalf("stop %d: the worker to stop never got a request", i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := old.srv.Drain(ctx)
		cancel()
		if err != nil {
			t.Fatalf("stop %d: Drain: %v", i, err)
		}
		if err := recv(t, old.serveErr, "Serve to return"); err != nil {
			t.Fatalf("stop %d: Serve: %v", i, err)
		}
	}
	ok, failed, errs := ld.Stop().Sums()
	for _, w := range workers {
		if err := w.srv.Drain(context.Background()); err != nil {
			t.Errorf("last workers: Drain: %v", err)
		}
	}
	t.Logf("%d graceful stops, %d requests answered, %d failed", stops, ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed during %d graceful stops: %v", failed, stops, errs)
	}
	if ok < int64(stops) {
		t.Fatalf("only %d requests answered during %d stops: the load did not run", ok, stops)
	}
}
