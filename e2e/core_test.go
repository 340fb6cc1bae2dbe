package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// base flags for a test gm2-init: every address ephemeral.
func baseArgs(extra ...string) []string {
	return append([]string{"--health-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0"}, extra...)
}

func TestWorkersShareOneSocket(t *testing.T) {
	t.Parallel()
	in := startInit(t, nil, baseArgs("-i", "2", "--", bins.worker)...)
	addr := in.Addr("")
	in.WaitReady(2, 10*time.Second)
	seen := map[string]workerInfo{}
	for i := 0; i < 400 && len(seen) < 2; i++ {
		wi := getInfo(t, addr)
		seen[wi.Pid] = wi
	}
	if len(seen) != 2 {
		t.Fatalf("want answers from 2 distinct workers, got %v", seen)
	}
	instances := map[string]bool{}
	for pid, wi := range seen {
		if wi.ListenPid != pid {
			t.Errorf("worker %s: LISTEN_PID=%q, want its own pid", pid, wi.ListenPid)
		}
		if wi.ListenFDs != "1" || wi.FDNames != "tcp-0" || wi.Instances != "2" || wi.NodeApp != wi.Instance {
			t.Errorf("worker %s: env %+v", pid, wi)
		}
		instances[wi.Instance] = true
	}
	if !instances["0"] || !instances["1"] {
		t.Errorf("GM2_INSTANCE values %v, want 0 and 1", instances)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d after a clean shutdown, want 0", code)
	}
}

