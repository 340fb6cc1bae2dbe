package e2e

// End-to-end tests of issue 7: unmodified Node apps (PM2's cluster mode
// promise) run by the real gm2-init as PID 1. The apps call listen(PORT)
// or bind(PORT) as they would under PM2; the Node preload that gm2-init
// adds to NODE_OPTIONS redirects them to the sockets gm2-init bound once.
//
// Since the apps need the real port number before gm2-init starts, each
// test picks a free port below the kernel's ephemeral range (so that no
// other test's ephemeral socket can take it in between) and hands it to
// the app in PORT and to gm2-init in --listen.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/httpload"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// noClockReadiness is passed where a test checks that the preload, not the
// clock, made the workers ready. gm2-init marks a worker whose preload has
// not said hello yet ready after --min-uptime (1s by default; see
// TestNodeSlowStartReadiness), and one that said hello but does not listen
// yet after --listen-timeout (10s). A cold node on a busy 2-CPU machine
// (the race detector, parallel tests, other jobs) was seen to need more
// than both.
var noClockReadiness = []string{"--min-uptime", "50s", "--listen-timeout", "50s"}

// nodeTimeout bounds every wait for Node processes: a cold node or npm
// start under the race detector and parallel tests takes a few seconds.
const nodeTimeout = 60 * time.Second

// needNode skips the test when node is not installed.
func needNode(t *testing.T) {
	t.Helper()
	testtool.Require(t, "node", "Debian package nodejs; the Node preload cannot be tested without it")
}

// repoPath returns the absolute path of a file of the repository.
func repoPath(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	portsMu    sync.Mutex
	portsTaken = map[int]bool{}
)

// freePort returns a loopback port on which TCP and UDP are both free, from
// below the ephemeral range, never the same twice in this test binary.
func freePort(t *testing.T) int {
	t.Helper()
	lo, hi := 20000, 32000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				lo, hi = n-10000, n
			}
		}
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := lo + rand.IntN(hi-lo)
		if portsTaken[p] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		portsTaken[p] = true
		return p
	}
	t.Fatal("no free port found")
	return 0
}

// workerPids returns the pids of the "worker started" lines, by generation.
func workerPids(in *Init) map[int]int {
	out := map[int]int{}
	for _, l := range in.Lines() {
		if l.Msg() == "worker started" {
			out[l.Int("pid")] = l.Int("generation")
		}
	}
	return out
}

// checkReadyByPreload fails unless every "worker ready" line so far says
// the preload made the worker ready (all its listeners listening).
func checkReadyByPreload(t *testing.T, in *Init) {
	t.Helper()
	n := 0
	for _, l := range in.Lines() {
		if l.Msg() != "worker ready" {
			continue
		}
		n++
		if by := l.Str("by"); !strings.HasPrefix(by, "preload") {
			t.Errorf("worker %d ready by %q, want the preload's automatic readiness", l.Int("pid"), by)
		}
	}
	if n == 0 {
		t.Error("no worker ready line")
	}
}

// checkCleanExits fails unless every worker exited with status 0, which a
// worker of these apps only does through its SIGINT handler.
func checkCleanExits(t *testing.T, in *Init, want int) {
	t.Helper()
	n := 0
	for _, l := range in.Lines() {
		if l.Msg() == "worker exited" {
			n++
			if l.Int("code") != 0 {
				t.Errorf("worker %d: %s, want exit status 0 (the app's SIGINT handler)", l.Int("pid"), l.Str("status"))
			}
		}
	}
	if n != want {
		t.Errorf("%d worker exits, want %d", n, want)
	}
}

// checkStoppedWith fails unless gm2-init stopped want workers, each with
// signal sig ("SIGTERM").
func checkStoppedWith(t *testing.T, in *Init, sig string, want int) {
	t.Helper()
	n := 0
	for _, l := range in.Lines() {
		if l.Msg() == "stopping worker" {
			n++
			if l.Str("signal") != sig {
				t.Errorf("worker %d stopped with %s, want %s", l.Int("pid"), l.Str("signal"), sig)
			}
		}
	}
	if n != want {
		t.Errorf("%d workers stopped, want %d", n, want)
	}
}

// askPid makes one request (new connection) and returns the pid in the body:
// http-server.js answers its pid, info.js a JSON object with it.
func askPid(t *testing.T, addr string) int {
	t.Helper()
	code, body, err := httpGet(addr, "/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %v", addr, code, err)
	}
	if strings.HasPrefix(body, "{") {
		var v struct{ Pid int }
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("GET %s: %q: %v", addr, body, err)
		}
		return v.Pid
	}
	pid, err := strconv.Atoi(body)
	if err != nil {
		t.Fatalf("GET %s: body %q is no pid", addr, body)
	}
	return pid
}

