// Several apps from a PM2 process file under one PID 1 (`--config`), and the
// control commands that reach them from inside the container.

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/httpload"
)

// ecosystem copies examples/ecosystem into a new directory with the API on
// 127.0.0.1:port instead of :3000 (tests run side by side), and returns it.
func ecosystem(t *testing.T, port int) string {
	t.Helper()
	dir := t.TempDir()
	src := repoPath(t, "examples/ecosystem")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "':3000'", "'"+addr+"'")
		s = strings.ReplaceAll(s, `":3000"`, `"`+addr+`"`)
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type snapshot struct {
	Apps []struct {
		Name      string `json:"name"`
		Instances int    `json:"instances"`
	} `json:"apps"`
	Slots []struct {
		App   string `json:"app"`
		Index int    `json:"instance"`
		Pid   int    `json:"pid"`
		State string `json:"state"`
	} `json:"slots"`
}

func controlStatus(t *testing.T, in *Init) snapshot {
	t.Helper()
	code, out, errs := nsExec(t, in.Pid, bins.init, "status", "--json")
	var s snapshot
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil {
		t.Fatalf("gm2-init status --json: %d %q %q", code, out, errs)
	}
	return s
}

func (s snapshot) pids(app string) map[int]bool {
	out := map[int]bool{}
	for _, sl := range s.Slots {
		if sl.App == app && sl.Pid > 0 {
			out[sl.Pid] = true
		}
	}
	return out
}

// startEcosystem runs `gm2-init --config FILE` from the example's directory
// with 3 CPUs (the worker takes 1, the API the 2 left).
func startEcosystem(t *testing.T, file string, port int, extra ...string) *Init {
	t.Helper()
	dir := ecosystem(t, port)
	t.Chdir(dir)
	args := append([]string{"--config", file, "--cpus", "3", "--health-addr", "127.0.0.1:0"}, extra...)
	return startInit(t, []string{"PORT=" + strconv.Itoa(port)}, args...)
}

type apiAnswer struct {
	App string `json:"app"`
	Pid int    `json:"pid"`
	Env string `json:"env"`
}

func askAPI(t *testing.T, port int) apiAnswer {
	t.Helper()
	code, body, err := httpGet("127.0.0.1:"+strconv.Itoa(port), "/")
	var a apiAnswer
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &a) != nil {
		t.Fatalf("GET api: %d %q %v", code, body, err)
	}
	return a
}

// The same apps from the .js, .json and .yaml files.
func TestMultiAppFormats(t *testing.T) {
	needNode(t)
	needRootAndTools(t, "nsenter")
	for _, f := range []string{"ecosystem.config.js", "ecosystem.json", "ecosystem.yaml"} {
		t.Run(f, func(t *testing.T) {
			port := freePort(t)
			in := startEcosystem(t, f, port)
			in.WaitReady(3, nodeTimeout)
			s := controlStatus(t, in)
			if len(s.Apps) != 2 || s.Apps[0].Name != "api" || s.Apps[0].Instances != 2 || s.Apps[1].Name != "worker" || s.Apps[1].Instances != 1 {
				t.Errorf("apps %+v, want api ×2 and worker ×1", s.Apps)
			}
			if a := askAPI(t, port); a.App != "api" || a.Env != "development" || !s.pids("api")[a.Pid] {
				t.Errorf("GET api: %+v; api pids %v", a, s.pids("api"))
			}
			in.Signal(syscall.SIGTERM)
			if code := in.Wait(nodeTimeout); code != 0 {
				t.Errorf("exit status %d", code)
			}
		})
	}
}

// --only and --env.
func TestMultiAppOnlyAndEnv(t *testing.T) {
	needNode(t)
	needRootAndTools(t, "nsenter")
	port := freePort(t)
	in := startEcosystem(t, "ecosystem.config.js", port, "--only", "api", "--env", "production")
	in.WaitReady(3, nodeTimeout) // the API alone takes the 3 CPUs
	s := controlStatus(t, in)
	if len(s.Apps) != 1 || s.Apps[0].Name != "api" || s.Apps[0].Instances != 3 {
		t.Errorf("apps %+v, want api ×3 alone", s.Apps)
	}
	if a := askAPI(t, port); a.Env != "production" {
		t.Errorf("NODE_ENV %q, want production (env_production)", a.Env)
	}
}

