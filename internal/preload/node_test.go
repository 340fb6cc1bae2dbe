package preload

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// These tests run real node processes (and npm) with sockets the test binds
// the way gm2-init does, and talk to the apps with real clients.

// TestHTTPExample runs examples/node/http-server.js unchanged: it must answer
// on the passed port, report hello and listening, print nothing, and stop
// with status 0 on the SIGTERM gm2-init sends (its SIGINT handler runs).
func TestHTTPExample(t *testing.T) {
	nodePath(t)
	t.Parallel()
	for _, mode := range bothModes() {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/listenPID=%v", mode, direct), func(t *testing.T) {
				t.Parallel()
				sk := passTCP(t)
				p := start(t, spec{
					args:      []string{"node", repoFile(t, "examples/node/http-server.js")},
					socks:     []socket{sk},
					env:       []string{"PORT=" + strconv.Itoa(sk.port)},
					opt:       loadOption(t, mode),
					listenPID: direct,
				})
				got := p.waitListening(3)
				if got[3] != p.pid() {
					p.fail("listening reported by pid %d, want %d", got[3], p.pid())
				}
				if pid := getPid(t, sk.port); pid != p.pid() {
					p.fail("answered by pid %d, want %d", pid, p.pid())
				}
				p.signal(syscall.SIGTERM)
				if code := p.exitCode(); code != 0 {
					p.fail("exit status %d after SIGTERM, want 0 (SIGINT handler)", code)
				}
				evs := p.drainEvents()
				want := []Event{{Kind: KindHello, Pid: p.pid()}, {Kind: KindListening, FD: 3, Pid: p.pid()}}
				if fmt.Sprint(evs) != fmt.Sprint(want) {
					p.fail("events %v, want %v", evs, want)
				}
				if out := p.stdout.String() + p.stderr.String(); out != "" {
					p.fail("the app printed %q, want nothing", out)
				}
			})
		}
	}
}

// TestListenForms covers every listen() form and server kind, the servers
// the preload must leave alone, and server.address().
func TestListenForms(t *testing.T) {
	nodePath(t)
	t.Parallel()
	forms := []string{"net-port", "http-port-host", "http-port-host-backlog-cb", "http-port-cb", "http-options",
		"http-string-port", "http-host-mismatch", "https", "tls", "http2-secure", "http2-plain"}
	keyFile, certFile := writeCert(t)
	for _, mode := range bothModes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			var socks []socket
			var ports []string
			for range forms {
				sk := passTCP(t)
				socks = append(socks, sk)
				ports = append(ports, strconv.Itoa(sk.port))
			}
			unixSock := passUnix(t)
			socks = append(socks, unixSock)
			otherPath := filepath.Join(shortDir(t), "other.sock")
			otherPort := freePort(t)
			p := start(t, spec{
				args:  []string{"node", repoFile(t, "internal/preload/testdata/forms.js")},
				socks: socks,
				env: []string{"FORM_PORTS=" + strings.Join(ports, ","), "TLS_KEY=" + keyFile, "TLS_CERT=" + certFile,
					"OTHER_PORT=" + strconv.Itoa(otherPort), "PASSED_PATH=" + unixSock.path, "OTHER_PATH=" + otherPath},
				opt: loadOption(t, mode),
			})
			var fds []int
			for i := range socks {
				fds = append(fds, 3+i)
			}
			p.waitListening(fds...)
			p.waitOutput("\n")
			var out struct {
				Error     string
				Callbacks map[string]bool
				Address   map[string]json.RawMessage
			}
			if err := json.Unmarshal([]byte(p.stdout.String()), &out); err != nil || out.Error != "" {
				p.fail("output: %v %s", err, out.Error)
			}
			for _, cb := range []string{"http-port-host-backlog-cb", "http-port-cb"} {
				if !out.Callbacks[cb] {
					p.fail("listen callback of %s did not run", cb)
				}
			}
			port := func(name string) int {
				var a struct{ Port int }
				if err := json.Unmarshal(out.Address[name], &a); err != nil {
					p.fail("address of %s: %s: %v", name, out.Address[name], err)
				}
				return a.Port
			}
			c := httpClient()
			for i, name := range forms {
				if got := port(name); got != socks[i].port {
					p.fail("%s: address().port %d, want %d", name, got, socks[i].port)
				}
				if body := askForm(t, c, name, socks[i].port); body != name {
					p.fail("%s: answered %q", name, body)
				}
			}
			// Port 0 and a port gm2-init did not pass: Node's own sockets.
			zero := port("zero")
			for _, sk := range socks {
				if zero == sk.port || zero == 0 {
					p.fail("listen(0) got port %d", zero)
				}
			}
			if body, _ := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", zero)); body != "zero" {
				p.fail("port-0 server answered %q", body)
			}
			if got := port("other"); got != otherPort {
				p.fail("unpassed port server on %d, want %d", got, otherPort)
			}
			if body, _ := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", otherPort)); body != "other" {
				p.fail("unpassed port server answered %q", body)
			}
			// Unix paths: the passed one is redirected, another is bound by Node.
			var addr string
			if err := json.Unmarshal(out.Address["passed-path"], &addr); err != nil || addr != unixSock.path {
				p.fail("passed unix server address() = %s, want %q", out.Address["passed-path"], unixSock.path)
			}
			for path, want := range map[string]string{unixSock.path: "passed-path", otherPath: "other-path"} {
				if body := getUnix(t, path); body != want {
					p.fail("unix %s answered %q, want %q", path, body, want)
				}
			}
			p.signal(syscall.SIGTERM)
			if code := p.exitCode(); code != 0 {
				p.fail("exit status %d", code)
			}
		})
	}
}

