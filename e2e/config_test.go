// The configuration end to end: what only the real binary shows (the
// environment a worker really gets, the messages of main's own checks,
// signals during start-up).

package e2e

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A gm2-init started inside a worker of another reads none of what the
// outer one set for that worker as its own configuration: not its worker
// count (GM2_INSTANCES, which it once took as -i), and no warning about
// GM2_NODE_CLUSTER, GM2_NODE_RELAYED or GM2_PRELOAD_IMPORT as unknown
// variables.
func TestConfigNestedInit(t *testing.T) {
	t.Parallel()
	needNode(t) // the preload's variables are set when node is there
	dir := t.TempDir()
	inner := bins.init + " --dry-run -- true >" + dir + "/out.$GM2_INSTANCE 2>" + dir + "/err.$GM2_INSTANCE"
	in := startInit(t, nil, baseArgs("-i", "2", "--restart", "never", "--", "sh", "-c", inner)...)
	if code := in.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for _, slot := range []string{"0", "1"} {
		out, err := os.ReadFile(filepath.Join(dir, "out."+slot))
		if err != nil {
			t.Fatal(err)
		}
		var dry struct {
			Instances int `json:"instances"`
		}
		if err := json.Unmarshal(out, &dry); err != nil || dry.Instances != 1 {
			t.Errorf("slot %s: inner --dry-run has %d instances (%v), want 1: %.300s", slot, dry.Instances, err, out)
		}
		errs, err := os.ReadFile(filepath.Join(dir, "err."+slot))
		if err != nil {
			t.Fatal(err)
		}
		var warnings []string
		for _, line := range strings.Split(strings.TrimSpace(string(errs)), "\n") {
			var l logLine
			if json.Unmarshal([]byte(line), &l) != nil || l["level"] != "warn" {
				t.Errorf("slot %s: inner stderr line %q", slot, line)
				continue
			}
			warnings = append(warnings, l.Msg())
		}
		want := `GM2_INSTANCES="2" ignored: an outer gm2-init set it for its workers (its worker count), it is not this gm2-init's -i; give -i/--instances`
		if len(warnings) != 1 || warnings[0] != want {
			t.Errorf("slot %s: inner warnings %q, want only %q", slot, warnings, want)
		}
	}
}

// Bad process files and bad settings against a file, with the real binary:
// exit status 2 (1 for the system's refusal: a port in use), one line that
// names the file, the app and the key (or the flag), and nothing started.
func TestConfigBadFile(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(freePort(t))
	dir := t.TempDir()
	const (
		usage   = 2
		runtime = 1
	)
	// Every app's command leaves a trace if it is ever started.
	app := func(name, extra string) string {
		return `{"name": "` + name + `", "script": "sh", "args": ["-c", "touch MARKER"]` + extra + `}`
	}
	cases := []struct {
		name string
		apps string // the apps of the file, a JSON list
		env  []string
		args []string // after --config FILE
		code int
		want string // the one line, after "gm2-init: "; $FILE is the file
	}{
		{"app on the health port, [::] over 0.0.0.0 (passed --dry-run)",
			`[` + app("api", `, "listen": "0.0.0.0:`+port+`"`) + `]`, nil,
			[]string{"--health-addr", "[::]:" + port, "--dry-run"}, usage,
			`$FILE: app "api": listen: "0.0.0.0:` + port + `" and --health-addr "[::]:` + port + `" bind the same address; give one of them another port (or --health-addr off)`},
		{"app on a port in use (was named --listen)",
			`[` + app("api", `, "listen": "`+busy.Addr().String()+`"`) + `]`, nil,
			[]string{"--health-addr", "off"}, runtime,
			`$FILE: app "api": listen: bind ` + busy.Addr().String() + `: address already in use (another process listens there)`},
		{"second app's unix socket in a missing directory (was named --listen)",
			`[` + app("api", "") + `, ` + app("web", `, "listen": ["127.0.0.1:0", "unix://`+dir+`/missing/web.sock"]`) + `]`, nil,
			[]string{"--health-addr", "off"}, usage,
			`$FILE: app "web": listen: bind unix://` + dir + `/missing/web.sock: directory ` + dir + `/missing: no such file or directory`},
		{"min ready above a cluster app, fork app beside it (named a min_ready key)",
			`[` + app("api", `, "instances": 1`) + `, ` + app("worker", `, "exec_mode": "fork"`) + `]`, []string{"GM2_MIN_READY=2"},
			[]string{"--dry-run"}, usage,
			`$FILE: app "api": GM2_MIN_READY 2 is more than its 1 worker (instances 1); accepted: a whole number from 1 to the worker count, or all`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			marker := filepath.Join(dir, "started-"+strconv.Itoa(i))
			file := filepath.Join(dir, "eco-"+strconv.Itoa(i)+".json")
			content := `{"apps": ` + strings.ReplaceAll(c.apps, "MARKER", marker) + `}`
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runRejected(t, append([]string{"--config", file}, c.args...), c.env)
			if code != c.code {
				t.Errorf("exit status %d, want %d; stderr: %.500s", code, c.code, stderr)
			}
			// Errors found once the start is logged (a bind) follow
			// JSON lines: the plain line is the last one.
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if want := "gm2-init: " + strings.ReplaceAll(c.want, "$FILE", file); last != want {
				t.Errorf("error line\n got %s\nwant %s", last, want)
			}
			for _, l := range lines[:len(lines)-1] {
				if !strings.HasPrefix(l, "{") {
					t.Errorf("more than one plain error line: %q", stderr)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("an app was started despite the bad input")
			}
		})
	}
}

