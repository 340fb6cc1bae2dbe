package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/bytesize"
	"github.com/gm2-init/gm2-init/internal/cgroup"
	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// cleanEnv leaves the test no GM2_* variable of the outside.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GM2_") || name == "NODE_APP_INSTANCE" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

// planFile parses args (with $FILE standing for a process file holding
// content) and env, and plans the apps on cpu usable CPUs.
func planFile(t *testing.T, content string, env, args []string, cpu int) (*plan, *config.Config, string, error) {
	t.Helper()
	cleanEnv(t)
	file := filepath.Join(t.TempDir(), "eco.json")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	full := make([]string, len(args))
	for i, a := range args {
		full[i] = strings.ReplaceAll(a, "$FILE", file)
	}
	cfg, err := config.Parse(full)
	if err != nil {
		t.Fatalf("config.Parse(%q): %v", full, err)
	}
	p, err := planApps(context.Background(), cfg, cpus.Result{Max: cpu})
	return p, cfg, file, err
}

// What planApps refuses in a process file, against the command line's
// settings: one line naming the flag or variable, the file, the app and
// what is accepted.
func TestPlanAppsErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		env     []string
		args    []string
		want    string // $FILE: the process file
	}{
		{"app on the health port, [::] over 0.0.0.0",
			`{"apps": [{"name": "api", "script": "sh", "listen": "0.0.0.0:19000"}]}`, nil,
			[]string{"--config", "$FILE", "--health-addr", "[::]:19000"},
			`$FILE: app "api": listen: "0.0.0.0:19000" and --health-addr "[::]:19000" bind the same address; give one of them another port (or --health-addr off)`},
		{"app on the default health port",
			`{"apps": [{"name": "api", "script": "sh", "listen": ":9000"}]}`, nil,
			[]string{"--config", "$FILE"},
			`$FILE: app "api": listen: ":9000" and --health-addr default ":9000" bind the same address; give one of them another port (or --health-addr off)`},
		{"second app on the health port",
			`{"apps": [{"name": "api", "script": "sh", "listen": ":3000"}, {"name": "web", "script": "sh", "listen": "tcp4://127.0.0.1:9100"}]}`,
			[]string{"GM2_HEALTH_ADDR=:9100"}, []string{"--config", "$FILE"},
			`$FILE: app "web": listen: "tcp4://127.0.0.1:9100" and GM2_HEALTH_ADDR ":9100" bind the same address; give one of them another port (or --health-addr off)`},
		{"min ready above a cluster app's fixed count",
			`{"apps": [{"name": "api", "script": "sh", "instances": 1}]}`,
			[]string{"GM2_MIN_READY=2"}, []string{"--config", "$FILE"},
			`$FILE: app "api": GM2_MIN_READY 2 is more than its 1 worker (instances 1); accepted: a whole number from 1 to the worker count, or all`},
		{"min ready above a cluster app's share of the CPUs",
			`{"apps": [{"name": "api", "script": "sh", "instances": "max"}, {"name": "worker", "script": "sh", "exec_mode": "fork"}, {"name": "web", "script": "sh", "instances": "max"}]}`,
			nil, []string{"--config", "$FILE", "--min-ready", "2"},
			`$FILE: app "web": --min-ready 2 is more than its 1 worker (instances max); accepted: a whole number from 1 to the worker count, or all`},
		{"GM2_ONLY names no app",
			`{"apps": [{"name": "api", "script": "sh"}]}`,
			[]string{"GM2_ONLY=nope"}, []string{"--config", "$FILE"},
			`$FILE: GM2_ONLY: no app named "nope" (the file has api)`},
		{"--only names no app",
			`{"apps": [{"name": "api", "script": "sh"}]}`,
			nil, []string{"--config", "$FILE", "--only", "nope"},
			`$FILE: --only: no app named "nope" (the file has api)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, file, err := planFile(t, tt.content, tt.env, tt.args, 4)
			want := strings.ReplaceAll(tt.want, "$FILE", file)
			if err == nil {
				t.Fatalf("planApps = %+v, want the error %s", p, want)
			}
			if err.Error() != want {
				t.Errorf("planApps error\n got %s\nwant %s", err, want)
			}
		})
	}
}

// A listener that fails to bind is named where it was asked for: the
// process file's app and key, never --listen (refused with --config).
func TestBindErrorNamesTheApp(t *testing.T) {
	spec := func(raw string) sockets.Spec {
		s, err := sockets.ParseSpec(raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	shared, own := spec("127.0.0.1:3000"), spec("unix:///nope/web.sock")
	p := &plan{apps: []appspec.App{
		{Name: "api", Listen: []sockets.Spec{shared}},
		{Name: "web", Listen: []sockets.Spec{shared, own}},
	}}
	withFile := &config.Config{}
	withFile.ConfigFile = "eco.json"
	tests := []struct {
		name string
		cfg  *config.Config
		err  error
		want string
	}{
		{"shared socket: the first app", withFile, &sockets.BindError{Spec: shared, Err: unix.EADDRINUSE},
			`eco.json: app "api": listen: bind 127.0.0.1:3000: address already in use`},
		{"the second app's own", withFile, &sockets.BindError{Spec: own, Err: unix.ENOENT, Usage: true},
			`eco.json: app "web": listen: bind unix:///nope/web.sock: no such file or directory`},
		{"no process file", &config.Config{}, &sockets.BindError{Spec: shared, Err: unix.EADDRINUSE},
			`--listen: bind 127.0.0.1:3000: address already in use`},
	}
	for _, tt := range tests {
		if got := p.bindError(tt.cfg, tt.err); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// --min-ready (GM2_MIN_READY) is every app's default: a fork app, which
// runs one process, is ready with it, whatever the cluster apps need.
func TestPlanAppsMinReadyForkApps(t *testing.T) {
	for _, tt := range []struct {
		name     string
		env      []string
		args     []string
		minReady []int // per app: api (cluster), worker (fork)
	}{
		{"GM2_MIN_READY=2", []string{"GM2_MIN_READY=2"}, []string{"--config", "$FILE"}, []int{2, 1}},
		{"--min-ready 4", nil, []string{"--config", "$FILE", "--min-ready", "4"}, []int{4, 1}},
		{"--min-ready all", nil, []string{"--config", "$FILE", "--min-ready", "all"}, []int{0, 0}},
		{"default", nil, []string{"--config", "$FILE"}, []int{1, 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _, _, err := planFile(t, `{"apps": [{"name": "api", "script": "sh", "instances": 4}, {"name": "worker", "script": "sh", "exec_mode": "fork"}]}`,
				tt.env, tt.args, 2)
			if err != nil {
				t.Fatalf("planApps: %v", err)
			}
			for i, want := range tt.minReady {
				if got := p.apps[i].MinReady; got != want {
					t.Errorf("app %s: min ready %d, want %d", p.apps[i].Name, got, want)
				}
			}
		})
	}
}

// The sum of the workers' memory limits that start-up logs saturates
// instead of wrapping around (it came out 0, or small, and no warning).
func TestLogMemoryBudgetSaturates(t *testing.T) {
	huge := appspec.App{Name: "a", MaxMemory: 1 << 62}
	p := &plan{
		apps:   []appspec.App{huge, huge},
		counts: []appspec.Count{{N: 4}, {N: 1024}},
	}
	var buf bytes.Buffer
	logMemoryBudget(zerolog.New(&buf), p, cgroup.ReadMemoryLimitSystem())
	var line struct {
		Sum string `json:"workers_limit_sum"`
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(l, `"message":"memory limit"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := bytesize.Format(1 << 62); line.Sum != want {
		t.Errorf("workers_limit_sum %q, want %q (saturated); log:\n%s", line.Sum, want, buf.String())
	}
}

func TestNodeOptions(t *testing.T) {
	for _, c := range []struct {
		env       []string
		inherited string
		want      string
	}{
		{nil, "--inherited", "--inherited"},
		{[]string{"PORT=1"}, "--inherited", "--inherited"},
		{[]string{"NODE_OPTIONS=--a", "NODE_OPTIONS=--b"}, "--inherited", "--b"},
		{[]string{"NODE_OPTIONS="}, "--inherited", ""},
		{[]string{"NODE_OPTIONSX=--a"}, "", ""},
	} {
		if got := nodeOptions(c.env, c.inherited); got != c.want {
			t.Errorf("nodeOptions(%q, %q) = %q, want %q", c.env, c.inherited, got, c.want)
		}
	}
}

// --dry-run lists every warning a start logs about the configuration, in
// the same order: the process file's unknown keys and the oversubscribed
// CPUs (it listed only the GM2_* variables'), the memory budget's too.
func TestDryRunPlanWarnings(t *testing.T) {
	p, cfg, _, err := planFile(t,
		`{"apps": [{"name": "api", "script": "sh", "instanses": 2, "max_memory_restrat": "1G", "watch": true, "instances": 4, "max_memory_restart": "1G"}]}`,
		[]string{"GM2_KILLTIMEOUT=3s"}, []string{"--config", "$FILE"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	cpu := cpus.Result{Max: 2, Warnings: []string{"cpu.max unreadable"}}
	lim := cgroup.MemoryLimit{Bytes: 1 << 30, Limited: true, Warnings: []string{"memory.max odd"}}
	var logged []string
	var buf bytes.Buffer
	ws := p.startWarnings(cfg, cpu)
	logWarnings(zerolog.New(&buf), ws, cpu)
	logMemoryBudget(zerolog.New(&buf), p, lim)
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var line struct{ Level, Message string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if line.Level == "warn" {
			logged = append(logged, line.Message)
		}
	}
	var out bytes.Buffer
	if err := cfg.WriteDryRun(&out, "v", cpu, p.dryRunPlan(cpu, lim, nil)); err != nil {
		t.Fatal(err)
	}
	var dry struct{ Warnings []string }
	if err := json.Unmarshal(out.Bytes(), &dry); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 8 || !slices.Equal(dry.Warnings, logged) {
		t.Errorf("--dry-run warnings:\n%s\nwant what a start logs:\n%s", strings.Join(dry.Warnings, "\n"), strings.Join(logged, "\n"))
	}
}

// Two apps that name one address share its socket, and each app's workers
// see it under that app's own name in LISTEN_FDNAMES: the socket is bound
// with the first app's spec, whose name another of its listeners may have
// lengthened (tcp-127.0.0.1-18080 beside [::1]:18080).
func TestListenersOfKeepEachAppsName(t *testing.T) {
	spec := func(raw, name string) sockets.Spec {
		s, err := sockets.ParseSpec(raw)
		if err != nil {
			t.Fatal(err)
		}
		s.Name = name
		return s
	}
	p := &plan{apps: []appspec.App{
		{Name: "a", Listen: []sockets.Spec{spec("127.0.0.1:18080", "tcp-127.0.0.1-18080"), spec("[::1]:18080", "tcp-__1-18080")}},
		{Name: "b", Listen: []sockets.Spec{spec("127.0.0.1:18080", "tcp-18080")}},
	}}
	specs, _ := p.specs()
	var bound []*sockets.Listener
	for _, s := range specs {
		bound = append(bound, &sockets.Listener{Spec: s, Bound: s.Addr})
	}
	names := func(ls []*sockets.Listener) (out []string) {
		for _, l := range ls {
			out = append(out, l.Spec.Name)
		}
		return out
	}
	if got := names(p.listenersOf(0, bound)); strings.Join(got, " ") != "tcp-127.0.0.1-18080 tcp-__1-18080" {
		t.Errorf("app a's listeners %v", got)
	}
	b := p.listenersOf(1, bound)
	if got := names(b); strings.Join(got, " ") != "tcp-18080" || b[0].Bound != bound[0].Bound {
		t.Errorf("app b's listeners %v (bound %s), want its own name tcp-18080 on the shared socket", got, b[0].Bound)
	}
	if bound[0].Spec.Name != "tcp-127.0.0.1-18080" {
		t.Errorf("the shared listener itself was renamed: %s", bound[0].Spec.Name)
	}
}

// More that planApps refuses: the command after -- named like an app of
// the file, --min-ready above the command's own count (named as the
// command, not the file), more than 1,024 workers in all with the
// command's (which the file's own check cannot see).
func TestPlanAppsErrorsCommandAndTotal(t *testing.T) {
	for _, tt := range []struct {
		name, content string
		args          []string
		want          string // $FILE: the process file
	}{
		{"command named like a file app", `{"apps": [{"name": "sh", "script": "sh"}]}`,
			[]string{"--config", "$FILE", "--", "sh", "-c", "true"},
			`--config: the command after -- is named "sh", like an app of the file; run it from the file, or give the file app another name`},
		{"min ready above the command's workers", `{"apps": [{"name": "api", "script": "sh", "instances": 4, "min_ready": 1}]}`,
			[]string{"--config", "$FILE", "--min-ready", "3", "-i", "2", "--", "sleep", "1"},
			`the command after --: app "sleep": --min-ready 3 is more than its 2 workers (instances 2); accepted: a whole number from 1 to the worker count, or all`},
		{"more than 1,024 workers with the command's", `{"apps": [{"name": "a", "script": "sh", "instances": 1000}]}`,
			[]string{"--config", "$FILE", "-i", "25", "--", "sleep", "1"},
			`$FILE: the apps ask for more than 1024 workers in all (gm2-init's cap); lower their instances`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _, file, err := planFile(t, tt.content, nil, tt.args, 4)
			want := strings.ReplaceAll(tt.want, "$FILE", file)
			if err == nil || err.Error() != want {
				t.Errorf("planApps = %+v, %v\nwant the error %s", p, err, want)
			}
		})
	}
}

// The command after -- runs beside the file's apps, as an app of its own;
// without --config it is the one app, and the warnings of its count (more
// workers than CPUs) are the start's.
func TestPlanAppsCommand(t *testing.T) {
	p, _, _, err := planFile(t, `{"apps": [{"name": "api", "script": "sh", "instances": 2}]}`, nil,
		[]string{"--config", "$FILE", "-i", "3", "--", "sleep", "1"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.apps) != 2 || p.apps[1].Name != "sleep" || p.total() != 5 {
		t.Errorf("apps %v, %d workers; want api and sleep, 5 workers", p.apps, p.total())
	}
	p, _, _, err = planFile(t, `{}`, nil, []string{"-i", "8", "--", "sleep", "1"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.apps) != 1 || p.total() != 8 || len(p.warnings) != 1 || !strings.Contains(p.warnings[0], "8 workers on 2 usable CPUs") {
		t.Errorf("-i 8 on 2 CPUs: %d workers, warnings %q", p.total(), p.warnings)
	}
}

// Two apps that name the same address share one socket; the sockets the
// parent passed (beyond the addresses' own) go to the first app not in
// fork mode, and to it alone.
func TestSpecsAndInheritedListeners(t *testing.T) {
	spec := func(raw string) sockets.Spec {
		s, err := sockets.ParseSpec(raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := spec("127.0.0.1:18081"), spec("127.0.0.1:18082")
	p := &plan{apps: []appspec.App{
		{Name: "job", ExecMode: appspec.Fork},
		{Name: "api", Listen: []sockets.Spec{a}},
		{Name: "web", Listen: []sockets.Spec{b, a}},
	}}
	specs, at := p.specs()
	if len(specs) != 2 || fmt.Sprint(at) != "[[] [0] [1 0]]" {
		t.Fatalf("specs %v at %v, want 2 sockets, web's second the one api has", specs, at)
	}
	var ls []*sockets.Listener
	for _, s := range specs {
		ls = append(ls, &sockets.Listener{Spec: s, Bound: s.Addr})
	}
	passed := &sockets.Listener{Spec: spec("127.0.0.1:18083"), Bound: "127.0.0.1:18083", Inherited: true}
	ls = append(ls, passed)
	for i, want := range [][]*sockets.Listener{nil, {ls[0], passed}, {ls[1], ls[0]}} {
		got := p.listenersOf(i, ls)
		var g, w []string
		for _, l := range got {
			g = append(g, l.Bound)
		}
		for _, l := range want {
			w = append(w, l.Bound)
		}
		if !slices.Equal(g, w) {
			t.Errorf("app %s: listeners %v, want %v", p.apps[i].Name, g, w)
		}
	}
}

// The stop budget's kill timeout is the longest of the apps'.
func TestMaxKillTimeout(t *testing.T) {
	p := &plan{apps: []appspec.App{{KillTimeout: 2 * time.Second}, {KillTimeout: 9 * time.Second}, {KillTimeout: time.Second}}}
	if got := p.maxKillTimeout(); got != 9*time.Second {
		t.Errorf("maxKillTimeout = %v, want 9s", got)
	}
}

// The workers' --max-memory-restart limits warn when they add up to more
// than the container's limit: not when they add up to it exactly; and
// their sum saturates rather than wrap around, also when it is the
// addition that overflows.
func TestMemoryWarningsBound(t *testing.T) {
	p := &plan{apps: []appspec.App{{MaxMemory: 256 << 20}}, counts: []appspec.Count{{N: 4}}}
	for _, tt := range []struct {
		limit uint64
		warn  bool
	}{{1 << 30, false}, {1<<30 - 1, true}} {
		if got := len(p.memoryWarnings(cgroup.MemoryLimit{Bytes: tt.limit, Limited: true})) > 0; got != tt.warn {
			t.Errorf("4 × 256M under a limit of %d: warning %v, want %v", tt.limit, got, tt.warn)
		}
	}
	p = &plan{apps: []appspec.App{{MaxMemory: 1<<63 - 1}, {MaxMemory: 1<<63 - 1}, {MaxMemory: 1<<63 - 1}}, counts: []appspec.Count{{N: 1}, {N: 1}, {N: 1}}}
	if got := p.memoryLimitSum(); got != math.MaxUint64 {
		t.Errorf("3 × (2^63-1) = %d, want saturated", got)
	}
}

// --node-preload off: node is not probed, the workers get no preload and
// the log says nothing of it. A node that refuses the preload turns it
// off, with a warning; one that takes it gives it to the workers.
func TestSpawnAppsNodePreload(t *testing.T) {
	dir := t.TempDir()
	probed := filepath.Join(dir, "probed")
	node := "#!/bin/sh\ntouch " + probed + "\necho 'node: bad option' >&2\nexit 9\n"
	if err := os.WriteFile(filepath.Join(dir, "node"), []byte(node), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	for _, mode := range []string{"off", "auto"} {
		var buf bytes.Buffer
		p := &plan{apps: []appspec.App{{Name: "app", Command: []string{"node", "app.js"}, NodePreload: mode}}, counts: []appspec.Count{{N: 1}}}
		apps, cleanup := p.spawnApps(context.Background(), zerolog.New(&buf), nil)
		cleanup()
		_, err := os.Stat(probed)
		switch mode {
		case "off":
			if err == nil || len(apps[0].PreloadEnv) != 0 || buf.Len() != 0 {
				t.Errorf("--node-preload off: probed %v, preload %q, log %s", err == nil, apps[0].PreloadEnv, buf.String())
			}
		default:
			var line struct{ Level, Mode, Message string }
			json.Unmarshal(buf.Bytes(), &line)
			if err != nil || len(apps[0].PreloadEnv) != 0 || line.Message != "node preload" || line.Level != "warn" || line.Mode != "off" {
				t.Errorf("a node that refuses the preload: probed %v, preload %q, log %s", err == nil, apps[0].PreloadEnv, buf.String())
			}
		}
	}
	// A node that takes it: the workers get it.
	node = "#!/bin/sh\necho v20.11.0\n"
	if err := os.WriteFile(filepath.Join(dir, "node"), []byte(node), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	p := &plan{apps: []appspec.App{{Name: "app", Command: []string{"node", "app.js"}, NodePreload: "auto"}}, counts: []appspec.Count{{N: 1}}}
	apps, cleanup := p.spawnApps(context.Background(), zerolog.New(&buf), nil)
	defer cleanup()
	if !slices.ContainsFunc(apps[0].PreloadEnv, func(kv string) bool { return strings.HasPrefix(kv, "NODE_OPTIONS=") }) ||
		!strings.Contains(buf.String(), `"level":"info"`) {
		t.Errorf("a node that takes the preload: preload %q, log %s", apps[0].PreloadEnv, buf.String())
	}
}

// The start's "worker count" line: the count in all, and for one app its
// -i, for several how the CPUs were split; a plan warning names the CPU
// count, the CPU detection's its component.
func TestLogCountsAndWarnings(t *testing.T) {
	p, cfg, _, err := planFile(t, `{"apps": [{"name": "api", "script": "sh", "instances": "max"}, {"name": "job", "script": "sh", "exec_mode": "fork"}]}`,
		nil, []string{"--config", "$FILE"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	cpu := cpus.Result{Max: 4, Source: "test", Warnings: []string{"cpu.max unreadable"}}
	p.warnings = append(p.warnings, "a plan warning")
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	p.logCounts(log, cfg, cpu)
	logWarnings(log, p.planWarnings(cpu), cpu)
	one, _, _, err := planFile(t, `{}`, nil, []string{"-i", "-1", "--", "sleep", "1"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	one.logCounts(log, cfg, cpu)
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("logged %s", buf.String())
	}
	if c := lines[0]; c["message"] != "worker count" || c["instances"] != float64(4) || c["split"] != p.explain || p.explain == "" || c["instances_spec"] != nil {
		t.Errorf("two apps: %v", c)
	}
	if w := lines[1]; w["component"] != "cpus" || w["cpus"] != nil || w["message"] != "cpu.max unreadable" {
		t.Errorf("the CPU detection's warning: %v", w)
	}
	if w := lines[2]; w["cpus"] != float64(4) || w["component"] != nil || w["message"] != "a plan warning" {
		t.Errorf("a plan warning: %v", w)
	}
	if c := lines[3]; c["instances"] != float64(3) || c["instances_spec"] != "-1" || c["split"] != nil {
		t.Errorf("one app: %v", c)
	}
}
