package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// probeLoop polls /readyz every 50 ms, as a Kubernetes readiness probe
// would (more often), until stopped or for at most limit.
type probeLoop struct {
	probes, failures atomic.Int64
	mu               sync.Mutex
	bad              []string
	stopc            chan struct{}
	done             chan struct{}
}

func startProbeLoop(health string, limit time.Duration) *probeLoop {
	p := &probeLoop{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		end := time.After(limit)
		for {
			select {
			case <-p.stopc:
				return
			case <-end:
				return
			case <-tick.C:
			}
			code, body, err := httpGet(health, "/readyz")
			p.probes.Add(1)
			if code != 200 {
				p.failures.Add(1)
				p.mu.Lock()
				p.bad = append(p.bad, fmt.Sprintf("%d %q %v", code, body, err))
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *probeLoop) stop() (probes, failures int64, bad []string) {
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes.Load(), p.failures.Load(), p.bad
}

func TestReadyzStays200DuringReloads(t *testing.T) {
	t.Parallel()
	// Every slot required: /readyz holds only if each slot's old worker
	// serves until its replacement is ready (with the default 1, the
	// other slot would cover a slot stopped first).
	in := startInit(t, nil, baseArgs("-i", "2", "--min-ready", "all", "--wait-ready", "--", bins.goapp)...)
	health := in.HealthAddr()
	in.WaitReady(2, 10*time.Second)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)
	probes := startProbeLoop(health, 2*time.Minute)
	pos := 0
	for i := 0; i < 5; i++ {
		var l logLine
		l, pos = in.reload(pos)
		if l.Str("result") != "ok" {
			t.Fatalf("reload %d: %v", i, l)
		}
		// Let a few probes land between reloads too.
		n := probes.probes.Load()
		deadline := time.Now().Add(10 * time.Second)
		for probes.probes.Load() < n+2 {
			if time.Now().After(deadline) {
				t.Fatal("the readiness probes stopped")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	n, failed, bad := probes.stop()
	t.Logf("%d probes during 5 reloads", n)
	if failed != 0 {
		t.Fatalf("/readyz failed %d of %d probes during reloads: %v", failed, n, bad)
	}
	// The probes sample; the log proves the order the 200s rely on.
	checkStoppedAfterReplacementReady(t, in.Lines(), 5*2)
}

func TestShutdownDelayFailsReadinessFirst(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--shutdown-delay", "1s", "--", bins.goapp)...)
	addr, health := in.Addr(""), in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)

	sent := time.Now()
	in.Signal(syscall.SIGTERM)
	var took time.Duration
	for {
		code, _, _ := httpGet(health, "/readyz")
		if code == 503 {
			took = time.Since(sent)
			break
		}
		if time.Since(sent) > 5*time.Second {
			t.Fatal("/readyz never turned 503 after SIGTERM")
		}
	}
	// The workers have not been told to stop yet: the app still answers,
	// and liveness holds.
	if code, body, err := httpGet(addr, "/"); code != 200 {
		t.Fatalf("app during the shutdown delay: %d %q %v", code, body, err)
	}
	if code, body, _ := httpGet(health, "/livez"); code != 200 {
		t.Fatalf("/livez during the shutdown delay: %d %q", code, body)
	}
	if in.CountLog("stopping worker") != 0 {
		t.Fatal("a worker was stopped before the shutdown delay ended")
	}
	t.Logf("/readyz 503 %v after SIGTERM", took)
	l, _ := in.WaitLog(10*time.Second, 0, "stopping worker", nil)
	if d := time.Since(sent); d < time.Second {
		t.Errorf("worker %v stopped %v after SIGTERM, before the 1s shutdown delay", l["pid"], d)
	}
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

func TestLivezFailsWhenASlotCrashLoops(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_CRASH_SLOT=1"},
		baseArgs("-i", "2", "--max-restarts", "2", "--min-uptime", "500ms", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	if code, body, _ := httpGet(health, "/livez"); code != 200 {
		t.Fatalf("/livez %d before the slot gave up: %s", code, body)
	}
	in.WaitLog(20*time.Second, 0, "worker keeps crashing on start; slot errored and not restarted", nil)
	waitHTTP(t, health, "/livez", 503, 5*time.Second)
	_, body, _ := httpGet(health, "/livez?verbose")
	if !strings.Contains(body, "[-]") || !strings.Contains(body, "1") {
		t.Errorf("/livez?verbose does not name the errored slot:\n%s", body)
	}
	// Slot 0 serves: readiness holds (min-ready 1).
	if code, body, _ := httpGet(health, "/readyz"); code != 200 {
		t.Errorf("/readyz %d with one healthy slot: %s", code, body)
	}
	st := getStatus(t, health)
	if len(st.Slots) != 2 || st.Slots[1].State != "errored" || st.Slots[0].State != "ready" {
		t.Errorf("status: %+v", st.Slots)
	}
}

// nsPid maps a host pid to its pid in the innermost PID namespace.
func nsPid(t *testing.T, host int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", host))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	t.Fatal("no NSpid line")
	return 0
}

func TestStatusAndMetricsReflectRealProcesses(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "3", "--wait-ready", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(3, 10*time.Second)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)
	var real []int
	for _, c := range in.waitChildren(3, 10*time.Second) {
		real = append(real, nsPid(t, c))
	}
	slices.Sort(real)
	st := getStatus(t, health)
	var reported []int
	for _, sl := range st.Slots {
		if sl.State != "ready" {
			t.Errorf("slot %d is %s", sl.Instance, sl.State)
		}
		reported = append(reported, sl.Pid)
	}
	slices.Sort(reported)
	if !slices.Equal(real, reported) {
		t.Fatalf("/status pids %v, processes %v", reported, real)
	}

	code, metrics, err := httpGet(health, "/metrics")
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, want := range []string{`gm2_workers{state="ready"} 3`, "process_resident_memory_bytes ", "process_cpu_seconds_total "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(metrics)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed; the exposition format is checked in package health")
	}
}

func TestHealthMethodsAndSlowClients(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "1", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)

	req, _ := http.NewRequest("HEAD", "http://"+health+"/readyz", nil)
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /readyz: %d", resp.StatusCode)
	}
	resp, err = noKeepAlive.Post("http://"+health+"/readyz", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("POST /readyz: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// A client that sends its headers a byte at a time is cut off by the
	// read-header timeout instead of pinning a connection.
	c, err := net.Dial("tcp", health)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, bufio.NewReader(c))
		closed <- err
	}()
	partial := "GET /readyz HTTP/1.1\r\nHost: x\r\n"
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-closed:
			t.Logf("slow client cut off after %v", time.Since(start))
			if code, _, _ := httpGet(health, "/livez"); code != 200 {
				t.Errorf("/livez %d after a slow client", code)
			}
			return
		case <-tick.C:
			c.Write([]byte{partial[i%len(partial)]})
			if time.Since(start) > 30*time.Second {
				t.Fatal("a client sending headers slowly kept its connection for 30s")
			}
		}
	}
}

func TestHealthcheckSubcommand(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "1", "--wait-ready", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(1, 10*time.Second)
	waitHTTP(t, health, "/readyz", 200, 5*time.Second)
	run := func(env []string, args ...string) (int, string) {
		cmd := exec.Command(bins.init, append([]string{"healthcheck"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	if code, out := run(nil, "/readyz", health); code != 0 {
		t.Errorf("healthcheck /readyz %s: %d %s", health, code, out)
	}
	if code, out := run([]string{"GM2_HEALTH_ADDR=" + health}); code != 0 {
		t.Errorf("healthcheck with GM2_HEALTH_ADDR: %d %s", code, out)
	}
	if code, out := run(nil, "/no-such-endpoint", health); code != 1 || !strings.Contains(out, "404") {
		t.Errorf("healthcheck of a missing path: %d %s", code, out)
	}
	if code, _ := run(nil, "readyz", health); code != 2 {
		t.Errorf("healthcheck with a bad PATH: %d, want 2", code)
	}
	// GM2_HEALTH_ADDR is read as the server reads it: blanks around it
	// go (they were a DNS error), off leaves nothing to check, and empty
	// is refused, as by the server (it probed :9000, then meant off).
	if code, out := run([]string{"GM2_HEALTH_ADDR= " + health + " "}); code != 0 {
		t.Errorf("healthcheck with GM2_HEALTH_ADDR in blanks: %d %s", code, out)
	}
	code, out := run([]string{"GM2_HEALTH_ADDR=off"})
	want := `gm2-init healthcheck: the health endpoints are off (GM2_HEALTH_ADDR "off"): nothing to check; give ADDR: gm2-init healthcheck [PATH [ADDR]]` + "\n"
	if code != 2 || out != want {
		t.Errorf("healthcheck with GM2_HEALTH_ADDR=off: %d %q, want 2 %q", code, out, want)
	}
	code, out = run([]string{"GM2_HEALTH_ADDR="})
	want = `gm2-init healthcheck: GM2_HEALTH_ADDR: invalid value "": ` + sockets.HealthAddrAccepted + "\n"
	if code != 2 || out != want {
		t.Errorf("healthcheck with GM2_HEALTH_ADDR empty: %d %q, want 2 %q", code, out, want)
	}
	// ADDR a bare port, as --health-addr and --listen take it.
	if _, port, err := net.SplitHostPort(health); err != nil {
		t.Error(err)
	} else if code, out := run(nil, "/readyz", port); code != 0 {
		t.Errorf("healthcheck /readyz %s: %d %s", port, code, out)
	}
}
