package httpload

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server answers with body() and counts the connections it accepted.
func server(t *testing.T, body func() (int, string)) (addr string, conns *atomic.Int64) {
	conns = &atomic.Int64{}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, b := body()
		w.WriteHeader(code)
		w.Write([]byte(b))
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), conns
}

func TestBothModesCountAndStopIsFinal(t *testing.T) {
	addr, conns := server(t, func() (int, string) { return 200, "42" })
	l := Start(addr, Options{Clients: 4, Limit: time.Minute, PIDBodies: true})
	if !l.WaitRequests(50, 10*time.Second) {
		t.Fatalf("no traffic: %+v", l.Counts())
	}
	if !l.WaitAnswers(42, 100, 10*time.Second) {
		t.Fatalf("pid 42 answered %v", l.AnsweredBy())
	}
	r := l.Stop()
	if r.OK[NewConnection] < 50 || r.OK[KeepAlive] < 50 || r.Failed != [2]int64{} {
		t.Fatalf("result %+v: want ≥ 50 per mode, no failure", r)
	}
	// Two keep-alive clients hold two connections; each request of the
	// other two opens one.
	if n := conns.Load(); n < r.OK[NewConnection] || n > r.OK[NewConnection]+2+2 {
		t.Fatalf("%d connections for %+v", n, r)
	}
	if again := l.Stop(); again.OK != r.OK {
		t.Fatalf("Stop again: %+v, first %+v", again, r)
	}
	if by := l.AnsweredBy(); len(by) != 1 || by[42] != r.OK[0]+r.OK[1] {
		t.Fatalf("answered by %v, want all by 42", by)
	}
}

func TestFailuresAreCountedWithTheirReason(t *testing.T) {
	var n atomic.Int64
	addr, _ := server(t, func() (int, string) {
		if n.Add(1)%2 == 0 {
			return 503, "busy"
		}
		return 200, "not a pid"
	})
	l := Start(addr, Options{Clients: 2, Limit: time.Minute, PIDBodies: true})
	if !wait(l.when(func() bool { return l.res.Failed[0]+l.res.Failed[1] >= 20 }), 10*time.Second) {
		t.Fatalf("failures not counted: %+v", l.Counts())
	}
	ok, failed, errs := l.Stop().Sums()
	if ok != 0 || failed < 20 || len(errs) != 10 {
		t.Fatalf("ok %d failed %d errs %q", ok, failed, errs)
	}
	all := strings.Join(errs, "\n")
	if !strings.Contains(all, "status 503") || !strings.Contains(all, `body "not a pid" is not a pid`) {
		t.Fatalf("reasons: %s", all)
	}
}

func TestLimitStopsTheLoad(t *testing.T) {
	addr, _ := server(t, func() (int, string) { return 200, "ok" })
	l := Start(addr, Options{Clients: 2, Limit: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	if !wait(done, 10*time.Second) {
		t.Fatal("the load outlived its limit")
	}
	if l.WaitRequests(1, 20*time.Millisecond) {
		t.Fatal("a stopped load made requests")
	}
}