// distinctPids asks until want distinct pids answered (or 400 requests).
func distinctPids(t *testing.T, addr string, want int) map[int]int {
	t.Helper()
	seen := map[int]int{}
	for i := 0; i < 400 && len(seen) < want; i++ {
		seen[askPid(t, addr)]++
	}
	return seen
}

// nodeInfo is what testdata/node/info.js answers.
type nodeInfo struct {
	Pid            int             `json:"pid"`
	NodeOptions    *string         `json:"node_options"`
	PreloadFD      *string         `json:"preload_fd"`
	PreloadPatched bool            `json:"preload_patched"`
	HeapLimit      int64           `json:"heap_limit"`
	Address        json.RawMessage `json:"address"`
	Argv           []string        `json:"argv"`
	ExecArgv       []string        `json:"exec_argv"`
}

// options returns NODE_OPTIONS as the worker saw it, "<none>" when unset.
func (ni nodeInfo) options() string {
	if ni.NodeOptions == nil {
		return "<none>"
	}
	return *ni.NodeOptions
}

func getNodeInfo(t *testing.T, addr string) nodeInfo {
	t.Helper()
	code, body, err := httpGet(addr, "/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %v", addr, code, err)
	}
	var ni nodeInfo
	if err := json.Unmarshal([]byte(body), &ni); err != nil {
		t.Fatalf("GET %s: %q: %v", addr, body, err)
	}
	return ni
}

func stopClean(t *testing.T, in *Init) {
	t.Helper()
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(nodeTimeout); code != 0 {
		t.Fatalf("gm2-init exit status %d after SIGTERM, want 0", code)
	}
}

// httpApp describes a gm2-init run for runHTTPApp.
type httpApp struct {
	flags   []string // gm2-init flags besides -i 2 and --listen
	env     []string
	cmd     []string
	wrapped bool // the app is a descendant of the worker, not the worker
}

// runHTTPApp starts `gm2-init -i 2 --listen 127.0.0.1:PORT -- cmd…` with
// PORT in the environment, waits for both workers, and checks that two
// distinct processes, all of them app processes, answer on the port, and
// that the preload made every worker ready. It returns the answering pids.
func runHTTPApp(t *testing.T, app httpApp) (*Init, string, map[int]int) {
	t.Helper()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"--health-addr", "off", "-i", "2", "--listen", addr}, noClockReadiness...)
	args = append(args, app.flags...)
	args = append(append(args, "--"), app.cmd...)
	in := startInit(t, append([]string{"PORT=" + strconv.Itoa(port)}, app.env...), args...)
	wrapped := app.wrapped
	if got := in.Addr(""); got != addr {
		t.Fatalf("gm2-init listens on %s, want %s", got, addr)
	}
	in.WaitReady(2, nodeTimeout)
	checkReadyByPreload(t, in)
	seen := distinctPids(t, addr, 2)
	if len(seen) != 2 {
		t.Fatalf("answers from pids %v, want 2 distinct workers", seen)
	}
	workers := workerPids(in)
	for pid := range seen {
		_, isWorker := workers[pid]
		if wrapped && isWorker {
			t.Errorf("pid %d answered, but it is the wrapper gm2-init started, not the app", pid)
		}
		if !wrapped && !isWorker {
			t.Errorf("pid %d answered, not one of the workers %v", pid, workers)
		}
	}
	return in, addr, seen
}

// TestNodeListenPort: the example app calls listen(PORT) unchanged; two
// workers answer on gm2-init's port, each became ready when its server
// listened (no --wait-ready), and the TERM gm2-init sends on shutdown runs
// the app's SIGINT handler (status 0).
func TestNodeListenPort(t *testing.T) {
	needNode(t)
	t.Parallel()
	in, _, _ := runHTTPApp(t, httpApp{cmd: []string{"node", repoPath(t, "examples/node/http-server.js")}})
	stopClean(t, in)
	checkCleanExits(t, in, 2)
	// Status 0 alone would also come from a SIGINT sent directly.
	checkStoppedWith(t, in, "SIGTERM", 2)
}

// TestNodeNpmStart: the same app through `npm start`: npm's own node process
// hands the listener on to the shell and the app it starts.
func TestNodeNpmStart(t *testing.T) {
	needNode(t)
	testtool.Require(t, "npm", "Debian package npm")
	t.Parallel()
	in, _, _ := runHTTPApp(t, httpApp{cmd: []string{"npm", "--prefix", repoPath(t, "examples/node"), "start", "--silent"}, wrapped: true})
	stopClean(t, in)
}

