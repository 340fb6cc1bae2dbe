package e2e

// End-to-end tests of --max-memory-restart (issue 19): a worker whose
// resident memory grows past the limit is replaced the reload way under
// load, and a limit below what the app needs to start does not make
// gm2-init replace workers in a loop.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/httpload"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

const (
	memoryOverMsg     = "worker over --max-memory-restart; replacing it (new worker first, then the old one stops)"
	memoryBaselineMsg = "worker is over --max-memory-restart right after it starts: the limit is below the app's baseline; raise it"
)

// checkPromtool runs `promtool check metrics` on an exposition: an error
// when it complains; without promtool, a failure under CI=true (where
// scripts/test.sh installs it) and a note otherwise.
func checkPromtool(t *testing.T, exposition string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testtool.InCI() {
			t.Errorf("promtool is not on PATH (Debian package prometheus), and CI=true: %v", err)
		} else {
			t.Logf("promtool is not on PATH (Debian package prometheus): exposition not checked by it")
		}
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// memoryStatus reads each slot's pid and the memory restarts counter from
// /status.
func memoryStatus(t *testing.T, health string) (pids map[int]int, memoryRestarts int) {
	t.Helper()
	code, body, err := httpGet(health, "/status")
	if err != nil || code != 200 {
		t.Fatalf("/status: %d %v %s", code, err, body)
	}
	var st struct {
		Slots []struct {
			Instance int `json:"instance"`
			Pid      int `json:"pid"`
		} `json:"slots"`
		Counters struct {
			MemoryRestarts *int `json:"memory_restarts_total"`
		} `json:"counters"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if st.Counters.MemoryRestarts == nil {
		t.Fatalf("/status has no counters.memory_restarts_total: %s", body)
	}
	pids = map[int]int{}
	for _, sl := range st.Slots {
		pids[sl.Instance] = sl.Pid
	}
	return pids, *st.Counters.MemoryRestarts
}

// TestMemoryRestartUnderLoadFailsNoRequest: the worker of slot 1 leaks
// 16 MiB a second (the first one only: its replacement does not) under
// continuous load on 127.0.0.1, half keep-alive, half a new connection per
// request. Past --max-memory-restart 64M it is replaced the reload way: a
// new worker in slot 1 first, ready, then the old one gets the stop signal
// and drains. No request fails, slot 0 is left alone, and the replacement
// is logged with its figures and counted in /status and /metrics.
func TestMemoryRestartUnderLoadFailsNoRequest(t *testing.T) {
	t.Parallel()
	const limit = 64 << 20
	once := filepath.Join(t.TempDir(), "grown")
	in := startInit(t, []string{"TW_GROW_MB=16", "TW_GROW_SLOT=1", "TW_GROW_ONCE=" + once},
		baseArgs("-i", "2", "--wait-ready", "--kill-timeout", "5s",
			"--max-memory-restart", "64M", "--memory-check-interval", "1s", "--", bins.worker)...)
	addr, health := in.Addr(""), in.HealthAddr()
	in.WaitReady(2, 20*time.Second)
	before, n := memoryStatus(t, health)
	if n != 0 || before[0] == 0 || before[1] == 0 {
		t.Fatalf("before: pids %v, memory restarts %d", before, n)
	}

	ld := httpload.Start(addr, httpload.Options{Clients: 8, Limit: 2 * time.Minute})
	if !ld.WaitRequests(50, 10*time.Second) {
		t.Fatal("the load generator gets no answers")
	}
	over, pos := in.WaitLog(60*time.Second, 0, memoryOverMsg, nil)
	if over.Int("slot") != 1 || over.Int("pid") != before[1] || over.Int("limit_bytes") != limit || over.Int("rss_bytes") <= limit {
		t.Fatalf("replacement line %v: want slot 1, pid %d, limit_bytes %d and rss_bytes above it", over, before[1], limit)
	}
	started, _ := in.WaitLog(10*time.Second, pos, "worker started", func(l logLine) bool { return l.Int("slot") == 1 })
	newPid := started.Int("pid")
	ready, readyAt := in.WaitLog(20*time.Second, pos, "worker ready", func(l logLine) bool { return l.Int("pid") == newPid })
	if ready.Int("slot") != 1 {
		t.Fatalf("new worker ready in slot %d, want 1", ready.Int("slot"))
	}
	// The old worker is stopped only after the new one is ready.
	stopping, stopAt := in.WaitLog(10*time.Second, pos, "stopping worker", func(l logLine) bool { return l.Int("pid") == before[1] })
	if stopAt < readyAt {
		t.Fatalf("old worker stopped (%v) before its replacement was ready (%v)", stopping, ready)
	}
	if why := stopping.Str("why"); why != "replaced (memory)" {
		t.Errorf("old worker stopped because %q, want \"replaced (memory)\"", why)
	}
	in.WaitLog(10*time.Second, stopAt, "worker exited", func(l logLine) bool { return l.Int("pid") == before[1] })
	if !ld.WaitRequests(100, 10*time.Second) {
		t.Fatal("no traffic after the replacement")
	}
	ok, failed, errs := ld.Stop().Sums()
	t.Logf("%d requests, %d failed, across a memory replacement (rss %s bytes over %d)", ok, failed, over.Str("rss_bytes"), limit)
	if failed != 0 {
		t.Fatalf("%d requests failed during the memory replacement: %v", failed, errs)
	}

	after, n := memoryStatus(t, health)
	if after[1] != newPid || after[0] != before[0] || n != 1 {
		t.Errorf("after: pids %v (before %v, new worker %d), memory restarts %d; want slot 1 on the new worker, slot 0 untouched, 1 restart",
			after, before, newPid, n)
	}
	for i := 0; i < 200; i++ { // the kernel spreads new connections over both workers
		if wi := getInfo(t, addr); wi.Pid == strconv.Itoa(newPid) {
			if wi.Instance != "1" {
				t.Errorf("new worker %d has GM2_INSTANCE=%q, want 1", newPid, wi.Instance)
			}
			break
		}
	}
	code, metrics, err := httpGet(health, "/metrics")
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	if !strings.Contains(metrics, "\n# TYPE gm2_memory_restarts_total counter\n") || !strings.Contains(metrics, "\ngm2_memory_restarts_total 1\n") {
		t.Errorf("/metrics lacks gm2_memory_restarts_total 1:\n%s", metrics)
	}
	checkPromtool(t, metrics)
	if c := in.CountLog(memoryOverMsg); c != 1 {
		t.Errorf("%d memory replacements logged, want 1 (the new worker does not grow)", c)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestMemoryLimitBelowBaselineBacksOff: every worker holds 48 MiB from its
// start, above --max-memory-restart 32M. gm2-init replaces it, but 2, then
// 4, then 8 check intervals apart instead of at every check, and warns once,
// at the third replacement, that the limit is below the app's baseline.
func TestMemoryLimitBelowBaselineBacksOff(t *testing.T) {
	t.Parallel()
	const limit = 32 << 20
	in := startInit(t, []string{"TW_ALLOC_MB=48"},
		baseArgs("-i", "1", "--wait-ready", "--max-memory-restart", "32M", "--memory-check-interval", "1s", "--", bins.worker)...)
	in.WaitReady(1, 20*time.Second)
	var at []time.Time // when gm2-init logged each replacement (its own clock)
	pos := 0
	for i := 0; i < 4; i++ {
		var l logLine
		l, pos = in.WaitLog(60*time.Second, pos, memoryOverMsg, nil)
		if l.Int("rss_bytes") <= limit || l.Int("limit_bytes") != limit {
			t.Fatalf("replacement %d: %v", i+1, l)
		}
		at = append(at, timeOf(t, l))
	}
	// Replacements k and k+1 are at least 2^k intervals (of 1 s) apart;
	// 1 s of slack for a late check or log line. Without
	// backoff they would come every second or two.
	for k := 1; k < len(at); k++ {
		if gap, least := at[k].Sub(at[k-1]), time.Duration(1<<k)*time.Second-time.Second; gap < least {
			t.Errorf("replacements %d and %d are %v apart, want at least %v (backoff)", k, k+1, gap, least)
		}
	}
	lines := in.Lines()
	var overIdx, warnIdx []int
	for i, l := range lines {
		switch l.Msg() {
		case memoryOverMsg:
			overIdx = append(overIdx, i)
		case memoryBaselineMsg:
			warnIdx = append(warnIdx, i)
			if l.Int("rss_bytes") <= limit || l.Int("limit_bytes") != limit {
				t.Errorf("warning %v", l)
			}
		}
	}
	if len(warnIdx) != 1 || len(overIdx) < 4 || warnIdx[0] < overIdx[1] || warnIdx[0] > overIdx[2] {
		t.Errorf("baseline warnings at lines %v, replacements at %v: want one warning, with the third replacement", warnIdx, overIdx)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestReadmeMaxMemoryRestartCommand runs the command of the README's
// --max-memory-restart section exactly as written — gm2-init from PATH,
// `node server.js` in the working directory — with the environment only
// choosing what the command leaves open: the app's PORT, a free health
// address, and a 1 s check interval instead of 30 s. server.js is a Node
// app whose first worker of slot 1 leaks 40 MiB a second: past 300M it is
// replaced by a new worker in slot 1, which is ready before the old one is
// stopped, and the replacement is counted.
func TestReadmeMaxMemoryRestartCommand(t *testing.T) {
	needNode(t)
	t.Parallel()
	cmds := readmeCommands(t, "## Memory limit per worker: `--max-memory-restart`")
	const want = "gm2-init -i 2 --max-memory-restart 300M -- node server.js"
	if len(cmds) != 1 || cmds[0] != want {
		t.Fatalf("README commands %q: update this test with them", cmds)
	}
	dir := t.TempDir()
	bin := gm2InitOnPath(t)
	app, err := os.ReadFile(repoPath(t, "e2e/testdata/node/leak.js"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.js"), app, 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env := []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "GM2_HEALTH_ADDR=127.0.0.1:0", "GM2_MEMORY_CHECK_INTERVAL=1s",
		"LEAK_SLOT=1", "LEAK_MB=40", "LEAK_MAX_MB=400", "LEAK_ONCE=" + filepath.Join(dir, "leaked")}
	argv := append(namespaceCmd(t), "sh", "-c", `cd "$1" && PATH="$2:$PATH" && exec `+want, "sh", dir, bin)
	in := startInitArgv(t, env, argv)
	health := in.HealthAddr()
	in.WaitReady(2, nodeTimeout)
	before, _ := memoryStatus(t, health)

	over, pos := in.WaitLog(nodeTimeout, 0, memoryOverMsg, nil)
	if over.Int("slot") != 1 || over.Int("pid") != before[1] || over.Int("limit_bytes") != 300<<20 || over.Int("rss_bytes") <= 300<<20 {
		t.Fatalf("replacement line %v: want slot 1, pid %d, limit_bytes %d and rss_bytes above it", over, before[1], 300<<20)
	}
	started, _ := in.WaitLog(10*time.Second, pos, "worker started", func(l logLine) bool { return l.Int("slot") == 1 })
	_, readyAt := in.WaitLog(nodeTimeout, pos, "worker ready", func(l logLine) bool { return l.Int("pid") == started.Int("pid") })
	stopping, stopAt := in.WaitLog(10*time.Second, pos, "stopping worker", func(l logLine) bool { return l.Int("pid") == before[1] })
	if stopAt < readyAt || stopping.Str("why") != "replaced (memory)" {
		t.Fatalf("old worker stopped (%v) before its replacement was ready, or for another reason", stopping)
	}
	in.WaitLog(nodeTimeout, stopAt, "worker exited", func(l logLine) bool { return l.Int("pid") == before[1] })
	after, n := memoryStatus(t, health)
	if after[1] != started.Int("pid") || after[0] != before[0] || n != 1 {
		t.Errorf("after: pids %v (before %v), memory restarts %d; want slot 1 on pid %d, slot 0 untouched, 1 restart",
			after, before, n, started.Int("pid"))
	}
	if code, body, err := httpGet(addr, "/"); code != 200 || err != nil {
		t.Errorf("GET / after the replacement: %d %v %s", code, err, body)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestForkAppMemoryRestartStopsThenStarts: a fork-mode app of a process file
// (exec_mode "fork", as the example's queue worker) binds its own port, so
// a second worker next to it could not start. Past its max_memory_restart
// it is stopped first, then started again once it has exited: no worker
// starts while the old one runs, and the restart is counted once the new
// one is ready.
func TestForkAppMemoryRestartStopsThenStarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := freePort(t)
	file := filepath.Join(dir, "ecosystem.json")
	procfile := map[string]any{"apps": []map[string]any{{
		"name": "queue", "script": bins.worker, "exec_mode": "fork", "max_memory_restart": "48M", "wait_ready": true,
		"env": map[string]string{"TW_PORT": strconv.Itoa(port), "TW_GROW_MB": "16", "TW_GROW_ONCE": filepath.Join(dir, "grown")},
	}}}
	b, err := json.Marshal(procfile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	in := startInit(t, nil, "--health-addr", "127.0.0.1:0", "--memory-check-interval", "1s", "--config", file)
	health := in.HealthAddr()
	in.WaitReady(1, 20*time.Second)
	before, _ := memoryStatus(t, health)

	over, pos := in.WaitLog(60*time.Second, 0, "worker over --max-memory-restart; restarting it (fork mode: stopped, then started again)", nil)
	if over.Int("pid") != before[0] || over.Int("limit_bytes") != 48<<20 || over.Int("rss_bytes") <= 48<<20 {
		t.Fatalf("restart line %v: want pid %d, limit_bytes %d and rss_bytes above it", over, before[0], 48<<20)
	}
	_, exitAt := in.WaitLog(20*time.Second, pos, "worker exited", func(l logLine) bool { return l.Int("pid") == before[0] })
	started, startAt := in.WaitLog(20*time.Second, pos, "worker started", nil)
	if startAt < exitAt {
		t.Fatalf("worker %d started before the old one (%d) exited", started.Int("pid"), before[0])
	}
	in.WaitLog(20*time.Second, startAt, "worker ready", func(l logLine) bool { return l.Int("pid") == started.Int("pid") })
	if n := in.CountLog("memory replacement failed before ready; the old worker keeps serving"); n != 0 {
		t.Errorf("%d failed replacements: a worker was started next to the old one", n)
	}
	// /status is answered by the supervisor's loop once the event that
	// logged "worker ready" is over: the counter is up to date.
	if after, n := memoryStatus(t, health); n != 1 || after[0] != started.Int("pid") {
		t.Errorf("after: pids %v, memory restarts %d; want pid %d and 1 restart", after, n, started.Int("pid"))
	}
	if code, body, err := httpGet("127.0.0.1:"+strconv.Itoa(port), "/"); code != 200 || err != nil {
		t.Errorf("GET / on the fork app's own port after its restart: %d %v %s", code, err, body)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}