// `gm2-init reload api` under continuous load fails no request, replaces
// every API worker and leaves the worker app's process alone; `gm2-init
// scale api 3` adds a worker; the status table shows them; another uid is
// refused.
func TestMultiAppControl(t *testing.T) {
	needNode(t)
	needRootAndTools(t, "nsenter", "setpriv")
	port := freePort(t)
	in := startEcosystem(t, "ecosystem.yaml", port)
	in.WaitReady(3, nodeTimeout)
	before := controlStatus(t, in)
	addr := "127.0.0.1:" + strconv.Itoa(port)

	ld := httpload.Start(addr, httpload.Options{Clients: 8, Limit: 2 * time.Minute})
	if !ld.WaitRequests(100, nodeTimeout) {
		t.Fatal("the load did not start")
	}
	code, out, errs := nsExec(t, in.Pid, bins.init, "reload", "api")
	if code != 0 || out != "reloaded api\n" {
		t.Errorf("gm2-init reload api: %d %q %q", code, out, errs)
	}
	if !ld.WaitRequests(100, nodeTimeout) {
		t.Error("the load stalled after the reload")
	}
	ok, failed, ferrs := ld.Stop().Sums()
	if failed != 0 {
		t.Errorf("%d of %d requests failed during gm2-init reload api: %v", failed, ok+failed, ferrs)
	}
	after := controlStatus(t, in)
	for pid := range before.pids("api") {
		if after.pids("api")[pid] {
			t.Errorf("api pid %d survived the reload", pid)
		}
	}
	if w0, w1 := before.pids("worker"), after.pids("worker"); len(w0) != 1 || len(w1) != 1 || !equalSets(w0, w1) {
		t.Errorf("worker pids %v before, %v after: reload api touched the worker", w0, w1)
	}

	n := len(in.Lines())
	code, out, errs = nsExec(t, in.Pid, bins.init, "scale", "api", "3")
	if code != 0 || out != "api: 3 instances (was 2)\n" {
		t.Errorf("gm2-init scale api 3: %d %q %q", code, out, errs)
	}
	in.WaitLog(nodeTimeout, n, "worker ready", nil)
	s := controlStatus(t, in)
	if len(s.pids("api")) != 3 {
		t.Errorf("after scale api 3: %+v", s.Slots)
	}

	code, out, _ = nsExec(t, in.Pid, bins.init, "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 5 || !strings.HasPrefix(lines[0], "APP") {
		t.Fatalf("gm2-init status: %d\n%s", code, out)
	}
	for i, sl := range s.Slots {
		f := strings.Fields(lines[i+1])
		if len(f) < 6 || f[0] != sl.App || f[1] != strconv.Itoa(sl.Index) || f[2] != strconv.Itoa(sl.Pid) || f[3] != sl.State {
			t.Errorf("status row %q, want %s %d %d %s", lines[i+1], sl.App, sl.Index, sl.Pid, sl.State)
		}
	}

	code, _, errs = nsExec(t, in.Pid, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", otherUserBinary(t), "reload", "api")
	if code != 1 || !strings.HasPrefix(errs, "gm2-init reload: permission denied: only root") {
		t.Errorf("as uid 65534: %d %q", code, errs)
	}
}

// A bad file starts nothing: exit 2 and one line.
func TestMultiAppBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "api.js"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"apps": [{"name": "api", "script": "api.js", "instances": "abc"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	in := startInit(t, nil, "--config", "bad.json")
	if code := in.Wait(20 * time.Second); code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	want := `gm2-init: bad.json: app "api": instances: invalid value "abc": accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to 1024)`
	if got := strings.TrimSpace(in.rawLog()); got != want {
		t.Errorf("stderr %q\nwant %q", got, want)
	}
}

func equalSets(a, b map[int]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// Each app of a process file is held to its own min_ready by /readyz: an
// app whose only worker crash-loops fails the pod although the API's
// workers are all ready (the totals, 2 ready of 3 required, were met by
// then; the check compared them). A one-shot task that ended by its
// restart policy is not waited for. /status names every slot's app.
func TestMultiAppReadinessPerApp(t *testing.T) {
	needNode(t)
	dir := t.TempDir()
	for name, src := range map[string]string{
		"crash.js":   "setTimeout(() => process.exit(1), 100);\n",
		"migrate.js": "process.exit(0);\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, app, second string
		code              int
		line              string
	}{
		{"one-shot task ended", "migrate", `{"name": "migrate", "script": "migrate.js", "autorestart": false}`, 200, "ok"},
		{"crash-looping app", "crash", `{"name": "crash", "script": "crash.js", "max_restarts": 1000}`, 503, "[-]workers failed: app crash: 0 worker(s) ready, 1 required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			port := freePort(t)
			file := filepath.Join(dir, fmt.Sprintf("apps-%d.json", port))
			apps := fmt.Sprintf(`{"apps": [{"name": "api", "script": %q, "instances": 2, "env": {"PORT": "%d"}}, %s]}`,
				repoPath(t, "e2e/testdata/node/info.js"), port, c.second)
			if err := os.WriteFile(file, []byte(apps), 0o644); err != nil {
				t.Fatal(err)
			}
			in := startInitIn(t, dir, nil, "--config", file, "--health-addr", "127.0.0.1:0")
			in.WaitReady(2, nodeTimeout)
			in.WaitLog(nodeTimeout, 0, "worker exited", func(l logLine) bool { return l.Str("app") == c.app })
			health := in.HealthAddr()
			code, body, err := httpGet(health, "/readyz")
			if first := strings.SplitN(body, "\n", 2)[0]; err != nil || code != c.code || first != c.line {
				t.Errorf("/readyz: %d %q %v, want %d %q", code, body, err, c.code, c.line)
			}
			code, body, err = httpGet(health, "/status")
			var v struct {
				Slots []struct{ App string }  `json:"slots"`
				Apps  []struct{ Name string } `json:"apps"`
			}
			if err != nil || code != 200 || json.Unmarshal([]byte(body), &v) != nil || len(v.Slots) != 3 || len(v.Apps) != 2 ||
				v.Slots[0].App != "api" || v.Slots[1].App != "api" || v.Slots[2].App != c.app || v.Apps[0].Name != "api" {
				t.Errorf("/status: %d %v: %s", code, err, body)
			}
		})
	}
}

// A fork app's reload stops its one worker, then starts the next: the app
// has no ready worker meanwhile, on purpose, and /readyz stays 200 while
// the cluster app serves (it failed for the whole stop and start of every
// kill -HUP 1 once each app was held to its own min_ready).
func TestMultiAppForkReloadKeepsReadiness(t *testing.T) {
	needNode(t)
	dir := t.TempDir()
	job := "trap 'sleep 0.5; exit 0' TERM\nwhile :; do sleep 0.1; done\n"
	if err := os.WriteFile(filepath.Join(dir, "job.sh"), []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	apps := fmt.Sprintf(`{"apps": [{"name": "web", "script": %q, "instances": 2, "env": {"PORT": "%d"}},
		{"name": "job", "script": "job.sh", "interpreter": "sh", "exec_mode": "fork"}]}`, repoPath(t, "e2e/testdata/node/info.js"), port)
	if err := os.WriteFile(filepath.Join(dir, "apps.json"), []byte(apps), 0o644); err != nil {
		t.Fatal(err)
	}
	in := startInitIn(t, dir, nil, "--config", "apps.json", "--health-addr", "127.0.0.1:0")
	health := in.HealthAddr()
	in.WaitReady(3, nodeTimeout)
	waitHTTP(t, health, "/readyz", 200, 10*time.Second)
	probes := startProbeLoop(health, 2*time.Minute)
	in.Signal(syscall.SIGHUP)
	for _, app := range []string{"web", "job"} {
		l, _ := in.WaitLog(nodeTimeout, 0, "reload finished", func(l logLine) bool { return l.Str("app") == app })
		if l.Str("result") != "ok" {
			t.Errorf("reload of %s: %s", app, l.Str("result"))
		}
	}
	n, failures, bad := probes.stop()
	if failures != 0 || n < 5 {
		t.Errorf("%d of %d probes failed during the reload: %v", failures, n, bad)
	}
}