// TestNodeShellWrappers: `sh -c 'node app.js'` (the shell stays the parent)
// and an entrypoint script that execs node.
func TestNodeShellWrappers(t *testing.T) {
	needNode(t)
	t.Parallel()
	app := repoPath(t, "examples/node/http-server.js")
	t.Run("sh -c", func(t *testing.T) {
		t.Parallel()
		// "; exit $?" keeps every sh from exec'ing node in place.
		in, _, _ := runHTTPApp(t, httpApp{cmd: []string{"sh", "-c", "node " + app + "; exit $?"}, wrapped: true})
		stopClean(t, in)
	})
	t.Run("entrypoint exec", func(t *testing.T) {
		t.Parallel()
		script := filepath.Join(t.TempDir(), "entrypoint.sh")
		if err := os.WriteFile(script, []byte("#!/bin/sh\nset -e\nexec node "+app+" \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		in, _, _ := runHTTPApp(t, httpApp{cmd: []string{script}})
		stopClean(t, in)
		checkCleanExits(t, in, 2)
	})
}

// TestNodeExpress: a real framework from npm (Express, pinned in
// examples/node/package.json) runs unchanged as two workers.
func TestNodeExpress(t *testing.T) {
	needNode(t)
	testtool.RequireFile(t, filepath.Join("..", "examples", "node", "node_modules", "express", "package.json"), "run `npm ci` in examples/node")
	t.Parallel()
	in, _, _ := runHTTPApp(t, httpApp{cmd: []string{"node", repoPath(t, "examples/node/express-app.js")}})
	stopClean(t, in)
	checkCleanExits(t, in, 2)
}

// TestNodeUDP: udp-server.js binds PORT; two workers read from gm2-init's
// one UDP socket and every datagram is answered.
func TestNodeUDP(t *testing.T) {
	needNode(t)
	t.Parallel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	in := startInit(t, []string{"PORT=" + strconv.Itoa(port)},
		append(noClockReadiness, "--health-addr", "off", "-i", "2", "--listen", "udp://"+addr, "--", "node", repoPath(t, "examples/node/udp-server.js"))...)
	in.Addr("")
	in.WaitReady(2, nodeTimeout)
	checkReadyByPreload(t, in)
	workers := workerPids(in)

	const n = 300
	seen := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// Four clients at once, so that both workers are woken and race for
	// the datagrams; each waits for the answer before its next datagram.
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			buf := make([]byte, 64)
			for i := 0; i < n/4; i++ {
				if _, err := conn.Write([]byte("ping " + strconv.Itoa(i))); err != nil {
					errs <- err
					return
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				m, err := conn.Read(buf)
				if err != nil {
					errs <- fmt.Errorf("datagram %d not answered: %w", i, err)
					return
				}
				pid, err := strconv.Atoi(string(buf[:m]))
				if err != nil {
					errs <- fmt.Errorf("answer %q", buf[:m])
					return
				}
				mu.Lock()
				seen[pid]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for pid, c := range seen {
		total += c
		if _, ok := workers[pid]; !ok {
			t.Errorf("answer from pid %d, not a worker (%v)", pid, workers)
		}
	}
	if total != n {
		t.Errorf("%d of %d datagrams answered", total, n)
	}
	// Which worker reads a datagram is the scheduler's choice: a loaded
	// machine let one win all 300 (1 full-suite run in 26). That both
	// read the socket is proven as TestZeroConfigUDP does: each answers
	// while the other is stopped.
	t.Logf("answers by pid under load: %v", seen)
	z := &zc{t: t, in: in}
	z.eachServes(z.workers(2), false, func() int { return z.askUDP(addr) })
	stopClean(t, in)
	checkCleanExits(t, in, 2)
}

// TestNodeStopSignalINT: with --stop-signal INT a PM2-style app gets the
// SIGINT it expects, and gm2-init, asked to stop by TERM, exits 0.
func TestNodeStopSignalINT(t *testing.T) {
	needNode(t)
	t.Parallel()
	t.Run("preload", func(t *testing.T) {
		t.Parallel()
		in, _, _ := runHTTPApp(t, httpApp{
			flags: []string{"--stop-signal", "INT"},
			cmd:   []string{"node", repoPath(t, "examples/node/http-server.js")},
		})
		stopClean(t, in)
		checkCleanExits(t, in, 2)
		checkStoppedWith(t, in, "SIGINT", 2)
	})
	// The preload runs an app's SIGINT handler on SIGTERM too, so the
	// run above cannot tell which signal arrived. Without the preload
	// (the app listens on fd 3 itself) a SIGTERM kills node: only a real
	// SIGINT ends it with status 0.
	t.Run("preload off", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		in := startInit(t, []string{"PORT=" + strconv.Itoa(port), "INFO_FD=3"},
			"--health-addr", "off", "-i", "2", "--min-uptime", "200ms", "--node-preload", "off", "--stop-signal", "INT",
			"--listen", addr, "--", "node", repoPath(t, "e2e/testdata/node/info.js"))
		in.WaitReady(2, nodeTimeout)
		if seen := distinctPids(t, addr, 2); len(seen) != 2 {
			t.Fatalf("answers from pids %v, want 2 workers", seen)
		}
		stopClean(t, in)
		checkCleanExits(t, in, 2)
		checkStoppedWith(t, in, "SIGINT", 2)
	})
}

// TestNodeProcessFileOptionsKept: NODE_OPTIONS set in a process file's env
// (here its env_production, chosen with --env) applies to the workers with
// the preload appended. The preload was built from gm2-init's own
// NODE_OPTIONS and its variable came second, so the app's won and the
// preload was lost: no port sharing, EADDRINUSE on every worker but one.
func TestNodeProcessFileOptionsKept(t *testing.T) {
	needNode(t)
	t.Parallel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	file := filepath.Join(t.TempDir(), "ecosystem.json")
	apps := fmt.Sprintf(`{"apps": [{"name": "api", "script": %q, "instances": 2,
		"env": {"PORT": "%d", "NODE_OPTIONS": "--max-old-space-size=96"},
		"env_production": {"NODE_OPTIONS": "--max-old-space-size=64"}}]}`, repoPath(t, "e2e/testdata/node/info.js"), port)
	if err := os.WriteFile(file, []byte(apps), 0o644); err != nil {
		t.Fatal(err)
	}
	in := startInit(t, nil, append([]string{"--health-addr", "off", "--config", file, "--env", "production"}, noClockReadiness...)...)
	in.WaitReady(2, nodeTimeout)
	if seen := distinctPids(t, addr, 2); len(seen) != 2 {
		t.Fatalf("answers from pids %v, want both workers on the shared port", seen)
	}
	ni := getNodeInfo(t, addr)
	l, _ := in.WaitLog(nodeTimeout, 0, "node preload", nil)
	if want := "--max-old-space-size=64 --require " + l.Str("file"); l.Str("file") == "" || ni.NodeOptions == nil || *ni.NodeOptions != want {
		t.Errorf("NODE_OPTIONS in the worker: %q, want %q (env_production's, then the preload)", ni.options(), want)
	}
	if ni.HeapLimit <= 0 || ni.HeapLimit > 256<<20 {
		t.Errorf("heap_size_limit %d: env_production's --max-old-space-size=64 was lost", ni.HeapLimit)
	}
	stopClean(t, in)
	checkCleanExits(t, in, 2)
}

// TestNodeUserOptionsKept: NODE_OPTIONS set by the user still applies to
// the workers; gm2-init appends the preload to it.
func TestNodeUserOptionsKept(t *testing.T) {
	needNode(t)
	t.Parallel()
	const user = "--max-old-space-size=64"
	in, addr, _ := runHTTPApp(t, httpApp{
		env: []string{"NODE_OPTIONS=" + user},
		cmd: []string{"node", repoPath(t, "e2e/testdata/node/info.js"), "--app-flag", "x"},
	})
	ni := getNodeInfo(t, addr)
	l, _ := in.WaitLog(nodeTimeout, 0, "node preload", nil)
	if want := user + " --require " + l.Str("file"); l.Str("file") == "" || ni.NodeOptions == nil || *ni.NodeOptions != want {
		t.Errorf("NODE_OPTIONS in the worker: %q, want %q (the user's, then the preload)", ni.options(), want)
	}
	// The default limit on this machine is gigabytes; 64 MB of old space
	// gives a total heap limit well below 256 MB.
	if ni.HeapLimit <= 0 || ni.HeapLimit > 256<<20 {
		t.Errorf("heap_size_limit %d: the user's --max-old-space-size=64 was lost", ni.HeapLimit)
	}
	if !ni.PreloadPatched || ni.PreloadFD == nil {
		t.Errorf("preload not active in the worker: %+v", ni)
	}
	if strings.Join(ni.Argv, " ") != "--app-flag x" || len(ni.ExecArgv) != 0 {
		t.Errorf("argv %q, execArgv %q: the preload must not change them", ni.Argv, ni.ExecArgv)
	}
	var a struct{ Port int }
	if err := json.Unmarshal(ni.Address, &a); err != nil || strconv.Itoa(a.Port) != addr[strings.LastIndexByte(addr, ':')+1:] {
		t.Errorf("server.address() = %s, want gm2-init's port of %s", ni.Address, addr)
	}
	stopClean(t, in)
	checkCleanExits(t, in, 2)
}

// TestNodePreloadOff: --node-preload off (or GM2_NODE_PRELOAD=off) leaves
// NODE_OPTIONS exactly as the user set it and gives the workers neither the
// preload nor its pipe; an app that listens on fd 3 itself still works, and
// readiness falls back to --min-uptime.
func TestNodePreloadOff(t *testing.T) {
	needNode(t)
	t.Parallel()
	const user = "--max-old-space-size=64"
	for _, c := range []struct {
		name  string
		flags []string
		env   []string
	}{
		{"flag", []string{"--node-preload", "off"}, nil},
		{"variable", nil, []string{"GM2_NODE_PRELOAD=off"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			port := freePort(t)
			addr := "127.0.0.1:" + strconv.Itoa(port)
			args := append([]string{"--health-addr", "off", "-i", "1", "--min-uptime", "200ms", "--listen", addr}, c.flags...)
			args = append(args, "--", "node", repoPath(t, "e2e/testdata/node/info.js"))
			env := append([]string{"PORT=" + strconv.Itoa(port), "INFO_FD=3", "NODE_OPTIONS=" + user}, c.env...)
			in := startInit(t, env, args...)
			in.WaitReady(1, nodeTimeout)
			if l, _ := in.WaitLog(nodeTimeout, 0, "worker ready", nil); l.Str("by") != "min-uptime" {
				t.Errorf("ready by %q, want min-uptime (no preload)", l.Str("by"))
			}
			ni := getNodeInfo(t, addr)
			if ni.NodeOptions == nil || *ni.NodeOptions != user {
				t.Errorf("NODE_OPTIONS %q, want exactly %q", ni.options(), user)
			}
			if ni.PreloadPatched || ni.PreloadFD != nil {
				t.Errorf("the worker got the preload although it is off: %+v", ni)
			}
			// Nothing turns gm2-init's TERM into the app's SIGINT path: Node
			// dies of it, as it would without gm2-init.
			stopClean(t, in)
			if l, _ := in.WaitLog(time.Second, 0, "worker exited", nil); l.Str("status") != "killed by SIGTERM" {
				t.Errorf("worker %s without the preload, want killed by SIGTERM", l.Str("status"))
			}
		})
	}
}

// TestNodeOtherPortSharedOnDemand: an app that also listens on a port that
// is not in --listen (an admin port on 127.0.0.1) gets it shared on demand:
// gm2-init binds the address the app asked for once, logs it once, hands
// the same socket to both workers, and server.address() reports it.
func TestNodeOtherPortSharedOnDemand(t *testing.T) {
	needNode(t)
	t.Parallel()
	port, admin := freePort(t), freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	adminAddr := "127.0.0.1:" + strconv.Itoa(admin)
	in := startInit(t, []string{"PORT=" + strconv.Itoa(port), "ADMIN_PORT=" + strconv.Itoa(admin)},
		append(noClockReadiness, "--health-addr", "off", "-i", "2", "--listen", addr, "--", "node", repoPath(t, "e2e/testdata/node/info.js"))...)
	in.WaitReady(2, nodeTimeout)
	checkReadyByPreload(t, in)
	// info.js calls listen(ADMIN_PORT) before listen(PORT), and the preload
	// reports readiness only after the ticks that follow: the admin servers
	// listen by now. Both workers answer on both ports.
	workers := workerPids(in)
	for _, a := range []string{addr, adminAddr} {
		seen := distinctPids(t, a, 2)
		for pid := range seen {
			if _, ok := workers[pid]; !ok {
				t.Errorf("%s answered by pid %d, not a worker (%v)", a, pid, workers)
			}
		}
		if len(seen) != 2 {
			t.Errorf("%s answered by %v, want both workers", a, seen)
		}
	}
	other := getNodeInfo(t, adminAddr)
	var a struct {
		Address string
		Port    int
	}
	if err := json.Unmarshal(other.Address, &a); err != nil || a.Port != admin || a.Address != "127.0.0.1" {
		t.Errorf("admin server.address() = %s, want 127.0.0.1:%d", other.Address, admin)
	}
	var shared []string
	for _, l := range in.Lines() {
		if l.Msg() == "port shared on demand" {
			shared = append(shared, l.Str("address"))
		}
	}
	if len(shared) != 1 || shared[0] != adminAddr {
		t.Errorf("ports shared on demand %q, want %s alone, once (the --listen port is passed as fd 3)", shared, adminAddr)
	}
	stopClean(t, in)
	checkCleanExits(t, in, 2)
}

// TestNodeAppWithoutListener: a Node program that serves nothing (a batch
// job) sees what it would see without gm2-init — its argv, execArgv, no
// SIGTERM listener of the preload's — and ends by itself, although the
// preload is loaded (auto and on) and makes it a cluster worker, as PM2's
// cluster mode does; with the preload off it sees no trace of gm2-init.
func TestNodeAppWithoutListener(t *testing.T) {
	needNode(t)
	t.Parallel()
	script := repoPath(t, "e2e/testdata/node/no-listener.js")
	alone, err := exec.Command("node", script, "a", "b").Output()
	if err != nil {
		t.Fatalf("node alone: %v", err)
	}
	// With the preload, gm2-init's channel makes it a cluster worker.
	patched := strings.Replace(string(alone), `"preload_patched":false`, `"preload_patched":true`, 1)
	patched = strings.Replace(patched, `"ipc_channel":false`, `"ipc_channel":true`, 1)
	if !strings.Contains(string(alone), `"ipc_channel":false`) {
		t.Fatalf("node alone: %s, want no IPC channel", alone)
	}
	for mode, ref := range map[string]string{"auto": patched, "on": patched, "off": string(alone)} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			in := startInit(t, nil, "--health-addr", "off", "--restart", "never", "--node-preload", mode, "--", "node", script, "a", "b")
			if code := in.Wait(nodeTimeout); code != 0 {
				t.Fatalf("exit status %d, want 0", code)
			}
			if got := in.stdout.String(); got != ref {
				t.Errorf("output %q, want %q", got, ref)
			}
		})
	}
}

