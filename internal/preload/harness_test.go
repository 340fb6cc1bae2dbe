package preload

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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

	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// waitLimit bounds every wait on a node process in these tests.
const waitLimit = 20 * time.Second

// loadMode is how a test run loads the preload.
type loadMode string

const (
	viaRequire loadMode = "require" // --require of a file written by WriteFile
	viaImport  loadMode = "import"  // --import of the data: URL
)

// bothModes lists the ways gm2-init may load the preload.
func bothModes() []loadMode { return []loadMode{viaRequire, viaImport} }

func nodePath(t *testing.T) string {
	t.Helper()
	return testtool.Require(t, "node", "Debian package nodejs; the preload tests run real node processes")
}

// loadOption returns the NODE_OPTIONS token for mode.
func loadOption(t *testing.T, mode loadMode) string {
	t.Helper()
	if mode == viaImport {
		return ImportOption()
	}
	path, cleanup, err := WriteFile(t.TempDir())
	if err != nil {
		t.Fatalf("write preload file: %v", err)
	}
	t.Cleanup(cleanup)
	opt, err := RequireOption(path)
	if err != nil {
		t.Fatalf("require option: %v", err)
	}
	return opt
}

// repoFile returns the absolute path of a file in the repository.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatalf("abs %s: %v", rel, err)
	}
	return p
}

// socket is a listening socket the test binds, as gm2-init would, and
// passes to node. The test never accepts on it: node does.
type socket struct {
	addr net.Addr
	file *os.File
	port int
	path string
}

func passTCP(t *testing.T) socket {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatalf("tcp listener file: %v", err)
	}
	return socket{addr: ln.Addr(), file: f, port: ln.Addr().(*net.TCPAddr).Port}
}

func passUDP(t *testing.T) socket {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	f, err := pc.(*net.UDPConn).File()
	if err != nil {
		t.Fatalf("udp socket file: %v", err)
	}
	return socket{addr: pc.LocalAddr(), file: f, port: pc.LocalAddr().(*net.UDPAddr).Port}
}

// shortDir returns a fresh directory with a short path: unix socket paths
// are limited to 107 bytes, which t.TempDir can exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "gm2p")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func passUnix(t *testing.T) socket {
	t.Helper()
	path := filepath.Join(shortDir(t), "app.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen unix: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	f, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatalf("unix listener file: %v", err)
	}
	return socket{addr: ln.Addr(), file: f, path: path}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// spec describes one node process tree to start.
type spec struct {
	args        []string // argv; args[0] is looked up in PATH
	dir         string
	socks       []socket
	env         []string // extra KEY=VALUE
	nodeOptions string   // NODE_OPTIONS the user already has
	opt         string   // the preload's option; "" runs without preload
	noContract  bool     // set none of the gm2-init variables
	listeners   string   // GM2_LISTENERS to set instead of the one socks give
	listenPID   bool     // set LISTEN_PID to the started process's pid
	stdin       bool     // give the process a stdin pipe
	primary     *primary // give the process a Node IPC channel served by this cluster primary
	pathDir     string   // put this directory first in PATH (the node under test)
}

// proc is a started node process (tree) in its own process group.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	stdin  io.WriteCloser
	events chan Event
	seen   []Event
	done   chan struct{}
	ready  chan struct{} // one value per process.send('ready') the primary got
	prim   *primary      // the cluster primary of the process, if any
}

// lockedBuffer collects output and tells a waiter that more arrived.
type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{} // capacity 1, made by start
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if b.notify != nil {
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}
	return n, err
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// baseEnv is the test's environment without anything gm2-init or a parent
// node would set, and with npm kept off the network.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "NODE_OPTIONS" || k == "PORT" || k == "NODE_CHANNEL_FD" ||
			strings.HasPrefix(k, "GM2_") || strings.HasPrefix(k, "LISTEN_") || strings.HasPrefix(k, "npm_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
}

