package e2e

import (
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/httpload"
)

// Readiness that tells the truth (issue 16): a server that does not take
// connections from the socket gm2-init passed is never "ready", and the log
// says what is wrong and how to fix it for the servers we know.

// waitReadyz polls /readyz (each probe is when gm2-init looks at the accept
// queues) until it answers want, bounded.
func waitReadyz(t *testing.T, health string, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body, err := httpGet(health, "/readyz")
		if err == nil && code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer %d within %v (last: %d %q %v)", want, within, code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPumaWithoutActivatedSocketsIsNotReady: puma without
// --bind-to-activated-sockets=only closes the passed socket and binds :9292
// itself, then says READY=1. gm2-init does not believe it: the worker holds
// none of the passed sockets, /readyz fails, and the log names the port and
// the flag.
func TestPumaWithoutActivatedSocketsIsNotReady(t *testing.T) {
	t.Parallel()
	requireTool(t, "puma", "puma ruby-sd-notify")
	dir, err := filepath.Abs(filepath.Join("..", "e2e", "testdata", "recipes", "rack"))
	if err != nil {
		t.Fatal(err)
	}
	in := startInitIn(t, dir, nil, "--health-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0", "-i", "1",
		"--wait-ready", "--queue-timeout", "500ms", "--", "puma", "config.ru")
	in.AllowUncleanStops()
	health := in.HealthAddr()
	l, _ := in.WaitLog(30*time.Second, 0, anyMessage, func(l logLine) bool {
		return l.Str("server") == "puma" && strings.Contains(l.Msg(), "--bind-to-activated-sockets=only")
	})
	if !strings.Contains(l.Msg(), "9292") || l.Str("level") != "warn" {
		t.Errorf("warning %v", l)
	}
	waitReadyz(t, health, http.StatusServiceUnavailable, 5*time.Second)
	if in.CountLog("worker ready") != 0 {
		t.Error("a worker that holds no passed socket was called ready")
	}
}

// TestGunicornBehindANonExecWrapper: a wrapper that does not exec gives
// gunicorn the wrong LISTEN_PID; it ignores the passed socket and serves on
// its own address (127.0.0.1:8000 by default; here a free port, through
// GUNICORN_CMD_ARGS, so that parallel tests cannot clash), while the wrapper
// still holds the socket. gm2-init warns
// with the port and the fix, and /readyz fails once connections wait in the
// socket's accept queue longer than --queue-timeout.
func TestGunicornBehindANonExecWrapper(t *testing.T) {
	t.Parallel()
	requireTool(t, "gunicorn", "gunicorn python3-gunicorn")
	dir, err := filepath.Abs(filepath.Join("..", "e2e", "testdata", "recipes", "wsgi"))
	if err != nil {
		t.Fatal(err)
	}
	own := "127.0.0.1:" + strconv.Itoa(freePort(t))
	in := startInitIn(t, dir, []string{"GUNICORN_CMD_ARGS=--bind " + own}, "--health-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0", "-i", "1",
		"--wait-ready", "--queue-timeout", "500ms", "--", "sh", "-c", "gunicorn app:app; exit $?")
	in.AllowUncleanStops()
	addr, health := in.Addr(""), in.HealthAddr()
	l, _ := in.WaitLog(30*time.Second, 0, anyMessage, func(l logLine) bool { return l.Str("server") == "gunicorn" })
	for _, want := range []string{own, "did not exec"} {
		if !strings.Contains(l.Msg(), want) {
			t.Errorf("warning %q lacks %q", l.Msg(), want)
		}
	}
	waitReadyz(t, health, http.StatusOK, 10*time.Second) // it holds the socket: ready by its word
	// Clients of the passed socket wait: nobody accepts them.
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	body := waitReadyz(t, health, http.StatusServiceUnavailable, 5*time.Second)
	if !strings.Contains(body, "listener-queue") {
		t.Errorf("/readyz body %q", body)
	}
}

// TestBusyHealthyAppStaysReady: a healthy app under a load that keeps its
// accept queue busy (more clients than it answers at once, a new connection
// per request) is never reported stuck: its queue drains.
func TestBusyHealthyAppStaysReady(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--queue-timeout", "300ms", "--", bins.worker)...)
	addr, health := in.Addr(""), in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	l := httpload.Start(addr, httpload.Options{Clients: 64, Limit: 20 * time.Second})
	if !l.WaitRequests(500, 20*time.Second) {
		t.Fatal("the load did not get going")
	}
	for i := 0; i < 30; i++ { // 3 s of probes, 10 × the threshold
		code, body, err := httpGet(health, "/readyz")
		if err != nil || code != http.StatusOK {
			t.Fatalf("probe %d under load: %d %q %v", i, code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ok, failed, errs := l.Stop().Sums(); failed > 0 {
		t.Errorf("%d of %d requests failed: %v", failed, ok+failed, errs)
	}
}

// TestSlowCrashLoopErrors: a worker that dies 3 s after it starts, well
// after --min-uptime made it ready, is a crash loop all the same: it had not
// been ready for the stable period. The slot errors after --max-restarts
// and gm2-init, with every slot errored, exits 1.
func TestSlowCrashLoopErrors(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_DIE_AFTER=3s", "TW_NO_READY=1"}, baseArgs("-i", "1", "--min-uptime", "1s", "--max-restarts", "2", "--", bins.worker)...)
	if code := in.Wait(60 * time.Second); code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	if in.CountLog("worker keeps crashing on start; slot errored and not restarted") != 1 {
		t.Error("no errored line")
	}
	if n := in.CountLog("worker ready"); n != 3 {
		t.Errorf("%d ready lines, want 3 (each worker was ready by --min-uptime before it died)", n)
	}
}