func TestOrphanZombiesAreReaped(t *testing.T) {
	t.Parallel()
	const n = 10000
	in := startInit(t, []string{"TW_ORPHANS=" + strconv.Itoa(n)}, baseArgs("-i", "1", "--", bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(1, 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	var reaped uint64
	for {
		_, body, err := httpGet(health, "/status")
		if err == nil {
			var st struct {
				Counters struct {
					Orphans uint64 `json:"orphans_reaped_total"`
				} `json:"counters"`
			}
			json.Unmarshal([]byte(body), &st)
			reaped = st.Counters.Orphans
		}
		if reaped >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// n orphans plus the orphan maker's own parent-less exit.
	if reaped < n {
		t.Fatalf("orphans reaped = %d, want ≥ %d", reaped, n)
	}
	for _, pid := range in.Children() {
		if procState(pid) == "Z" {
			t.Errorf("zombie child %d left unreaped", pid)
		}
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

func TestStopSignalReachesWorkerBehindShell(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mark := filepath.Join(dir, "term")
	// sh stays the parent (no exec): only a signal to the process group
	// reaches the real server.
	script := bins.worker + "; echo done > " + mark
	in := startInit(t, []string{"TW_DAEMON=" + filepath.Join(dir, "daemon")}, baseArgs("--kill-timeout", "5s", "--", "sh", "-c", script)...)
	addr := in.Addr("")
	in.WaitReady(1, 10*time.Second)
	getInfo(t, addr)
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0 (worker stopped gracefully)", code)
	}
	if in.CountLog("worker still running after the kill timeout; sending SIGKILL") != 0 {
		t.Error("the worker behind sh needed SIGKILL: the stop signal did not reach it")
	}
	// The double-forked grandchild (its own session, out of the group) got
	// SIGTERM from the final sweep instead of the kernel's SIGKILL.
	if b, _ := os.ReadFile(filepath.Join(dir, "daemon")); string(b) != "term" {
		t.Errorf("double-forked grandchild: %q, want it to have received SIGTERM", b)
	}
}

func TestKillTimeout(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_IGNORE_TERM=1"}, baseArgs("--kill-timeout", "300ms", "--", bins.worker)...)
	in.AllowUncleanStops() // SIGKILLed after the kill timeout, on purpose
	in.WaitReady(1, 10*time.Second)
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(15 * time.Second); code != 137 {
		t.Fatalf("exit status %d, want 137 (a worker had to be killed)", code)
	}
	if in.CountLog("worker still running after the kill timeout; sending SIGKILL") != 1 {
		t.Error("no log line for the kill timeout")
	}
}

func TestCrashLoopBacksOffThenErrors(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_CRASH=3"}, baseArgs("--max-restarts", "4", "--min-uptime", "1s", "--", bins.worker)...)
	code := in.Wait(30 * time.Second)
	if code != 1 {
		t.Fatalf("exit status %d, want 1 when every slot has errored", code)
	}
	var delays []time.Duration
	for _, l := range in.Lines() {
		if l.msg() == "restarting worker" {
			d, err := time.ParseDuration(l.str("delay"))
			if err != nil {
				t.Fatalf("delay %q: %v", l.str("delay"), err)
			}
			delays = append(delays, d)
		}
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	if len(delays) != len(want) {
		t.Fatalf("restart delays %v, want %v", delays, want)
	}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("restart delays %v, want %v", delays, want)
		}
	}
	if in.CountLog("worker keeps crashing on start; slot errored and not restarted") != 1 {
		t.Error("no errored log line")
	}
	// The time between starts grows: the log timestamps say so too.
	var starts []time.Time
	for _, l := range in.Lines() {
		if l.msg() == "worker started" {
			ts, _ := time.Parse(time.RFC3339, l.str("time"))
			starts = append(starts, ts)
		}
	}
	if len(starts) != 5 {
		t.Fatalf("%d starts, want 5", len(starts))
	}
}

func TestRestartPolicyNeverPassesExitCode(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_CRASH=7"}, "--health-addr", "off", "--restart", "never", "--", bins.worker)
	if code := in.Wait(10 * time.Second); code != 7 {
		t.Fatalf("exit status %d, want the worker's 7", code)
	}
	in2 := startInit(t, nil, "--health-addr", "off", "--restart", "on-failure", "--", "true")
	if code := in2.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
}

func TestPureInitModeSignalForwarding(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mark := filepath.Join(dir, "usr1")
	script := "trap 'echo usr1 > " + mark + "; exit 0' USR1; echo up > " + mark + ".up; while :; do sleep 0.05; done"
	in := startInit(t, nil, "--health-addr", "off", "--restart", "never", "--", "sh", "-c", script)
	in.WaitLog(10*time.Second, 0, "worker started", nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(mark + ".up"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("script did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	in.Signal(syscall.SIGUSR1)
	if code := in.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if b, _ := os.ReadFile(mark); strings.TrimSpace(string(b)) != "usr1" {
		t.Fatalf("USR1 not forwarded: %q", b)
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(bins.init, "--dry-run", "-i", "3", "--listen", "web=:8080", "--listen", "udp://127.0.0.1:5353", "--stop-signal", "INT", "--", "true").Output()
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if cfg["instances"] != float64(3) || cfg["stop_signal"] != "SIGINT" || cfg["instances_source"] == "" {
		t.Errorf("dry run: %s", out)
	}
	if l := cfg["listen"].([]any); len(l) != 2 || l[0].(map[string]any)["name"] != "web" {
		t.Errorf("listeners: %v", cfg["listen"])
	}
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	t.Parallel()
	run := func(env []string, args ...string) map[string]any {
		cmd := exec.Command(bins.init, append([]string{"--dry-run"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v %v: %v", env, args, err)
		}
		var m map[string]any
		json.Unmarshal(out, &m)
		return m
	}
	m := run([]string{"GM2_INSTANCES=3", "GM2_KILL_TIMEOUT=3s"}, "--", "true")
	if m["instances"] != float64(3) || m["kill_timeout"] != "3s" {
		t.Errorf("variables not read: %v", m)
	}
	m = run([]string{"GM2_INSTANCES=3"}, "-i", "2", "--", "true")
	if m["instances"] != float64(2) {
		t.Errorf("flag must win over the variable: %v", m["instances"])
	}
	// The app's own PORT/LOG_LEVEL are not gm2-init's.
	m = run([]string{"LOG_LEVEL=garbage", "INSTANCES=9"}, "--", "true")
	if m["instances"] != float64(1) || m["log_level"] != "info" {
		t.Errorf("unprefixed variables leaked into the configuration: %v", m)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	// A command that leaves a trace if it is ever started.
	cmd := []string{"--", "sh", "-c", "touch " + marker}
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string // in the one line
	}{
		{"unknown flag", nil, append([]string{"--nope"}, cmd...), 2, "--nope"},
		{"instances word", nil, append([]string{"-i", "abc"}, cmd...), 2, "-i/--instances"},
		{"instances fraction", nil, append([]string{"-i", "1.5"}, cmd...), 2, "-i/--instances"},
		{"instances env", []string{"GM2_INSTANCES=lots"}, cmd, 2, "GM2_INSTANCES"},
		{"port out of range", nil, append([]string{"--listen", ":70000"}, cmd...), 2, "--listen"},
		{"bad duration", nil, append([]string{"--kill-timeout", "soon"}, cmd...), 2, "--kill-timeout"},
		{"duration without unit", []string{"GM2_KILL_TIMEOUT=1600"}, cmd, 2, "GM2_KILL_TIMEOUT"},
		{"bad signal", nil, append([]string{"--stop-signal", "SIGNOPE"}, cmd...), 2, "--stop-signal"},
		{"uncatchable signal", nil, append([]string{"--stop-signal", "KILL"}, cmd...), 2, "--stop-signal"},
		{"bad restart", nil, append([]string{"--restart", "sometimes"}, cmd...), 2, "--restart"},
		{"missing command", nil, []string{"-i", "2", "--"}, 2, "missing command"},
		{"command not found", nil, []string{"--", "gm2-no-such-command"}, 2, "not found"},
		{"command not executable", nil, []string{"--", notExec}, 2, "not executable"},
		{"port in use", nil, append([]string{"--health-addr", "off", "--listen", busy.Addr().String()}, cmd...), 1, "address already in use"},
		{"unix socket in missing directory", nil, append([]string{"--health-addr", "off", "--listen", "unix://" + dir + "/missing/app.sock"}, cmd...), 2, "no such file"},
		{"health port in use", nil, append([]string{"--health-addr", busy.Addr().String()}, cmd...), 1, "--health-addr"},
		{"bad log format", nil, append([]string{"--log-format", "xml"}, cmd...), 2, "--log-format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bins.init, c.args...)
			cmd.Env = append(os.Environ(), c.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != c.code {
				t.Errorf("exit status %d, want %d; stderr: %s", code, c.code, stderr.String())
			}
			out := strings.TrimRight(stderr.String(), "\n")
			// JSON log lines may precede the error (the worker count); the
			// error itself is the last line and a plain one.
			lines := strings.Split(out, "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "gm2-init: ") || !strings.Contains(last, c.want) {
				t.Errorf("error line %q, want one line naming %q", last, c.want)
			}
			for _, l := range lines[:len(lines)-1] {
				if !strings.HasPrefix(l, "{") {
					t.Errorf("more than one plain error line: %q", out)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the command was started despite the bad input")
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(bins.init, "-h").Output()
	if err != nil || !strings.Contains(string(out), "GM2_INSTANCES") || !strings.Contains(string(out), "--kill-timeout") {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	out, err = exec.Command(bins.init, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "gm2-init ") {
		t.Fatalf("--version: %v %s", err, out)
	}
}
