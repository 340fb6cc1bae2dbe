package health

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// burstOptions keep production's rules with timings that hold on a loaded
// machine under the race detector, where a test client can be descheduled
// for a hundred milliseconds between its connect and its write: a client
// that slow would be, rightly, a silent connection, and the tests count
// probes that were lost although they sent their request in time.
func burstOptions() options {
	o := testOptions()
	o.readHeaderTimeout = 5 * time.Second
	o.idleGrace = time.Second
	return o
}

// probeOnce is one kubelet-style probe on a connection of its own: connect,
// send the request at once, read the answer. It returns the status code, or
// an error when the connection ended without one (a lost probe). The
// deadline is generous: a probe that waits is not lost, and these tests count
// losses, not latency (bench/ measures that).
func probeOnce(addr, path string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.31\r\n\r\n")); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// burst runs n probes at once (each on its own connection, all released
// together) and returns the failures, described.
func burst(addr string, n int) []string {
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lost []string
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, err := probeOnce(addr, "/livez")
			if err != nil || code != 200 {
				mu.Lock()
				lost = append(lost, fmt.Sprintf("probe %d: %d %v", i, code, err))
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	sort.Strings(lost)
	return lost
}

func reportLost(t *testing.T, what string, n int, lost []string) {
	t.Helper()
	if len(lost) > 0 {
		show := lost
		if len(show) > 5 {
			show = show[:5]
		}
		t.Errorf("%s: %d of %d probes lost; first: %s", what, len(lost), n, strings.Join(show, "; "))
	}
}

// TestBurstOfProbesAllAnswered is issue 12's first measurement: 100
// simultaneous GET /livez, more than the server's connection limit. Every
// one sends a complete request, so every one must be answered; some wait in
// the listen backlog for a slot, none is closed.
func TestBurstOfProbesAllAnswered(t *testing.T) {
	s, _, logs := startServer(t, newFakeSource(healthySnapshot()), burstOptions())
	addr := s.Addr().String()
	for round := range 3 {
		reportLost(t, fmt.Sprintf("round %d", round+1), 100, burst(addr, 100))
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}

// idleClients holds connections to addr that never send a byte. With
// reconnect, each one opens a new connection as soon as the server closes
// its own, as a misbehaving client (or an attacker) would. stop closes them
// all and waits for the goroutines.
type idleClients struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	opened   int
	accepted chan struct{} // one token per connection opened
}

func startIdleClients(t *testing.T, addr string, n int, reconnect bool) *idleClients {
	t.Helper()
	ic := &idleClients{stop: make(chan struct{}), conns: map[net.Conn]bool{}, accepted: make(chan struct{}, 1<<16)}
	for range n {
		ic.wg.Add(1)
		go func() {
			defer ic.wg.Done()
			for {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					select {
					case <-ic.stop:
						return
					default:
					}
					continue
				}
				ic.mu.Lock()
				ic.conns[c] = true
				ic.opened++
				ic.mu.Unlock()
				select {
				case ic.accepted <- struct{}{}:
				default:
				}
				// Wait until the server closes it (or the test ends).
				done := make(chan struct{})
				go func() {
					_, _ = c.Read(make([]byte, 1))
					close(done)
				}()
				select {
				case <-done:
				case <-ic.stop:
				}
				c.Close()
				<-done
				ic.mu.Lock()
				delete(ic.conns, c)
				ic.mu.Unlock()
				if !reconnect {
					<-ic.stop
					return
				}
				select {
				case <-ic.stop:
					return
				default:
				}
			}
		}()
	}
	t.Cleanup(ic.close)
	// Every client has connected once before the test goes on.
	for range n {
		select {
		case <-ic.accepted:
		case <-time.After(10 * time.Second):
			t.Fatalf("idle clients not connected within 10s")
		}
	}
	return ic
}

func (ic *idleClients) close() {
	select {
	case <-ic.stop:
		return
	default:
	}
	close(ic.stop)
	ic.wg.Wait()
}

func (ic *idleClients) count() (open, opened int) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return len(ic.conns), ic.opened
}