// A TERM while gm2-init starts — here while node evaluates a .js process
// file that takes its time — is a stop request like any other: gm2-init
// ends at once with status 0 and starts nothing. (The Go runtime's default
// ended it with status 2 as PID 1, or killed it otherwise, after it had
// waited for the evaluation.)
func TestConfigSignalDuringStart(t *testing.T) {
	needNode(t)
	for _, pid1 := range []bool{true, false} {
		name := "not PID 1"
		if pid1 {
			name = "PID 1"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			fifo := filepath.Join(dir, "evaluating")
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(dir, "started")
			file := filepath.Join(dir, "slow.config.js")
			js := "const fs = require('fs');\n" +
				"fs.writeFileSync(" + strconv.Quote(fifo) + ", 'x');\n" +
				"Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); // 60 s, beyond the 10 s bound\n" +
				"module.exports = { apps: [{ name: 'app', script: 'sh', args: ['-c', 'touch " + marker + "; sleep 60'] }] };\n"
			if err := os.WriteFile(file, []byte(js), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"--config", file, "--health-addr", "off"}
			var wait func(time.Duration) int
			var signal func()
			var stderr func() string
			if pid1 {
				in := startInit(t, nil, args...)
				wait, stderr = in.Wait, in.rawLog
				signal = func() { in.Signal(unix.SIGTERM) }
			} else {
				cmd := exec.Command(bins.init, args...)
				var buf syncBuffer
				cmd.Stderr = &buf
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan int, 1)
				go func() {
					cmd.Wait()
					code := cmd.ProcessState.ExitCode()
					if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						code = 128 + int(ws.Signal())
					}
					done <- code
				}()
				t.Cleanup(func() { cmd.Process.Kill() })
				wait = func(d time.Duration) int {
					select {
					case code := <-done:
						return code
					case <-time.After(d):
						t.Fatalf("gm2-init still running %v after SIGTERM; stderr: %s", d, buf.String())
						return -1
					}
				}
				signal = func() { cmd.Process.Signal(unix.SIGTERM) }
				stderr = buf.String
			}
			// node has started evaluating the file when it writes to the
			// FIFO: an event, not a guess.
			opened := make(chan error, 1)
			go func() {
				f, err := os.Open(fifo)
				if err == nil {
					_, err = f.Read(make([]byte, 1))
					f.Close()
				}
				opened <- err
			}()
			select {
			case err := <-opened:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				// Unblock the reader, then fail.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatalf("node never evaluated the file; stderr: %s", stderr())
			}
			signal()
			// Well before the evaluation's own 10 s bound.
			if code := wait(5 * time.Second); code != 0 {
				t.Errorf("exit status %d, want 0; stderr: %s", code, stderr())
			}
			if !strings.Contains(stderr(), `"message":"stopped by a signal before any worker started"`) {
				t.Errorf("no log line says why it stopped; stderr: %s", stderr())
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the app was started")
			}
			// The evaluating node is gone with it.
			for _, pid := range procsWithArg(t, file) {
				t.Errorf("pid %d still evaluates %s", pid, file)
			}
		})
	}
}

// procsWithArg lists the pids whose command line holds arg.
func procsWithArg(t *testing.T, arg string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), arg) {
			out = append(out, pid)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A stop request while gm2-init probes node (before any worker exists)
// ends it at once with status 0, as during a .js process file's
// evaluation: the probe is cut short, and no worker is started. (The
// probe ran to its own 10 s bound, ignoring the TERM.)
func TestSignalDuringNodeProbe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "probing")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "started")
	// A node whose probe (node --version, node -p …) says it is being
	// probed, then hangs; run as a worker, it leaves a trace.
	node := "#!/bin/sh\ncase \"$1\" in\n-*) echo x > " + fifo + "; exec sleep 60 ;;\n*) touch " + marker + "; exec sleep 60 ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(dir, "node"), []byte(node), 0o755); err != nil {
		t.Fatal(err)
	}
	in := startInit(t, []string{"PATH=" + dir + ":" + os.Getenv("PATH")}, "--health-addr", "off", "--", "node", "app.js")
	probing := make(chan error, 1)
	go func() {
		f, err := os.Open(fifo)
		if err == nil {
			_, err = f.Read(make([]byte, 1))
			f.Close()
		}
		probing <- err
	}()
	select {
	case err := <-probing:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatalf("node was never probed; log: %s", in.rawLog())
	}
	in.Signal(unix.SIGTERM)
	// Well before the probe's own 10 s bound.
	if code := in.Wait(5 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0; log: %s", code, in.rawLog())
	}
	if !strings.Contains(in.rawLog(), `"message":"stopped by a signal before any worker started"`) {
		t.Errorf("no log line says why it stopped; log: %s", in.rawLog())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a worker was started")
	}
}
