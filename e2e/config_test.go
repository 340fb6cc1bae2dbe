// The configuration end to end: what only the real binary shows (the
// environment a worker really gets, the messages of main's own checks,
// signals during start-up).

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
			warnings = append(warnings, l.msg())
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
			`$FILE: app "api": listen: bind ` + busy.Addr().String() + `: address already in use (another process listens there): address already in use`},
		{"second app's unix socket in a missing directory (was named --listen)",
			`[` + app("api", "") + `, ` + app("web", `, "listen": ["127.0.0.1:0", "unix://`+dir+`/missing/web.sock"]`) + `]`, nil,
			[]string{"--health-addr", "off"}, usage,
			`$FILE: app "web": listen: bind unix://` + dir + `/missing/web.sock: directory ` + dir + `/missing: stat ` + dir + `/missing: no such file or directory`},
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
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bins.init, append([]string{"--config", file}, c.args...)...)
			cmd.Env = append(os.Environ(), "NODE_APP_INSTANCE=", "GM2_INSTANCE=")
			cmd.Env = append(cmd.Env, c.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("still running after 20 s: the bad input was accepted; stderr: %.300s", stderr.String())
			}
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != c.code {
				t.Errorf("exit status %d, want %d; stderr: %.500s", code, c.code, stderr.String())
			}
			// Errors found once the start is logged (a bind) follow
			// JSON lines: the plain line is the last one.
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			last := lines[len(lines)-1]
			if want := "gm2-init: " + strings.ReplaceAll(c.want, "$FILE", file); last != want {
				t.Errorf("error line\n got %s\nwant %s", last, want)
			}
			for _, l := range lines[:len(lines)-1] {
				if !strings.HasPrefix(l, "{") {
					t.Errorf("more than one plain error line: %q", stderr.String())
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("an app was started despite the bad input")
			}
		})
	}
}