// askForm talks to one server of forms.js in its own protocol.
func askForm(t *testing.T, c *http.Client, name string, port int) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	switch name {
	case "net-port", "tls":
		var conn net.Conn
		var err error
		if name == "tls" {
			conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
				&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test server
		} else {
			conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		}
		if err != nil {
			t.Fatalf("%s: dial: %v", name, err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("%s: read: %v", name, err)
		}
		return string(b)
	case "https", "http2-secure":
		body, resp := get(t, c, "https://"+addr+"/")
		if name == "http2-secure" && resp.ProtoMajor != 2 {
			t.Errorf("http2-secure answered over %s", resp.Proto)
		}
		return body
	case "http2-plain":
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		h2c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &protos}}
		body, resp := get(t, h2c, "http://"+addr+"/")
		if resp.ProtoMajor != 2 {
			t.Errorf("http2-plain answered over %s", resp.Proto)
		}
		return body
	}
	body, _ := get(t, c, "http://"+addr+"/")
	return body
}

func getUnix(t *testing.T, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	body, _ := get(t, c, "http://unix/")
	return body
}

// TestUDPExample runs examples/node/udp-server.js: bind(port) is redirected
// and datagrams are answered with the app's pid.
func TestUDPExample(t *testing.T) {
	nodePath(t)
	t.Parallel()
	for _, mode := range bothModes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			sk := passUDP(t)
			p := start(t, spec{
				args:  []string{"node", repoFile(t, "examples/node/udp-server.js")},
				socks: []socket{sk},
				env:   []string{"PORT=" + strconv.Itoa(sk.port)},
				opt:   loadOption(t, mode),
			})
			p.waitListening(3)
			conn, err := net.Dial("udp", sk.addr.String())
			if err != nil {
				t.Fatalf("dial udp: %v", err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("ping")); err != nil {
				t.Fatalf("send: %v", err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err != nil {
				p.fail("no answer to a datagram: %v", err)
			}
			if string(buf[:n]) != strconv.Itoa(p.pid()) {
				p.fail("answer %q, want pid %d", buf[:n], p.pid())
			}
			p.signal(syscall.SIGTERM)
			if code := p.exitCode(); code != 0 {
				p.fail("exit status %d", code)
			}
		})
	}
}