// TestNodeReadOnlyRoot: with / (and /tmp, /dev/shm …) read-only, as with
// Kubernetes' readOnlyRootFilesystem, the preload still works: no directory
// takes its file, so on a Node with --import it is loaded from a data: URL.
func TestNodeReadOnlyRoot(t *testing.T) {
	needNode(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to remount / read-only in a private mount namespace")
	}
	t.Parallel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// A private mount namespace (unshare --mount, private propagation):
	// the remounts below change this namespace's view only.
	script := `set -e
for m in / /tmp /var/tmp /run /dev/shm "$HOME" "${TMPDIR:-/tmp}"; do
  if mountpoint -q "$m"; then mount -o remount,bind,ro "$m"; fi
done
for d in / /tmp /dev/shm /run "${TMPDIR:-/tmp}"; do
  if touch "$d/.gm2-ro-probe" 2>/dev/null; then echo "$d is still writable" >&2; exit 98; fi
done
exec "$0" "$@"`
	argv := []string{"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc",
		"sh", "-c", script, bins.init, "--min-uptime", "50s", "--listen-timeout", "50s",
		"--health-addr", "off", "-i", "2", "--listen", addr, "--", "node", repoPath(t, "examples/node/http-server.js")}
	in := startInitArgv(t, []string{"PORT=" + strconv.Itoa(port)}, argv)
	if l, _ := in.WaitLog(nodeTimeout, 0, "node preload", nil); l.Str("mode") != "import" || !strings.Contains(l.Str("reason"), "read-only file system") {
		t.Fatalf("node preload: %v; want mode import, no directory taking the file", l)
	}
	in.WaitReady(2, nodeTimeout)
	checkReadyByPreload(t, in)
	if seen := distinctPids(t, addr, 2); len(seen) != 2 {
		t.Fatalf("answers from %v, want 2 workers", seen)
	}
	stopClean(t, in)
	checkCleanExits(t, in, 2)
}

