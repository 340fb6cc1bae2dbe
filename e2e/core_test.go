package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	checkKilledAtTimeout(t, in, 300*time.Millisecond)
}

// checkKilledAtTimeout fails unless every worker gm2-init SIGKILLed got
// its SIGKILL the kill timeout kt after its stop signal, on time (onTime),
// whatever the timeout the run would have survived.
func checkKilledAtTimeout(t *testing.T, in *Init, kt time.Duration) {
	t.Helper()
	gaps := gapsAfter(t, in, "stopping worker", "worker still running after the kill timeout; sending SIGKILL", nil)
	if len(gaps) == 0 {
		t.Error("no worker was SIGKILLed")
	}
	for _, g := range gaps {
		if !onTime(g.gap, kt) {
			t.Errorf("worker %d SIGKILLed %v after its stop signal, want the kill timeout %v", g.pid, g.gap, kt)
		}
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
		if l.Msg() == "restarting worker" {
			d, err := time.ParseDuration(l.Str("delay"))
			if err != nil {
				t.Fatalf("delay %q: %v", l.Str("delay"), err)
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
	// The delays are waited, not only logged: each restart's start comes
	// at least its delay after the "restarting worker" line (the log's
	// times are to the millisecond, each cut down: 1 ms of slack).
	var starts int
	var due time.Time // when the pending restart may start, zero if none
	for _, l := range in.Lines() {
		switch l.Msg() {
		case "restarting worker":
			d, _ := time.ParseDuration(l.Str("delay"))
			due = timeOf(t, l).Add(d - time.Millisecond)
		case "worker started":
			starts++
			if ts := timeOf(t, l); !due.IsZero() && ts.Before(due) {
				t.Errorf("start %d at %s, before its backoff delay was over (%s)", starts, ts.Format("15:04:05.000"), due.Add(time.Millisecond).Format("15:04:05.000"))
			}
			due = time.Time{}
		}
	}
	if starts != 5 {
		t.Fatalf("%d starts, want 5", starts)
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

// gm2-init runs on at most 2 Ps whatever the node's CPU count, and a
// GOMAXPROCS in the environment is the app's: it reaches the worker as it
// is and does not change gm2-init's own.
func TestOwnGOMAXPROCSLeavesTheAppsVariable(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"GOMAXPROCS=64"}, "--health-addr", "off", "--restart", "never", "-i", "1", "--",
		"sh", "-c", `test "$GOMAXPROCS" = 64`)
	l, _ := in.WaitLog(10*time.Second, 0, "worker count", nil)
	if got, want := l.Num("gm2_init_procs"), float64(min(runtime.NumCPU(), 2)); got != want {
		t.Errorf("gm2-init's own GOMAXPROCS %v with GOMAXPROCS=64 in the environment, want %v", got, want)
	}
	if code := in.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d: the worker did not get GOMAXPROCS=64", code)
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
	for field, want := range map[string]any{
		"max_memory_restart": float64(0), "memory_check_interval": "30s", "queue_timeout": "5s",
		"max_shared_ports": float64(64), "config": "", "env": "", "name": "true", "instances_spec": "3",
	} {
		if cfg[field] != want {
			t.Errorf("%s = %v, want %v", field, cfg[field], want)
		}
	}
	if apps := cfg["apps"].([]any); len(apps) != 1 || apps[0].(map[string]any)["instances"] != float64(3) {
		t.Errorf("apps: %v", cfg["apps"])
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

// TestBadInput runs the real binary on 84 shapes of bad input: the 66 an
// adversarial pass found handled well and the 18 it found accepted (issue
// 12: marked "was accepted"). Each must be one line on stderr that names
// the flag or variable, exit status 2 (1 for a busy port), and nothing
// started; two typos of variable names are warnings instead.
//
// The shapes, by group (the numbers are the table's):
//
//	flags:      1 unknown long flag, 2 unknown short flag, 3-4 bad syntax,
//	            5-6 flag without its value, 7-8 an option given twice,
//	            9-10 a switch followed by a value, 11 bad switch value,
//	            12 a flag with a newline
//	command:    13 none, 14 none after --, 15 not found, 16 not executable,
//	            17 a directory, 18 in a missing directory
//	-i:         19 word, 20 fraction, 21 variable, 22 above the cap,
//	            23 100 KB value, 24 far below -max, 25 empty
//	CPUs:       26 --cpus above the cap, 27 negative, 28 fraction,
//	            29 --cpu-rounding
//	--listen:   30 port out of range, 31 empty, 32 GM2_LISTEN=",",
//	            33 relative unix path, 34 host name, 35 unknown scheme,
//	            36 the same address twice, 37 bad name, 38 missing
//	            directory, 39 a regular file at the path, 40 port in use,
//	            41 bad variable
//	durations:  42 word, 43 no unit, 44 zero kill timeout, 45 negative,
//	            46 zero listen timeout, 47 huge, 48 above 24h, 49 memory
//	            check too often, 50 queue timeout too short
//	signals:    51 unknown, 52 KILL, 53 TSTP, 54 CHLD, 55 32, 56 0
//	others:     57 --restart, 58 --max-restarts, 59 --reload-batch,
//	            60 GM2_WAIT_READY, 61-62 --health-addr, 63 health [::]
//	            over an IPv4 listener, 64 health on a listener, 65 health
//	            port in use, 66 --min-ready 0, 67 --min-ready above -i N,
//	            68 --min-ready above -i max, 69 --node-preload,
//	            70 --log-level, 71 --log-format, 72-74 --max-memory-restart
//	            10X, -5M, 0, 75 --max-shared-ports, 76 --config missing,
//	            77 --config a directory, 78 --only without --config,
//	            79 GM2_ENV without --config, 80 empty --only, 81 bad --env
//	variables:  82 GM2_INSTANCE=4 (warning), 83 GM2_KILLTIMEOUT (warning),
//	            84 a value with a newline
func TestBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, freePort, _ := net.SplitHostPort(free.Addr().String())
	free.Close()
	dir := t.TempDir()
	// A command that leaves a trace if it is ever started: MARKER is a
	// file of each case's own, so that one accepted case does not fail the
	// others.
	cmd := []string{"--", "sh", "-c", "touch MARKER"}
	with := func(args ...string) []string { return append(args, cmd...) }
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("x"), 0o644)
	procfile := filepath.Join(dir, "ecosystem.json")
	os.WriteFile(procfile, []byte(`{"apps":[]}`), 0o644)
	huge := strings.Repeat("9", 100*1024)
	const (
		usage   = 2
		runtime = 1
		warning = 0 // with --dry-run: exit 0, one warning line
	)
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string // in the one line
	}{
		{"1 unknown flag", nil, with("--nope"), usage, "unknown flag --nope"},
		{"2 unknown short flag", nil, with("-x"), usage, "unknown flag -x"},
		{"3 bad flag syntax", nil, with("---x"), usage, `bad flag syntax "---x"`},
		{"4 bad flag syntax =", nil, with("--=x"), usage, `bad flag syntax "--=x"`},
		{"5 -i without a value", nil, []string{"-i"}, usage, "flag -i needs a value"},
		{"6 --kill-timeout without a value", nil, []string{"--kill-timeout"}, usage, "flag --kill-timeout needs a value"},
		{"7 option twice (was accepted)", nil, with("-i", "2", "--instances", "3"), usage, "-i/--instances given twice"},
		{"8 option twice, same spelling", nil, with("--restart", "never", "--restart", "always"), usage, "--restart given twice"},
		{"9 switch then false (was accepted)", nil, with("--wait-ready", "false", "--dry-run"), usage, "a switch takes its value after '=' (--wait-ready=false)"},
		{"10 switch then true", nil, with("--dry-run", "true"), usage, "(--dry-run=true)"},
		{"11 bad switch value", nil, with("--dry-run=perhaps"), usage, `--dry-run: invalid value "perhaps"`},
		{"12 flag with a newline", nil, with("--a\nb"), usage, `unknown flag "--a\nb"`},

		{"13 missing command", nil, nil, usage, "missing command"},
		{"14 missing command after --", nil, []string{"-i", "2", "--"}, usage, "missing command"},
		{"15 command not found", nil, []string{"--", "gm2-no-such-command"}, usage, "not found"},
		{"16 command not executable", nil, []string{"--", notExec}, usage, "not executable"},
		{"17 command is a directory", nil, []string{"--", dir}, usage, "is a directory"},
		{"18 command in a missing directory", nil, []string{"--", "/nonexistent/app"}, usage, "no such file"},

		{"19 instances word", nil, with("-i", "abc"), usage, "-i/--instances"},
		{"20 instances fraction", nil, with("-i", "1.5"), usage, "-i/--instances"},
		{"21 instances env", []string{"GM2_INSTANCES=lots"}, cmd, usage, "GM2_INSTANCES"},
		{"22 instances above the cap", nil, with("-i", "1025"), usage, "from 1 to 1024"},
		{"23 100 KB value (was echoed whole)", nil, with("-i", huge), usage, `-i/--instances: invalid value "` + huge[:64] + `…"`},
		{"24 instances far below -max", nil, with("-i", "-2000"), usage, "-i/--instances"},
		{"25 instances empty", nil, with("-i", ""), usage, `-i/--instances: invalid value ""`},

		{"26 cpus above the cap (was accepted)", nil, with("--cpus", "100000", "-i", "max"), usage, "--cpus: invalid value \"100000\": accepted: 0 (detect) or a whole number of CPUs from 1 to 1024"},
		{"27 cpus negative", nil, with("--cpus", "-1"), usage, "--cpus"},
		{"28 cpus fraction", nil, with("--cpus", "1.5"), usage, "--cpus"},
		{"29 cpu rounding", nil, with("--cpu-rounding", "round"), usage, "accepted: floor or ceil"},

		{"30 port out of range", nil, with("--listen", ":70000"), usage, "--listen"},
		{"31 empty listen (was accepted)", nil, with("--listen", ""), usage, `--listen: invalid value "": no address`},
		{"32 listen list with no address (was accepted)", []string{"GM2_LISTEN=,"}, cmd, usage, `GM2_LISTEN: invalid value ",": no address`},
		{"33 relative unix path", nil, with("--listen", "unix://rel.sock"), usage, "absolute path"},
		{"34 host name", nil, with("--listen", "example.com:80"), usage, "is not an IP address"},
		{"35 unknown scheme", nil, with("--listen", "ftp://:21"), usage, "unknown scheme"},
		{"36 same address twice", nil, with("--listen", ":8080", "--listen", "8080"), usage, "bind the same address"},
		{"37 bad listener name", nil, with("--listen", "a b=:1"), usage, "may only hold"},
		{"38 unix socket in missing directory (was 3 lines)", nil, with("--health-addr", "off", "--listen", "unix://"+dir+"/missing/app.sock"), usage, "no such file"},
		{"39 unix socket path is a regular file", nil, with("--health-addr", "off", "--listen", "unix://"+regular), usage, "is not a socket; refusing to remove it"},
		{"40 port in use", nil, with("--health-addr", "off", "--listen", busy.Addr().String()), runtime, "address already in use"},
		{"41 bad listen variable", []string{"GM2_LISTEN=http=:8080,:99999"}, cmd, usage, "GM2_LISTEN"},

		{"42 bad duration", nil, with("--kill-timeout", "soon"), usage, "--kill-timeout"},
		{"43 duration without unit", []string{"GM2_KILL_TIMEOUT=1600"}, cmd, usage, "GM2_KILL_TIMEOUT"},
		{"44 zero kill timeout", nil, with("--kill-timeout", "0"), usage, "from 1ms to 24h"},
		{"45 negative min uptime", nil, with("--min-uptime", "-1s"), usage, "--min-uptime"},
		{"46 zero listen timeout", nil, with("--listen-timeout", "0s"), usage, "--listen-timeout"},
		{"47 huge durations (overflowed worst_case_stop)", nil, with("--shutdown-delay", "2562047h", "--kill-timeout", "2562047h"), usage, "at most 24h"},
		{"48 shutdown delay above 24h", []string{"GM2_SHUTDOWN_DELAY=25h"}, cmd, usage, "GM2_SHUTDOWN_DELAY"},
		{"49 memory check too often", nil, with("--memory-check-interval", "500ms"), usage, "from 1s to 24h"},
		{"50 queue timeout too short", nil, with("--queue-timeout", "10ms"), usage, "0 (off) or a duration from 100ms"},

		{"51 bad signal", nil, with("--stop-signal", "SIGNOPE"), usage, "--stop-signal"},
		{"52 uncatchable signal", nil, with("--stop-signal", "KILL"), usage, "cannot be caught"},
		{"53 TSTP (was accepted)", nil, with("--stop-signal", "TSTP"), usage, "suspends a process"},
		{"54 CHLD (was accepted)", nil, with("--stop-signal", "CHLD"), usage, "does not ask a server to stop"},
		{"55 signal 32 (was accepted)", nil, with("--stop-signal", "32"), usage, "does not ask a server to stop"},
		{"56 signal 0", []string{"GM2_STOP_SIGNAL=0"}, cmd, usage, "GM2_STOP_SIGNAL"},

		{"57 bad restart", nil, with("--restart", "sometimes"), usage, "--restart"},
		{"58 negative max restarts", nil, with("--max-restarts", "-1"), usage, "--max-restarts"},
		{"59 zero reload batch", nil, with("--reload-batch", "0"), usage, "--reload-batch"},
		{"60 bad wait-ready variable", []string{"GM2_WAIT_READY=maybe"}, cmd, usage, "GM2_WAIT_READY"},
		{"61 health host name", nil, with("--health-addr", "example.com:80"), usage, "--health-addr"},
		{"62 empty health variable (was off, silently)", []string{"GM2_HEALTH_ADDR="}, cmd, usage, `GM2_HEALTH_ADDR: invalid value "": accepted: off, PORT, :PORT`},
		{"63 health [::] over an IPv4 listener (was accepted)", nil, with("--health-addr", "[::]:"+freePort, "--listen", "0.0.0.0:"+freePort), usage, "bind the same address"},
		{"64 health on a listener", nil, with("--listen", ":9000"), usage, "--health-addr default"},
		{"65 health port in use", nil, with("--health-addr", busy.Addr().String()), runtime, "--health-addr"},
		{"66 zero min ready", nil, with("--min-ready", "0"), usage, "--min-ready"},
		{"67 min ready above -i N (was accepted)", nil, with("--min-ready", "5", "-i", "2"), usage, "--min-ready: 5 is more than the 2 workers of -i/--instances 2"},
		{"68 min ready above -i max", nil, with("--cpus", "2", "-i", "max", "--min-ready", "5"), usage, "on 2 usable CPUs"},
		{"69 bad node preload", nil, with("--node-preload", "maybe"), usage, "--node-preload"},
		{"70 bad log level", nil, with("--log-level", "loud"), usage, "--log-level"},
		{"71 bad log format", nil, with("--log-format", "xml"), usage, "--log-format"},
		{"72 memory size 10X", nil, with("--max-memory-restart", "10X"), usage, `--max-memory-restart: invalid value "10X": accepted: a number of bytes (1048576) or a number with a K, M, G or T suffix, powers of 1024 (512K, 300M, 1G`},
		{"73 memory size -5M", nil, with("--max-memory-restart=-5M"), usage, `--max-memory-restart: invalid value "-5M": accepted: a number of bytes (1048576) or a number with a K, M, G or T suffix, powers of 1024 (512K, 300M, 1G`},
		{"74 memory size 0", []string{"GM2_MAX_MEMORY_RESTART=0"}, cmd, usage, "GM2_MAX_MEMORY_RESTART"},
		{"75 zero shared ports", nil, with("--max-shared-ports", "0"), usage, "from 1 to 1024"},
		{"76 process file missing", nil, with("--config", dir+"/nope.json"), usage, "--config: invalid value"},
		{"77 process file is a directory", nil, with("--config", dir), usage, "not a regular file"},
		{"78 --only without --config", nil, with("--only", "web"), usage, "--only selects from a process file"},
		{"79 GM2_ENV without --config", []string{"GM2_ENV=production"}, cmd, usage, "GM2_ENV selects from a process file"},
		{"80 empty --only", nil, with("--config", procfile, "--only", ","), usage, "--only"},
		{"81 bad --env", nil, with("--config", procfile, "--env", "a/b"), usage, "--env"},

		{"82 GM2_INSTANCE typo (was silent)", []string{"GM2_INSTANCE=4"}, with("--dry-run"), warning, "did you mean GM2_INSTANCES?"},
		{"83 GM2_KILLTIMEOUT typo", []string{"GM2_KILLTIMEOUT=3s"}, with("--dry-run"), warning, "did you mean GM2_KILL_TIMEOUT?"},
		{"84 value with a newline", []string{"GM2_LOG_LEVEL=info\nerror"}, cmd, usage, `GM2_LOG_LEVEL: invalid value "info\nerror"`},
	}
	if len(cases) != 84 {
		t.Fatalf("%d shapes, want 84", len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			marker := filepath.Join(dir, "started-"+strconv.Itoa(i))
			args := make([]string, len(c.args))
			for j, a := range c.args {
				args[j] = strings.ReplaceAll(a, "MARKER", marker)
			}
			code, stdout, stderr := runRejected(t, args, c.env)
			if code != c.code {
				t.Errorf("exit status %d, want %d; stderr: %.300s", code, c.code, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			switch {
			case c.code == warning:
				var l logLine
				if len(lines) != 1 || json.Unmarshal([]byte(last), &l) != nil || l["level"] != "warn" || !strings.Contains(l.Msg(), c.want) {
					t.Errorf("stderr %q, want one warning naming %q", stderr, c.want)
				}
				var m map[string]any
				if json.Unmarshal([]byte(stdout), &m) != nil || m["instances"] != float64(1) {
					t.Errorf("dry run: %.300s", stdout)
				}
			case c.code == runtime && strings.Contains(c.want, "--health-addr"):
				// The health port is bound after the start has been
				// logged: JSON lines, then the error.
				if !strings.HasPrefix(last, "gm2-init: ") || !strings.Contains(last, c.want) {
					t.Errorf("error line %q, want one line naming %q", last, c.want)
				}
				for _, l := range lines[:len(lines)-1] {
					if !strings.HasPrefix(l, "{") {
						t.Errorf("more than one plain error line: %q", stderr)
					}
				}
			default:
				if len(lines) != 1 || !strings.HasPrefix(last, "gm2-init: ") || !strings.Contains(last, c.want) {
					t.Errorf("stderr %.500q, want exactly one line naming %q", stderr, c.want)
				}
				if len(last) > 1000 {
					t.Errorf("a line of %d bytes", len(last))
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the command was started despite the bad input")
			}
		})
	}
}

// Flags after a switch's "=value" still count, and the worst-case stop of
// the largest accepted durations is computed without overflow.
func TestDryRunSwitchesAndBudget(t *testing.T) {
	t.Parallel()
	run := func(args ...string) map[string]any {
		t.Helper()
		out, err := exec.Command(bins.init, append([]string{"--dry-run"}, args...)...).Output()
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
		return m
	}
	m := run("--wait-ready=false", "-i", "2", "--", "true")
	if m["wait_ready"] != false || m["instances"] != float64(2) {
		t.Errorf("--wait-ready=false -i 2: %v %v", m["wait_ready"], m["instances"])
	}
	m = run("--wait-ready", "-i", "2", "--", "true")
	if m["wait_ready"] != true || m["instances"] != float64(2) {
		t.Errorf("--wait-ready -i 2: %v %v", m["wait_ready"], m["instances"])
	}
	m = run("--shutdown-delay", "24h", "--kill-timeout", "24h", "--", "true")
	if m["worst_case_stop"] != "48h0m1s" {
		t.Errorf("worst_case_stop = %v", m["worst_case_stop"])
	}
	m = run("--cpus", "1024", "-i", "max", "--", "true")
	if m["instances"] != float64(1024) {
		t.Errorf("--cpus 1024 -i max: %v workers", m["instances"])
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
