package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/status"
)

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ addr, path, want string }{
		{":9000", "/livez", "http://127.0.0.1:9000/livez"},
		{"0.0.0.0:9000", "/readyz", "http://127.0.0.1:9000/readyz"},
		{"[::]:9000", "/livez", "http://127.0.0.1:9000/livez"},
		{"127.0.0.1:9000", "", "http://127.0.0.1:9000/livez"},
		{"10.1.2.3:9000", "readyz?verbose", "http://10.1.2.3:9000/readyz?verbose"},
		{"[::1]:9000", "/livez", "http://[::1]:9000/livez"},
		{"localhost:9000", "/livez", "http://localhost:9000/livez"},
	} {
		got, err := checkURL(tc.addr, tc.path)
		if err != nil || got != tc.want {
			t.Errorf("checkURL(%q, %q) = %q, %v; want %q", tc.addr, tc.path, got, err, tc.want)
		}
	}
	for _, addr := range []string{"", "off", "9000", "host:", "[::1"} {
		if got, err := checkURL(addr, "/livez"); err == nil {
			t.Errorf("checkURL(%q) = %q, want an error", addr, got)
		}
	}
}

// portOf returns ":port" of a test server's address, the form --health-addr
// usually takes, so that Check's wildcard mapping is what reaches it.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ":" + port
}

func TestCheckAgainstServer(t *testing.T) {
	src := newFakeSource(healthySnapshot())
	s, _, _ := startServer(t, src, testOptions())
	addr := portOf(t, s.Addr().String())
	ctx := context.Background()

	for _, a := range []string{addr, "0.0.0.0" + addr, "[::]" + addr} {
		if err := Check(ctx, a, "/livez", 5*time.Second); err != nil {
			t.Errorf("Check(%q) on a healthy server: %v", a, err)
		}
	}
	if err := Check(ctx, addr, "/readyz", 5*time.Second); err != nil {
		t.Errorf("Check /readyz on a ready server: %v", err)
	}

	errored := healthySnapshot()
	errored.Slots[0].State = status.Errored
	src.snap.Store(errored)
	err := Check(ctx, addr, "/livez", 5*time.Second)
	if err == nil {
		t.Fatal("Check on an errored server succeeded")
	}
	for _, want := range []string{"503 Service Unavailable", "[-]slots failed: slot(s) 0 errored"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("Check error spans lines: %q", err)
	}
}

func TestCheckStatusCodes(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/broken", http.StatusFound)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database down\nsecond line", http.StatusInternalServerError)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := portOf(t, srv.Listener.Addr().String())
	ctx := context.Background()

	// 3xx counts as success, as for the kubelet, and is not followed
	// (following it here would reach the 500).
	if err := Check(ctx, addr, "/redirect", 5*time.Second); err != nil {
		t.Errorf("Check on a 302: %v", err)
	}
	if err := Check(ctx, addr, "/nocontent", 5*time.Second); err != nil {
		t.Errorf("Check on a 204: %v", err)
	}
	err := Check(ctx, addr, "/broken", 5*time.Second)
	if err == nil || !strings.HasSuffix(err.Error(), ": 500 Internal Server Error: database down") {
		t.Errorf("Check on a 500: %v", err)
	}
	err = Check(ctx, addr, "/empty", 5*time.Second)
	if err == nil || !strings.HasSuffix(err.Error(), ": 503 Service Unavailable") {
		t.Errorf("Check on an empty 503: %v", err)
	}
}

func TestCheckTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release) // runs before srv.Close, which waits for the handler

	start := time.Now()
	err := Check(context.Background(), portOf(t, srv.Listener.Addr().String()), "/livez", 100*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check on a hung server: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Check took %v with a 100ms timeout", d)
	}
}

func TestCheckConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := portOf(t, ln.Addr().String())
	ln.Close()
	if err := Check(context.Background(), addr, "/livez", time.Second); err == nil ||
		!strings.Contains(err.Error(), "health check http://127.0.0.1"+addr+"/livez") {
		t.Errorf("Check on a closed port: %v", err)
	}
}