// startInitArgv is startInit for a custom command line that ends by exec'ing
// gm2-init as the only child of unshare (PID 1 of the new namespace): the
// child's pid is gm2-init's before and after the exec.
func startInitArgv(t *testing.T, env, argv []string) *Init {
	t.Helper()
	return startInitNS(t, argv, "", "", env, nil)
}

// TestNodeSlowStartReadiness: a Node worker that takes longer than
// --min-uptime to reach the preload (here a 1.5 s --require in the user's
// NODE_OPTIONS, as an APM agent does) must still become ready only when its
// server listens: during a reload the old worker is stopped at that moment.
// A copy of the slow module on node's command line runs after the preload has
// announced itself and before the app listens: a worker made ready by that
// announcement is ready before it could listen.
func TestNodeSlowStartReadiness(t *testing.T) {
	needNode(t)
	t.Parallel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	slow := repoPath(t, "e2e/testdata/node/slow-require.js")
	// A copy of it for the command line: node runs a module file once.
	src, err := os.ReadFile(slow)
	if err != nil {
		t.Fatal(err)
	}
	slowAgain := filepath.Join(t.TempDir(), "slow-require-again.js")
	if err := os.WriteFile(slowAgain, src, 0o644); err != nil {
		t.Fatal(err)
	}
	const slowMS = 1500
	in := startInit(t, []string{"PORT=" + strconv.Itoa(port), "NODE_OPTIONS=--require " + slow, "SLOW_REQUIRE_MS=" + strconv.Itoa(slowMS)},
		"--health-addr", "off", "-i", "1", "--listen", addr, "--", "node", "--require", slowAgain, repoPath(t, "examples/node/http-server.js"))
	in.WaitReady(1, nodeTimeout)
	checkReadyByPreload(t, in)
	// The app's listen() comes after both slow modules: 2 × 1.5 s after
	// the worker started, at the earliest (10 ms for two clocks).
	l, _ := in.WaitLog(time.Second, 0, "worker ready", nil)
	if after, err := time.ParseDuration(l.Str("after")); err != nil || after < 2*slowMS*time.Millisecond-10*time.Millisecond {
		t.Errorf("worker ready %q after its start, before its server could listen (not before %v)", l.Str("after"), 2*slowMS*time.Millisecond)
	}
	askPid(t, addr)
	stopClean(t, in)
}

