package procfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/bytesize"
)

// Every key gm2-init reads, each mapped to its field.
func TestLoadEveryKey(t *testing.T) {
	dir := project(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	write(t, dir, "p.yaml", `
defaults: &defaults
  kill_timeout: 3s
  max_restarts: 5
apps:
  - <<: *defaults
    name: api
    cmd: api.js
    interpreter: sh
    interpreter_args: ["-e"]
    args: --port 3000 --name "my api" 'single quoted' back\ slash
    cwd: sub/..
    instances: -1
    exec_mode: cluster_mode
    env: { NODE_ENV: development, DEBUG: false, LIMITS: { max: 3 } }
    env_staging: { NODE_ENV: staging }
    port: 3000
    wait_ready: true
    listen_timeout: "3000"
    min_uptime: 2.5s
    restart_delay: 250
    autorestart: false
    stop_exit_codes: [0, 3, 3]
    max_memory_restart: 1.5G
    instance_var: INSTANCE_ID
    listen: "http=:3000, udp://127.0.0.1:5353"
  - name: tool
    script: ./server
    interpreter: none
    args: [serve, 8080, true]
    exec_mode: fork_mode
    exp_backoff_restart_delay: 100
    stop_exit_codes: 0
    max_memory_restart: 1048576
    autorestart: true
    instances: 1
`)
	tmpl := template
	tmpl.StopExitCodes = []int{42}
	apps, warnings, err := Load("p.yaml", tmpl, Options{Env: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || warnings[0].String() != `defaults: unknown top-level key, ignored (gm2-init reads apps)` {
		t.Errorf("warnings = %q", warnings)
	}
	if len(apps) != 2 {
		t.Fatalf("%d apps", len(apps))
	}
	api, tool := apps[0], apps[1]
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	check("api.Name", api.Name, "api")
	check("api.Command", api.Command, []string{"sh", "-e", filepath.Join(dir, "api.js"), "--port", "3000", "--name", "my api", "single quoted", "back slash"})
	check("api.Path", api.Path, sh)
	check("api.Dir", api.Dir, dir)
	check("api.Instances", api.Instances, appspec.Instances{Relative: true, N: 1})
	check("api.ExecMode", api.ExecMode, appspec.Cluster)
	check("api.Env", api.Env, []string{"DEBUG=false", `LIMITS={"max":3}`, "NODE_ENV=staging", "PORT=3000"})
	check("api.WaitReady", api.WaitReady, true)
	check("api.ListenTimeout", api.ListenTimeout, 3*time.Second)
	check("api.KillTimeout", api.KillTimeout, 3*time.Second) // from the YAML merge key
	check("api.MaxRestarts", api.MaxRestarts, 5)
	check("api.MinUptime", api.MinUptime, 2500*time.Millisecond)
	check("api.RestartDelay", api.RestartDelay, 250*time.Millisecond)
	check("api.Restart", api.Restart, appspec.Never)
	check("api.StopExitCodes", api.StopExitCodes, []int{0, 3})
	check("api.MaxMemory", api.MaxMemory, int64(1.5*(1<<30)))
	check("api.InstanceVar", api.InstanceVar, "INSTANCE_ID")
	if len(api.Listen) != 2 || api.Listen[0].Name != "http" || api.Listen[0].Addr != ":3000" || api.Listen[1].Network != "udp" {
		t.Errorf("api.Listen = %+v", api.Listen)
	}
	// What the file does not say comes from the template (the flags).
	check("api.StopSignal", api.StopSignal, template.StopSignal)
	check("api.ReloadBatch", api.ReloadBatch, template.ReloadBatch)

	check("tool.Command", tool.Command, []string{"./server", "serve", "8080", "true"})
	check("tool.Path", tool.Path, filepath.Join(dir, "server"))
	check("tool.Dir", tool.Dir, "")
	check("tool.ExecMode", tool.ExecMode, appspec.Fork)
	check("tool.Instances", tool.Instances, appspec.Instances{N: 1})
	check("tool.RestartDelay", tool.RestartDelay, 100*time.Millisecond)
	check("tool.StopExitCodes", tool.StopExitCodes, []int{0})
	check("tool.MaxMemory", tool.MaxMemory, int64(1<<20))
	check("tool.Restart", tool.Restart, appspec.Always)
	check("tool.KillTimeout", tool.KillTimeout, template.KillTimeout)
	check("tool.Env", tool.Env, []string(nil))

	// The template's slices are not shared with the apps.
	apps[0].StopExitCodes[0] = 99
	if tmpl.StopExitCodes[0] != 42 {
		t.Error("an app shares the template's StopExitCodes")
	}
}

// Values at the edges of what a key takes, and which spelling of a key
// wins: exec_mode in any case and with blanks, port 65535, an env_ block
// without a name (never applied: --env takes no empty name), an alias
// next to its key (the key wins, the alias is warned about).
func TestLoadKeyEdges(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [
  {"name": "api", "cmd": "worker.js", "script": "api.js", "exec_mode": "Cluster_Mode", "port": 65535, "env_": {"X": "1"}},
  {"name": "w", "script": "worker.js", "exec_mode": " FORK "}
]}`)
	apps, warnings, err := Load("p.json", template, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 {
		t.Fatalf("%d apps", len(apps))
	}
	api, w := apps[0], apps[1]
	if api.ExecMode != appspec.Cluster || w.ExecMode != appspec.Fork {
		t.Errorf("exec modes %q, %q; want cluster, fork", api.ExecMode, w.ExecMode)
	}
	if !slices.Equal(api.Env, []string{"PORT=65535"}) {
		t.Errorf("api.Env = %q, want only PORT=65535", api.Env)
	}
	if got := api.Command[len(api.Command)-1]; got != filepath.Join(dir, "api.js") {
		t.Errorf("api runs %q, want script's api.js, not cmd's worker.js", api.Command)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, w.String())
	}
	if want := []string{`cmd (app "api"): ignored: script is given too`}; !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}

// The cap on workers holds for the apps together, and 1,024 is within it.
func TestLoadWorkerCap(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [{"name": "a", "script": "api.js", "instances": 1000}, {"name": "b", "script": "worker.js", "instances": 24}]}`)
	if apps, _, err := Load("p.json", template, Options{}); err != nil || len(apps) != 2 {
		t.Errorf("1000 + 24 workers: %d apps, %v", len(apps), err)
	}
}

// One warning per key that gm2-init does not use, naming every app that
// has it; a value that asks for what gm2-init does anyway says so.
func TestLoadWarnings(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{
  "apps": [
    {"name": "api", "script": "api.js", "watch": true, "out_file": "/var/log/api.log", "cron_restart": "0 * * * *", "instancse": 2},
    {"name": "worker", "script": "worker.js", "watch": ["src"], "out_file": "/var/log/w.log", "treekill": true, "output": "x.log"},
    {"name": "old", "script": "worker.js", "watch": false, "autostart": false}
  ],
  "deploy": {"production": {}}
}`)
	apps, warnings, err := Load("p.json", template, Options{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if !slices.Equal(names, []string{"api", "worker"}) {
		t.Errorf("apps = %v, want api and worker (old has autostart: false)", names)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, w.String())
	}
	want := []string{
		`deploy: pm2 deploy is not part of gm2-init: build an image and roll it out`,
		`cron_restart (app "api"): gm2-init runs no cron: schedule ` + "`gm2-init reload APP`" + ` from outside (a Kubernetes CronJob running kubectl exec, or the host's scheduler running docker exec)`,
		`instancse (app "api"): unknown key, ignored (a typo? the README's process-file table lists the keys gm2-init reads)`,
		`out_file (app "api", app "worker"): ` + adviceLogs,
		`watch (app "api", app "worker"): ` + adviceWatch,
		`output (app "worker"): ignored: out_file is given too`,
		`treekill (app "worker"): true is what gm2-init does anyway; the key can go`,
		`watch (app "old"): false is what gm2-init does anyway; the key can go`,
		`--env: no app has env_prod; only env applies`,
		`autostart (app "old"): autostart: false — the app is not started (name it in --only to start it)`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The warning names GM2_ENV when the name came from there.
	_, warnings, err = Load("p.json", template, Options{Env: "prod", EnvFrom: "GM2_ENV"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w Warning) bool { return w.String() == "GM2_ENV: no app has env_prod; only env applies" }) {
		t.Errorf("GM2_ENV=prod: warnings %v lack the GM2_ENV one", warnings)
	}
	// --only can start an app that has autostart: false.
	apps, _, err = Load("p.json", template, Options{Only: ParseOnly("old, api")})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].Name != "api" || apps[1].Name != "old" {
		t.Errorf("--only old,api: %+v", apps)
	}
}

// PM2 accepts a file that is a list of apps, or one app.
func TestLoadShapes(t *testing.T) {
	dir := project(t)
	for name, content := range map[string]string{
		"list.json":   `[{"script": "api.js"}, {"script": "worker.js"}]`,
		"single.yaml": "script: api.js\n",
		"pm2.json":    `{"pm2": [{"script": "api.js"}]}`,
		"object.json": `{"apps": {"script": "api.js"}}`,
	} {
		write(t, dir, name, content)
		apps, _, err := Load(name, template, Options{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if apps[0].Name != "api" {
			t.Errorf("%s: first app %q, want api", name, apps[0].Name)
		}
	}
}

// Scripts and interpreters as PM2 resolves them.
func TestLoadCommands(t *testing.T) {
	dir := project(t)
	bin := t.TempDir()
	for _, p := range []string{"python3", "bash", "node", "mytool"} {
		if err := os.WriteFile(filepath.Join(bin, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	write(t, dir, "app.py", "")
	tests := []struct {
		app  string
		want []string
		path string
	}{
		{`{"script": "app.py"}`, []string{"python3", filepath.Join(dir, "app.py")}, filepath.Join(bin, "python3")},
		{`{"script": "mytool", "args": "start --x"}`, []string{"mytool", "start", "--x"}, filepath.Join(bin, "mytool")},
		{`{"script": "python3 -m http.server 8000"}`, []string{"bash", "-c", "python3 -m http.server 8000"}, filepath.Join(bin, "bash")},
		{`{"script": "mytool", "interpreter": "node", "interpreter_args": "--inspect"}`, []string{"node", "--inspect", filepath.Join(bin, "mytool")}, filepath.Join(bin, "node")},
		{`{"script": "server", "cwd": "."}`, []string{"server"}, filepath.Join(dir, "server")},
	}
	for _, tt := range tests {
		write(t, dir, "p.json", `{"apps": [`+tt.app+`]}`)
		apps, _, err := Load("p.json", template, Options{})
		if err != nil {
			t.Errorf("%s: %v", tt.app, err)
			continue
		}
		if !slices.Equal(apps[0].Command, tt.want) || apps[0].Path != tt.path {
			t.Errorf("%s: Command %q Path %q, want %q %q", tt.app, apps[0].Command, apps[0].Path, tt.want, tt.path)
		}
	}
}

// Two apps may name the very same address: they share one socket.
func TestLoadSharedListen(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [{"name": "v1", "script": "api.js", "listen": ":3000"}, {"name": "v2", "script": "api.js", "listen": "tcp://:3000"}]}`)
	apps, _, err := Load("p.json", template, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || len(apps[1].Listen) != 1 {
		t.Fatalf("%+v", apps)
	}
	// --listen is for a single command.
	tmpl := template
	tmpl.Listen = apps[0].Listen
	_, _, err = Load("p.json", tmpl, Options{})
	want := "p.json: --listen applies to a single command; with a process file give each app its own listen key"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// The message names where the addresses came from.
	_, _, err = Load("p.json", tmpl, Options{ListenFrom: "GM2_LISTEN"})
	want = "p.json: GM2_LISTEN applies to a single command; with a process file give each app its own listen key"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want time.Duration
	}{
		{jsonNumber("1600"), 1600 * time.Millisecond},
		{jsonNumber("0.5"), 500 * time.Microsecond},
		{"1600", 1600 * time.Millisecond},
		{"10s", 10 * time.Second},
		{"1h", time.Hour},
		{" 5m ", 5 * time.Minute},
	} {
		got, err := asDuration(tc.in, 0)
		if err != nil || got != tc.want {
			t.Errorf("asDuration(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   any
		want int64
	}{
		{"300M", 300 << 20}, {"300MB", 300 << 20}, {"1g", 1 << 30}, {"512K", 512 << 10}, {jsonNumber("1024"), 1024}, {"2048", 2048},
	} {
		got, err := asSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("asSize(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []any{"", "M", "-5M", "10X", "1.2.3G", jsonNumber("0"), true, "0.1"} {
		if _, err := asSize(in); err == nil {
			t.Errorf("asSize(%v): no error", in)
		}
	}
	// args: a number alone is one argument, as written; a boolean or an
	// object is refused.
	if got, err := asWords(jsonNumber("8080")); err != nil || !slices.Equal(got, []string{"8080"}) {
		t.Errorf("asWords(8080) = %q, %v", got, err)
	}
	for _, in := range []any{true, map[string]any{}, nil} {
		if _, err := asWords(in); err == nil {
			t.Errorf("asWords(%v): no error", in)
		}
	}
}

// max_memory_restart reads sizes exactly as --max-memory-restart does
// (internal/bytesize): the same forms, the same refusals, the same cap.
func TestAsSizeIsBytesize(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int64 // 0 = refused
	}{
		{"2.5", 0}, // was 2 bytes
		{jsonNumber("2.5"), 0},
		{"512Mi", 512 << 20}, // were refused
		{"512MiB", 512 << 20},
		{"1T", 1 << 40},
		{"512 MB", 512 << 20},
		{"1.5G", 3 << 29},
		{"300m", 300 << 20},
		{jsonNumber("1048576"), 1 << 20},
		{"8191T", 8191 << 40}, // was above the old cap of 2^50
		{"9223372036854775807", 1<<63 - 1},
		{"9223372036854775808", 0},
		{"8388607T", 8388607 << 40},
		{"8388608T", 0}, // 2^63
		{"1e3", 0},
		{jsonNumber("1e3"), 0},
		{"0", 0},
		{"10X", 0},
		{"-5M", 0},
		{"", 0},
	} {
		got, err := asSize(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("asSize(%#v) = %d, want an error", tc.in, got)
			} else if !strings.Contains(err.Error(), "accepted: "+bytesize.Forms) {
				t.Errorf("asSize(%#v): %v; want bytesize's accepted forms", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("asSize(%#v) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if s, ok := tc.in.(string); ok {
			if n, err := bytesize.Parse(s); err != nil || n != got {
				t.Errorf("bytesize.Parse(%q) = %d, %v; asSize says %d", s, n, err, got)
			}
		}
	}
}

// Durations in a file are bounded as the flags' are: at most
// appspec.MaxDuration, whether written in milliseconds or with a unit.
func TestAsDurationRange(t *testing.T) {
	for _, tc := range []struct {
		in    any
		least time.Duration
		want  time.Duration // -1 = refused
	}{
		{"24h", 0, 24 * time.Hour},
		{jsonNumber("86400000"), 0, 24 * time.Hour},
		{"86400000", 0, 24 * time.Hour},
		{"24h0m0.001s", 0, -1},
		{jsonNumber("86400001"), 0, -1},
		{"86400001", 0, -1},
		{jsonNumber("1e300"), 0, -1},
		{"2562047h", 0, -1},
		{jsonNumber("0"), 0, 0},
		{jsonNumber("0"), time.Millisecond, -1},
		{"1ms", time.Millisecond, time.Millisecond},
	} {
		got, err := asDuration(tc.in, tc.least)
		switch {
		case tc.want < 0 && err == nil:
			t.Errorf("asDuration(%#v, %v) = %v, want an error", tc.in, tc.least, got)
		case tc.want >= 0 && (err != nil || got != tc.want):
			t.Errorf("asDuration(%#v, %v) = %v, %v; want %v", tc.in, tc.least, got, err, tc.want)
		}
	}
}

// App names follow one rule (appspec.CheckName), which --only shares: a
// name the file may give can be selected.
func TestLoadNameRule(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [{"name": "api:v2", "script": "api.js"}, {"name": "worker@eu", "script": "worker.js"}]}`)
	apps, _, err := Load("p.json", template, Options{Only: []string{"api:v2"}})
	if err != nil || len(apps) != 1 || apps[0].Name != "api:v2" {
		t.Fatalf("Load = %+v, %v", apps, err)
	}
	for _, a := range apps {
		if err := appspec.CheckName(a.Name); err != nil {
			t.Errorf("name %q: %v", a.Name, err)
		}
	}
	if got := deriveName("my app, v2.js"); appspec.CheckName(got) != nil {
		t.Errorf("derived name %q breaks the rule", got)
	}
	// As PM2's path.basename(script, path.extname(script)): the last
	// extension goes, a leading dot is no extension.
	for script, want := range map[string]string{"./api.js": "api", "a.b.py": "a.b", ".server": ".server", "bin/run": "run", "node api.js": "api"} {
		if got := deriveName(script); got != want {
			t.Errorf("deriveName(%q) = %q, want %q", script, got, want)
		}
	}
}

// An app's listeners get distinct LISTEN_FDNAMES entries: derived names
// that clash are made longer (tcp4://:3000 and tcp6://:3000 were both
// tcp-3000).
func TestListenNamesUnique(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": ["tcp4://:3000", "tcp6://:3000", ":3001"]}]}`)
	apps, _, err := Load("p.json", template, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range apps[0].Listen {
		names = append(names, l.Name)
	}
	if want := []string{"tcp4-3000", "tcp6-3000", "tcp-3001"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}

// A bare number of a few milliseconds for a timeout is likely seconds
// meant (kill_timeout: 1.5 SIGKILLs the worker 1.5 ms after the stop
// signal): it is read as PM2 reads it, with a warning. A unit given, or a
// restart delay, says nothing.
func TestShortTimeoutWarned(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [
    {"name": "api", "script": "api.js", "kill_timeout": 1.5, "listen_timeout": "3", "min_uptime": 0},
    {"name": "web", "script": "api.js", "kill_timeout": "50ms", "listen_timeout": 100, "restart_delay": 5}
  ]}`)
	apps, warnings, err := Load("p.json", template, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if apps[0].KillTimeout != 1500*time.Microsecond || apps[1].KillTimeout != 50*time.Millisecond {
		t.Errorf("kill timeouts %v, %v: want 1.5ms and 50ms", apps[0].KillTimeout, apps[1].KillTimeout)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, w.String())
	}
	want := []string{
		`kill_timeout (app "api"): 1.5 is 1.5ms: a bare number is milliseconds, as PM2 reads it; write "1.5s" for seconds`,
		`listen_timeout (app "api"): 3 is 3ms: a bare number is milliseconds, as PM2 reads it; write "3s" for seconds`,
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A variable gm2-init sets for every worker (the slot, the notify socket,
// the passed sockets) or instance_var's is dropped from a file's env and
// env_NAME, with a warning: the worker gets gm2-init's value.
func TestWorkerVariablesInEnvDropped(t *testing.T) {
	dir := project(t)
	write(t, dir, "p.json", `{"apps": [{"name": "api", "script": "api.js", "instances": 2, "instance_var": "INSTANCE_ID",
  "env": {"NODE_APP_INSTANCE": "0", "NOTIFY_SOCKET": "/run/elsewhere.sock", "KEEP": "1"},
  "env_prod": {"INSTANCE_ID": "x", "LISTEN_FDS": "9"}}]}`)
	apps, warnings, err := Load("p.json", template, Options{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || !slices.Equal(apps[0].Env, []string{"KEEP=1"}) {
		t.Fatalf("apps %+v, want one with env KEEP=1 only", apps)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, w.String())
	}
	var want []string
	for _, k := range []string{"env_prod INSTANCE_ID", "env_prod LISTEN_FDS", "env NODE_APP_INSTANCE", "env NOTIFY_SOCKET"} {
		key, name, _ := strings.Cut(k, " ")
		want = append(want, key+` (app "api"): `+name+` is set by gm2-init for each worker; the file's value is ignored`)
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