func start(t *testing.T, s spec) *proc {
	t.Helper()
	bin := testtool.Require(t, s.args[0], "")
	args := s.args[1:]
	if s.listenPID {
		// Go cannot set a variable between fork and exec; a shell can.
		args = append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, bin}, args...)
		bin = "/bin/sh"
	}
	p := &proc{t: t, events: make(chan Event, 256), done: make(chan struct{}), ready: make(chan struct{}, 16)}
	p.stdout.notify = make(chan struct{}, 1)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	env := baseEnv()
	var pr, pw *os.File
	var err error
	if !s.noContract {
		pr, pw, err = os.Pipe()
		if err != nil {
			t.Fatalf("pipe: %v", err)
		}
		var ls []Listener
		var names []string
		for i, sk := range s.socks {
			l, ok := FromAddr(3+i, sk.addr)
			if !ok {
				t.Fatalf("cannot describe %v", sk.addr)
			}
			ls = append(ls, l)
			names = append(names, fmt.Sprintf("l%d", i))
			cmd.ExtraFiles = append(cmd.ExtraFiles, sk.file)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, pw)
		env = append(env,
			"LISTEN_FDS="+strconv.Itoa(len(s.socks)),
			"LISTEN_FDNAMES="+strings.Join(names, ":"),
			EnvListeners+"="+cmp.Or(s.listeners, ListenersEnv(ls)),
			EnvReportFD+"="+strconv.Itoa(3+len(s.socks)))
	}
	if opts := AppendOption(s.nodeOptions, s.opt); opts != "" {
		env = append(env, "NODE_OPTIONS="+opts)
	}
	var channel *os.File
	if s.primary != nil {
		var child *os.File
		channel, child, err = nodeipc.NewChannel()
		if err != nil {
			t.Fatalf("channel: %v", err)
		}
		defer child.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, child)
		env = append(env, nodeipc.Env(2+len(cmd.ExtraFiles), s.primary.nextID())...)
	}
	if s.pathDir != "" {
		env = setEnvVar(env, "PATH", s.pathDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	cmd.Env = append(env, s.env...)
	if s.stdin {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatalf("stdin pipe: %v", err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", s.args, err)
	}
	p.cmd = cmd
	p.prim = s.primary
	if channel != nil {
		s.primary.serve(p, channel)
	}
	if pw != nil {
		_ = pw.Close()
		go func() {
			defer close(p.events)
			defer pr.Close()
			_ = Read(pr, func(ev Event) { p.events <- ev })
		}()
	} else {
		close(p.events)
	}
	for _, sk := range s.socks {
		_ = sk.file.Close()
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(waitLimit):
			t.Errorf("process group %d did not end after SIGKILL", cmd.Process.Pid)
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// setEnvVar returns env with key set to value.
func setEnvVar(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// fail reports what the process said, which is what one needs to debug.
func (p *proc) fail(format string, args ...any) {
	p.t.Helper()
	prim := ""
	if p.prim != nil {
		prim = "\nprimary's log:\n" + p.prim.log.String()
	}
	p.t.Fatalf("%s\nstdout:\n%s\nstderr:\n%s\nevents: %v%s", fmt.Sprintf(format, args...), p.stdout.String(), p.stderr.String(), p.seen, prim)
}

// next returns the next event, or false at the pipe's EOF.
func (p *proc) next(deadline <-chan time.Time) (Event, bool) {
	p.t.Helper()
	select {
	case ev, ok := <-p.events:
		if ok {
			p.seen = append(p.seen, ev)
		}
		return ev, ok
	case <-deadline:
		p.fail("no event within %v", waitLimit)
	}
	return Event{}, false
}

// waitListening waits for a "listening" event for each fd and returns the
// pid that reported each.
func (p *proc) waitListening(fds ...int) map[int]int {
	p.t.Helper()
	got := map[int]int{}
	for _, ev := range p.seen {
		if ev.Kind == KindListening {
			got[ev.FD] = ev.Pid
		}
	}
	deadline := time.After(waitLimit)
	for !hasAll(got, fds) {
		ev, ok := p.next(deadline)
		if !ok {
			p.fail("event pipe closed before listening on fds %v", fds)
		}
		if ev.Kind == KindListening {
			got[ev.FD] = ev.Pid
		}
	}
	return got
}

func hasAll(got map[int]int, fds []int) bool {
	for _, fd := range fds {
		if _, ok := got[fd]; !ok {
			return false
		}
	}
	return true
}

// drainEvents reads events until every writer has closed the pipe.
func (p *proc) drainEvents() []Event {
	p.t.Helper()
	deadline := time.After(waitLimit)
	for {
		if _, ok := p.next(deadline); !ok {
			return p.seen
		}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := syscall.Kill(-p.pid(), sig); err != nil {
		p.fail("signal %v to group %d: %v", sig, p.pid(), err)
	}
}

// wait waits for the process to end and returns its status.
func (p *proc) wait() syscall.WaitStatus {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		p.fail("process %d still running after %v", p.pid(), waitLimit)
	}
	return p.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// waitOutput waits until stdout contains s.
func (p *proc) waitOutput(s string) {
	p.t.Helper()
	deadline := time.After(waitLimit)
	for !strings.Contains(p.stdout.String(), s) {
		select {
		case <-p.stdout.notify:
		case <-p.done:
			if !strings.Contains(p.stdout.String(), s) {
				p.fail("process ended before printing %q", s)
			}
		case <-deadline:
			p.fail("no %q on stdout within %v", s, waitLimit)
		}
	}
}

func httpClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the test's own self-signed server
			ForceAttemptHTTP2: true,
		},
	}
}

func get(t *testing.T, c *http.Client, url string) (string, *http.Response) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return string(body), resp
}

func getPid(t *testing.T, port int) int {
	t.Helper()
	body, _ := get(t, httpClient(), fmt.Sprintf("http://127.0.0.1:%d/", port))
	pid, err := strconv.Atoi(body)
	if err != nil {
		t.Fatalf("answer %q is not a pid", body)
	}
	return pid
}

// writeCert writes a self-signed certificate for localhost and returns the
// key and certificate paths.
func writeCert(t *testing.T) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	dir := t.TempDir()
	kp, cp := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return kp, cp
}

// exitCode returns the exit status, failing if the process was killed.
func (p *proc) exitCode() int {
	p.t.Helper()
	ws := p.wait()
	if ws.Signaled() {
		p.fail("killed by %v, want an exit", ws.Signal())
	}
	return ws.ExitStatus()
}

// ctxWithLimit returns a context bounded by waitLimit.
func ctxWithLimit(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}