// TestNodeWrapperGracefulStop: behind a wrapper that dies of the stop signal
// at once (npm, a shell that did not exec), the app's own graceful stop must
// still get --kill-timeout, not the 2 s grace of gm2-init's final sweep.
func TestNodeWrapperGracefulStop(t *testing.T) {
	needNode(t)
	t.Parallel()
	mark := filepath.Join(t.TempDir(), "stopped")
	in, _, _ := runHTTPApp(t, httpApp{
		flags:   []string{"--kill-timeout", "20s"},
		env:     []string{"STOP_MS=3500", "MARK=" + mark},
		cmd:     []string{"sh", "-c", "node " + repoPath(t, "e2e/testdata/node/slow-stop.js") + "; exit $?"},
		wrapped: true,
	})
	stopClean(t, in)
	files, _ := filepath.Glob(mark + ".*")
	if len(files) != 2 {
		t.Errorf("%d of 2 apps finished their graceful stop (%v)", len(files), files)
	}
}

// TestNodeUnixgramListenerDoesNotDelayReadiness: Node cannot use a unix
// datagram socket, so a passed one must not keep a Node worker from the
// preload's automatic readiness.
func TestNodeUnixgramListenerDoesNotDelayReadiness(t *testing.T) {
	needNode(t)
	t.Parallel()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	sock := filepath.Join(t.TempDir(), "dgram.sock")
	in := startInit(t, []string{"PORT=" + strconv.Itoa(port)},
		"--health-addr", "off", "--min-uptime", "50s", "--listen-timeout", "15s", "--listen", addr, "--listen", "unixgram://"+sock,
		"--", "node", repoPath(t, "examples/node/http-server.js"))
	in.WaitReady(1, nodeTimeout)
	checkReadyByPreload(t, in)
	stopClean(t, in)
}