// TestWrappers starts the example app through wrappers that start node as
// a descendant: npm start, shells, and a Node launcher using each
// child_process API. The app must answer, from a pid other than the
// wrapper's, and every Node process in between must say hello.
func TestWrappers(t *testing.T) {
	nodePath(t)
	t.Parallel()
	examples := repoFile(t, "examples/node")
	cases := []struct {
		name string
		args []string
		env  []string
	}{
		{"npm start", []string{"npm", "start", "--silent"}, nil},
		{"sh -c exec", []string{"sh", "-c", "exec node http-server.js"}, nil},
		{"sh -c child", []string{"sh", "-c", "node http-server.js; exit $?"}, nil},
	}
	for _, m := range []string{"spawn", "exec", "execFile", "fork", "spawnSync", "execSync", "execFileSync"} {
		cases = append(cases, struct {
			name string
			args []string
			env  []string
		}{"node " + m, []string{"node", repoFile(t, "internal/preload/testdata/wrapper.js")},
			[]string{"WRAP_MODE=" + m, "APP=" + repoFile(t, "internal/preload/testdata/forked-app.js")}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sk := passTCP(t)
			p := start(t, spec{
				args:  c.args,
				dir:   examples,
				socks: []socket{sk},
				env:   append([]string{"PORT=" + strconv.Itoa(sk.port)}, c.env...),
				opt:   loadOption(t, viaRequire),
			})
			app := p.waitListening(3)[3]
			if pid := getPid(t, sk.port); pid != app {
				p.fail("answered by pid %d, listening reported by %d", pid, app)
			}
			wrapped := !strings.HasPrefix(c.name, "sh -c exec")
			if wrapped && app == p.pid() {
				p.fail("the wrapper itself (pid %d) listened", app)
			}
			// gm2-init signals the whole process group. Node itself, exec'd by
			// a shell, runs the app's SIGINT handler and exits 0. A wrapper
			// without handlers of its own (the launcher, the shell npm runs,
			// a shell that did not exec) dies of the SIGTERM at once and the
			// app, orphaned, finishes by itself: the event pipe closes only
			// once every process holding it has ended.
			p.signal(syscall.SIGTERM)
			ws := p.wait()
			if c.name == "sh -c exec" {
				if ws.Signaled() || ws.ExitStatus() != 0 {
					p.fail("status %v after SIGTERM, want exit 0 (the app's SIGINT handler)", ws)
				}
			} else if !(ws.Signaled() && ws.Signal() == syscall.SIGTERM) && ws.ExitStatus() != 0 {
				p.fail("status %v after SIGTERM", ws)
			}
			hello := map[int]bool{}
			for _, ev := range p.drainEvents() {
				if ev.Kind == KindHello {
					hello[ev.Pid] = true
				}
			}
			if !hello[app] {
				p.fail("no hello from the app %d", app)
			}
			if c.args[0] == "node" || c.args[0] == "npm" {
				if !hello[p.pid()] {
					p.fail("no hello from the wrapper %d", p.pid())
				}
			}
		})
	}
}

// TestNoHandoffFromApp: an app that took over its listener starts a node
// subprocess; the subprocess gets no socket, and its preload, although it
// inherits GM2_LISTENERS, stays silent (its fd 3 is something of its own).
func TestNoHandoffFromApp(t *testing.T) {
	nodePath(t)
	t.Parallel()
	sk := passTCP(t)
	p := start(t, spec{
		args:  []string{"node", repoFile(t, "internal/preload/testdata/spawns-child.js")},
		socks: []socket{sk},
		env:   []string{"PORT=" + strconv.Itoa(sk.port)},
		opt:   loadOption(t, viaRequire),
	})
	p.waitOutput("\n")
	var child struct {
		Pid         int
		Fd3IsSocket bool
	}
	if err := json.Unmarshal([]byte(p.stdout.String()), &child); err != nil {
		p.fail("child output: %v", err)
	}
	if child.Fd3IsSocket {
		p.fail("the app's subprocess got a socket at fd 3")
	}
	p.signal(syscall.SIGTERM)
	if code := p.exitCode(); code != 0 {
		p.fail("exit status %d", code)
	}
	for _, ev := range p.drainEvents() {
		if ev.Pid != p.pid() {
			p.fail("event %+v from a process other than the app", ev)
		}
	}
}

// TestInactiveWithoutSockets: GM2_LISTENERS names an fd this process did
// not get (fd 4 is one of Node's own here): the preload must not touch it,
// must write nothing to the report pipe, and must leave listen() to Node.
func TestInactiveWithoutSockets(t *testing.T) {
	nodePath(t)
	t.Parallel()
	port := freePort(t)
	p := start(t, spec{
		args:      []string{"node", repoFile(t, "internal/preload/testdata/announce.js")},
		env:       []string{"PORT=" + strconv.Itoa(port)},
		listeners: "4=tcp:127.0.0.1:" + strconv.Itoa(port),
		opt:       loadOption(t, viaRequire),
	})
	p.waitOutput(fmt.Sprintf("listening on %d\n", port))
	if pid := getPid(t, port); pid != p.pid() {
		p.fail("answered by %d", pid)
	}
	// Inactive, so no SIGTERM-to-SIGINT either: Node's own default.
	p.signal(syscall.SIGTERM)
	if ws := p.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		p.fail("status %v, want killed by SIGTERM", ws)
	}
	if evs := p.drainEvents(); len(evs) != 0 {
		p.fail("events %v from a process whose listeners were not inherited", evs)
	}
}