// TestProbesBesideIdleConnections: 200 connections that send nothing are
// open (more than the connection limit), then 100 probes arrive at once.
// The idle ones may be closed; no probe may be.
func TestProbesBesideIdleConnections(t *testing.T) {
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), burstOptions())
	addr := s.Addr().String()
	startIdleClients(t, addr, 200, false)
	reportLost(t, "beside 200 idle connections", 100, burst(addr, 100))
	// And one at a time, as the kubelet does.
	var lost []string
	for i := range 50 {
		if code, err := probeOnce(addr, "/readyz"); err != nil || code != 200 {
			lost = append(lost, fmt.Sprintf("probe %d: %d %v", i, code, err))
		}
	}
	reportLost(t, "one at a time beside 200 idle connections", 50, lost)
}

// probeFromKubelets probes addr from kubelets goroutines, probes times each,
// one after the other, and returns the failures.
func probeFromKubelets(addr string, kubelets, probes int) []string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lost []string
	for k := range kubelets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range probes {
				if code, err := probeOnce(addr, "/livez"); err != nil || code != 200 {
					mu.Lock()
					lost = append(lost, fmt.Sprintf("kubelet %d probe %d: %d %v", k, i, code, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return lost
}

// TestProbesBesideReconnectingIdleConnections is issue 12's third
// measurement: 200 clients whose idle connection is reopened at once
// whenever the server closes it (here at the read-header timeout, short for
// the churn), while 10 kubelets probe. No probe may be lost.
func TestProbesBesideReconnectingIdleConnections(t *testing.T) {
	opts := burstOptions()
	opts.readHeaderTimeout = time.Second
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), opts)
	addr := s.Addr().String()
	ic := startIdleClients(t, addr, 200, true)
	// Until every idle client has been cut off and has come back once.
	var lost []string
	rounds := 0
	for deadline := time.Now().Add(20 * time.Second); ; {
		lost = append(lost, probeFromKubelets(addr, 10, 5)...)
		rounds++
		if _, opened := ic.count(); opened >= 400 || time.Now().After(deadline) {
			break
		}
	}
	_, opened := ic.count()
	ic.close()
	reportLost(t, "beside 200 reconnecting idle connections", rounds*50, lost)
	if opened < 400 {
		t.Errorf("%d idle connections opened: the idle clients were not cut off and reconnected", opened)
	}
}

// TestProbesBesideMoreIdleConnectionsThanTheLobby: more reconnecting idle
// clients than the lobby holds, so that the server keeps evicting the one
// silent longest; no probe may be lost.
func TestProbesBesideMoreIdleConnectionsThanTheLobby(t *testing.T) {
	s, _, _ := startServer(t, newFakeSource(healthySnapshot()), burstOptions())
	addr := s.Addr().String()
	ic := startIdleClients(t, addr, maxWaiting+100, true)
	lost := probeFromKubelets(addr, 10, 3)
	_, opened := ic.count()
	ic.close()
	reportLost(t, fmt.Sprintf("beside %d reconnecting idle connections", maxWaiting+100), 30, lost)
	if opened <= maxWaiting+100 {
		t.Errorf("no idle connection was evicted (%d opened): the test did not exercise eviction", opened)
	}
}

// TestHeadReaderReadsPastDeadline: a request that arrived before its
// goroutine ran is read even though the read deadline has passed meanwhile
// (Go's poller would fail the read without looking); with nothing there,
// the deadline holds.
func TestHeadReaderReadsPastDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	s := &Server{}
	r := headReader{c: server, st: &connState{}, s: s}

	_ = server.SetReadDeadline(time.Unix(1, 0))
	buf := make([]byte, 64)
	if n, err := r.Read(buf); n != 0 || !isTimeout(err) {
		t.Fatalf("nothing sent: %d, %v; want the deadline's error", n, err)
	}
	const req = "GET /livez HTTP/1.0\r\n\r\n"
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !hasPending(server); {
		if time.Now().After(deadline) {
			t.Fatal("request not received within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	head, err := readHead(r, make([]byte, maxHeaderBytes))
	if err != nil || string(head) != req {
		t.Fatalf("read %q, %v; want the request", head, err)
	}
}