// TestNodeReloadUnderLoad: SIGHUP replaces both workers of the unchanged
// http app while clients keep making requests: no request fails, the
// replacements become ready by the preload (no --wait-ready), and
// afterwards only new processes answer.
func TestNodeReloadUnderLoad(t *testing.T) {
	needNode(t)
	t.Parallel()
	in, addr, _ := runHTTPApp(t, httpApp{cmd: []string{"node", repoPath(t, "examples/node/http-server.js")}})
	old := workerPids(in)
	if len(old) != 2 {
		t.Fatalf("workers %v, want 2", old)
	}

	st := httpload.Start(addr, httpload.Options{Clients: 8, Limit: 5 * time.Minute, PIDBodies: true})
	defer st.Stop()
	select {
	case <-st.Reached(50):
	case <-time.After(nodeTimeout):
		st.Stop()
		t.Fatalf("load did not start: %+v", st.Counts())
	}

	from := len(in.Lines())
	atHUP := st.OK()
	in.Signal(syscall.SIGHUP)
	fin, _ := in.WaitLog(nodeTimeout, from, "reload finished", nil)
	// The old workers are stopped once their replacements are ready; wait
	// until both are gone, under load all along.
	for pid := range old {
		in.WaitLog(nodeTimeout, from, "worker exited", func(l logLine) bool { return l.Int("pid") == pid })
	}
	during := st.OK() - atHUP
	// A few more requests once only the new workers are left.
	select {
	case <-st.Reached(st.OK() + 200):
	case <-time.After(nodeTimeout):
		t.Error("the load stalled after the reload")
	}
	ok, failed, errs := st.Stop().Sums()

	if fin.Str("result") != "ok" || fin.Int("replaced") != 2 {
		t.Errorf("reload finished: result %q, replaced %d; want ok, 2", fin.Str("result"), fin.Int("replaced"))
	}
	if failed != 0 {
		t.Errorf("%d of %d requests failed during the reload: %v", failed, failed+ok, errs)
	}
	if during == 0 {
		t.Error("no request completed during the reload: the load did not overlap it")
	}
	t.Logf("%d requests, %d of them between SIGHUP and the old workers' exit", ok, during)
	checkReadyByPreload(t, in)
	checkStoppedAfterReplacementReady(t, in.Lines(), 2)
	now := map[int]bool{}
	for pid, gen := range workerPids(in) {
		if gen == 1 {
			now[pid] = true
		}
	}
	if len(now) != 2 {
		t.Fatalf("replacement workers %v, want 2", now)
	}
	seen := distinctPids(t, addr, 2)
	for pid := range seen {
		if !now[pid] {
			t.Errorf("pid %d answered after the reload; replacements are %v (old %v)", pid, now, old)
		}
	}
	if len(seen) != 2 {
		t.Errorf("after the reload answers from %v, want both replacements", seen)
	}
	for pid := range old {
		if now[pid] {
			t.Errorf("old worker %d is still a worker", pid)
		}
	}
	stopClean(t, in)
}