// TestSignals checks the TERM policy: an app with its own SIGTERM listener
// keeps it, an app with no listener dies by SIGTERM, a SIGINT-only app is
// stopped once even if SIGTERM comes twice (npm forwards it), and a
// SIGINT-only app without work ends by itself.
func TestSignals(t *testing.T) {
	nodePath(t)
	t.Parallel()
	run := func(t *testing.T, app string, stdin bool) *proc {
		sk := passTCP(t)
		p := start(t, spec{
			args:  []string{"node", repoFile(t, "internal/preload/testdata/"+app)},
			socks: []socket{sk},
			env:   []string{"PORT=" + strconv.Itoa(sk.port)},
			opt:   loadOption(t, viaRequire),
			stdin: stdin,
		})
		return p
	}
	t.Run("own SIGTERM listener", func(t *testing.T) {
		t.Parallel()
		p := run(t, "own-term.js", false)
		p.waitListening(3)
		p.signal(syscall.SIGTERM)
		if code := p.exitCode(); code != 7 || p.stdout.String() != "term\n" {
			p.fail("status %d, output %q; want the app's own SIGTERM handler (7, term)", code, p.stdout.String())
		}
	})
	t.Run("no listener", func(t *testing.T) {
		t.Parallel()
		p := run(t, "no-handlers.js", false)
		p.waitListening(3)
		p.signal(syscall.SIGTERM)
		if ws := p.wait(); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			p.fail("status %v, want killed by SIGTERM", ws)
		}
	})
	t.Run("SIGTERM twice", func(t *testing.T) {
		t.Parallel()
		p := run(t, "slow-sigint.js", true)
		p.waitListening(3)
		p.signal(syscall.SIGTERM)
		p.waitOutput("stopping\n")
		p.signal(syscall.SIGTERM)
		p.signal(syscall.SIGWINCH)
		p.waitOutput("winch\n")
		if _, err := p.stdin.Write([]byte("go\n")); err != nil {
			p.fail("write stdin: %v", err)
		}
		if code := p.exitCode(); code != 0 || p.stdout.String() != "stopping\nwinch\n" {
			p.fail("status %d, output %q; want one graceful stop", code, p.stdout.String())
		}
	})
	t.Run("idle SIGINT app ends by itself", func(t *testing.T) {
		t.Parallel()
		p := run(t, "idle-sigint.js", false)
		if code := p.exitCode(); code != 0 {
			p.fail("status %d", code)
		}
		// Documented: the preload's listener is visible while it exists.
		if p.stdout.String() != "SIGTERM listeners: 1\n" {
			p.fail("output %q", p.stdout.String())
		}
	})
}

// TestUserNodeOptionsKept: NODE_OPTIONS the user set still applies.
func TestUserNodeOptionsKept(t *testing.T) {
	nodePath(t)
	t.Parallel()
	for _, mode := range bothModes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			sk := passTCP(t)
			p := start(t, spec{
				args:        []string{"node", repoFile(t, "internal/preload/testdata/heap.js")},
				socks:       []socket{sk},
				env:         []string{"PORT=" + strconv.Itoa(sk.port)},
				nodeOptions: "--max-old-space-size=100",
				opt:         loadOption(t, mode),
			})
			p.waitListening(3)
			p.waitOutput("\n")
			limit, err := strconv.ParseInt(strings.TrimSpace(p.stdout.String()), 10, 64)
			if err != nil || limit > 200<<20 {
				p.fail("heap limit %q, want about 100 MB", p.stdout.String())
			}
			if pid := getPid(t, sk.port); pid != p.pid() {
				p.fail("answered by %d", pid)
			}
		})
	}
}

// TestUnchanged: an app run with the preload but without GM2_LISTENERS
// prints byte for byte what it prints without; with GM2_LISTENERS it
// observes the same process (globals, argv, env, listeners, handles,
// function shapes) and still ends by itself. The reference for the data:
// URL mode is a run with an empty --import module: any --import makes Node
// load the main file through its ESM loader, which leaves an 'exit' listener
// and a handle of its own. That mode writes no file anywhere it could.
func TestUnchanged(t *testing.T) {
	nodePath(t)
	t.Parallel()
	script := repoFile(t, "internal/preload/testdata/observe.js")
	run := func(t *testing.T, opt string, socks []socket, noContract bool, dir string) string {
		p := start(t, spec{
			args:       []string{"node", script, "--flag", "x"},
			dir:        dir,
			socks:      socks,
			opt:        opt,
			noContract: noContract,
			env:        []string{"TMPDIR=" + dir, "HOME=" + dir},
		})
		if code := p.exitCode(); code != 0 {
			p.fail("status %d", code)
		}
		return p.stdout.String() + "\x00" + p.stderr.String()
	}
	reference := map[loadMode]string{
		viaRequire: "",
		viaImport:  "--import=data:text/javascript,",
	}
	for _, mode := range bothModes() {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			base := run(t, reference[mode], nil, true, dir)
			opt := loadOption(t, mode)
			if got := run(t, opt, nil, true, dir); got != base {
				t.Errorf("output differs without GM2_LISTENERS:\n%s\nwant:\n%s", got, base)
			}
			if got := run(t, opt, []socket{passTCP(t)}, false, dir); got != base {
				t.Errorf("output differs with GM2_LISTENERS:\n%s\nwant:\n%s", got, base)
			}
			if mode == viaImport {
				entries, err := os.ReadDir(dir)
				if err != nil || len(entries) != 0 {
					t.Errorf("data: URL mode left files in cwd/TMPDIR/HOME: %v %v", entries, err)
				}
			}
		})
	}
}

// TestCluster: an app using Node's cluster module; the primary never
// listens, so it hands the sockets to the workers it forks.
func TestCluster(t *testing.T) {
	nodePath(t)
	t.Parallel()
	sk := passTCP(t)
	p := start(t, spec{
		args:  []string{"node", repoFile(t, "internal/preload/testdata/cluster.js")},
		socks: []socket{sk},
		env:   []string{"PORT=" + strconv.Itoa(sk.port), "WORKERS=2"},
		opt:   loadOption(t, viaRequire),
	})
	pids := map[int]bool{}
	deadline := time.After(waitLimit)
	for len(pids) < 2 {
		ev, ok := p.next(deadline)
		if !ok {
			p.fail("event pipe closed")
		}
		if ev.Kind == KindListening {
			pids[ev.Pid] = true
		}
	}
	if pid := getPid(t, sk.port); !pids[pid] {
		p.fail("answered by %d, not one of the workers %v", pid, pids)
	}
}

// TestExpress runs examples/node/express-app.js unchanged.
func TestExpress(t *testing.T) {
	nodePath(t)
	t.Parallel()
	dir := repoFile(t, "examples/node")
	testtool.RequireFile(t, filepath.Join(dir, "node_modules", "express", "package.json"), "run `npm ci` in examples/node to test Express")
	sk := passTCP(t)
	p := start(t, spec{
		args:  []string{"node", "express-app.js"},
		dir:   dir,
		socks: []socket{sk},
		env:   []string{"PORT=" + strconv.Itoa(sk.port)},
		opt:   loadOption(t, viaRequire),
	})
	p.waitListening(3)
	if pid := getPid(t, sk.port); pid != p.pid() {
		p.fail("answered by %d", pid)
	}
	p.signal(syscall.SIGTERM)
	if code := p.exitCode(); code != 0 {
		p.fail("exit status %d", code)
	}
}

// TestProbe: the installed node accepts both options, with Probe and with
// ProbeLoad; a refused option is reported with node's message by both, a
// missing file by ProbeLoad, which loads it (Probe only parses
// NODE_OPTIONS).
func TestProbe(t *testing.T) {
	node := nodePath(t)
	t.Parallel()
	ctx := ctxWithLimit(t)
	for _, mode := range bothModes() {
		for name, probe := range map[string]func(context.Context, string, string) (string, error){"Probe": Probe, "ProbeLoad": ProbeLoad} {
			v, err := probe(ctx, node, loadOption(t, mode))
			if err != nil || !strings.HasPrefix(v, "v") {
				t.Errorf("%s: %s = %q, %v", mode, name, v, err)
			}
			if _, err := probe(ctx, node, "--no-such-option-gm2"); err == nil || !strings.Contains(err.Error(), "no-such-option-gm2") {
				t.Errorf("%s with a bad option: %v", name, err)
			}
		}
	}
	missing, _ := RequireOption(filepath.Join(t.TempDir(), "missing.cjs"))
	if _, err := ProbeLoad(ctx, node, missing); err == nil || !strings.Contains(err.Error(), "Cannot find module") {
		t.Errorf("ProbeLoad with a missing file: %v", err)
	}
	if v, err := Probe(ctx, node, missing); err != nil || !strings.HasPrefix(v, "v") {
		t.Errorf("Probe with a missing file: %q, %v; want the version: Probe does not load it", v, err)
	}
}