// TestNodePreloadFileRemoved: the preload's --require file removed while
// gm2-init runs (a tmp cleaner, systemd-logind's RemoveIPC emptying
// /dev/shm): the exec shim of the next worker writes it again, so a worker
// killed afterwards comes back with the preload (ready by its listen) and
// serves, instead of crash-looping on "Cannot find module".
func TestNodePreloadFileRemoved(t *testing.T) {
	needNode(t)
	t.Parallel()
	in, addr, seen := runHTTPApp(t, httpApp{cmd: []string{"node", repoPath(t, "examples/node/http-server.js")}})
	l, _ := in.WaitLog(nodeTimeout, 0, "node preload", nil)
	file := l.Str("file")
	if l.Str("mode") != "require" || file == "" {
		t.Fatalf("node preload: %v; want mode require with its file", l)
	}
	if err := os.RemoveAll(filepath.Dir(file)); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Fatalf("answers from %v", seen)
	}
	// The log's pids are those of gm2-init's namespace: the signal goes to
	// a child of gm2-init found from the test's side.
	victim := in.waitChildren(2, nodeTimeout)[0]
	from := len(in.Lines())
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ready, _ := in.WaitLog(nodeTimeout, from, "worker ready", nil)
	if !strings.HasPrefix(ready.Str("by"), "preload") {
		t.Fatalf("replacement: %v; want ready by the preload", ready)
	}
	if b, err := os.ReadFile(file); err != nil || len(b) == 0 {
		t.Errorf("the preload file was not written again: %v", err)
	}
	pids := distinctPids(t, addr, 2)
	if _, ok := pids[ready.Int("pid")]; !ok || len(pids) != 2 {
		t.Errorf("answers from %v, want 2 workers with the replacement %d", pids, ready.Int("pid"))
	}
	stopClean(t, in)
}

// TestNodeClosedSharedPortKeepsReadiness: a Node app that serves a port
// for a moment and closes it (a warm-up server; a new version that no
// longer listens there does the same) leaves that socket bound by
// gm2-init, with nobody to take a connection from it. A client that
// connects there waits; that is no stuck worker, and /readyz stays 200
// past --queue-timeout. (It failed for good: the pod left its Service.)
func TestNodeClosedSharedPortKeepsReadiness(t *testing.T) {
	needNode(t)
	t.Parallel()
	port, warm := freePort(t), freePort(t)
	in := startInit(t, []string{"PORT=" + strconv.Itoa(port), "WARMUP_PORT=" + strconv.Itoa(warm)},
		"--health-addr", "127.0.0.1:0", "-i", "2", "--queue-timeout", "300ms", "--",
		"node", repoPath(t, "e2e/testdata/node/warmup-port.js"))
	health := in.HealthAddr()
	in.WaitReady(2, nodeTimeout)
	waitReadyz(t, health, http.StatusOK, 10*time.Second)
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(warm), 5*time.Second)
	if err != nil {
		t.Fatalf("the warm-up port is not bound any more: %v", err)
	}
	defer c.Close()
	// Probed over several queue timeouts: the connection waits, unserved.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if code, body, err := httpGet(health, "/readyz"); err != nil || code != http.StatusOK {
			t.Fatalf("/readyz %d %q %v with a connection waiting on a port the app closed", code, body, err)
		}
	}
	if code, body, _ := httpGet("127.0.0.1:"+strconv.Itoa(port), "/"); code != http.StatusOK || body == "" {
		t.Errorf("the app's port: %d %q", code, body)
	}
	stopClean(t, in)
}
