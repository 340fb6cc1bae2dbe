package procfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// template is what config produces from gm2-init's defaults.
var template = appspec.App{
	Instances:     appspec.Instances{N: 1},
	ExecMode:      appspec.Cluster,
	StopSignal:    syscall.SIGTERM,
	KillTimeout:   8 * time.Second,
	Restart:       appspec.Always,
	MinUptime:     time.Second,
	MaxRestarts:   16,
	ListenTimeout: 10 * time.Second,
	ReloadBatch:   1,
	MinReady:      1,
	NodePreload:   "auto",
}

// needNode skips (or fails under CI=true) without node.
func needNode(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed (scripts/test.sh installs it)")
		}
		t.Skip("node is not installed")
	}
	return p
}

// project makes a directory with the example's scripts, and runs the test
// from it (relative paths in the files resolve against it).
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"api.js", "worker.js"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("// "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	return dir
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const ecosystemJS = `module.exports = {
  apps: [
    {
      name: "api",
      script: "api.js",
      instances: "max",
      exec_mode: "cluster",
      listen: ":3000",
      wait_ready: true,
      kill_timeout: 1600,
      env: { NODE_ENV: "development", PORT: 3000 },
      env_production: { NODE_ENV: "production" },
    },
    {
      name: "worker",
      script: "worker.js",
      exec_mode: "fork",
      node_args: "--max-old-space-size=256",
      max_memory_restart: "300M",
      env: { NODE_ENV: "development" },
      env_production: { NODE_ENV: "production" },
    },
  ],
};
`

const ecosystemJSON = `{
  // PM2 reads .json files as JavaScript: comments and trailing commas are common.
  "apps": [
    {
      "name": "api",
      "script": "api.js",
      "instances": "max",
      "exec_mode": "cluster",
      "listen": ":3000",
      "wait_ready": true,
      "kill_timeout": 1600,
      "env": { "NODE_ENV": "development", "PORT": 3000 },
      "env_production": { "NODE_ENV": "production" }
    },
    {
      "name": "worker",
      "script": "worker.js",
      "exec_mode": "fork",
      "node_args": "--max-old-space-size=256",
      "max_memory_restart": "300M",
      "env": { "NODE_ENV": "development" },
      "env_production": { "NODE_ENV": "production" }, /* trailing comma */
    }
  ]
}
`

const ecosystemYAML = `apps:
  - name: api
    script: api.js
    instances: max
    exec_mode: cluster
    listen: ":3000"
    wait_ready: true
    kill_timeout: 1600
    env:
      NODE_ENV: development
      PORT: 3000
    env_production:
      NODE_ENV: production
  - name: worker
    script: worker.js
    exec_mode: fork
    node_args: --max-old-space-size=256
    max_memory_restart: 300M
    env: &env
      NODE_ENV: development
    env_production:
      NODE_ENV: production
`

func wantEcosystem(t *testing.T, dir, nodeEnv string) []appspec.App {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	listen, err := sockets.ParseSpec(":3000")
	if err != nil {
		t.Fatal(err)
	}
	api := template
	api.Name = "api"
	api.Command = []string{"node", filepath.Join(dir, "api.js")}
	api.Path = node
	api.Env = []string{"NODE_ENV=" + nodeEnv, "PORT=3000"}
	api.Instances = appspec.Instances{Relative: true}
	api.Listen = []sockets.Spec{listen}
	api.WaitReady = true
	api.KillTimeout = 1600 * time.Millisecond
	worker := template
	worker.Name = "worker"
	worker.Command = []string{"node", "--max-old-space-size=256", filepath.Join(dir, "worker.js")}
	worker.Path = node
	worker.Env = []string{"NODE_ENV=" + nodeEnv}
	worker.ExecMode = appspec.Fork
	worker.MaxMemory = 300 << 20
	return []appspec.App{api, worker}
}

// The same apps from the three kinds of file.
func TestLoadEcosystem(t *testing.T) {
	dir := project(t)
	files := map[string]string{
		"ecosystem.config.js":  ecosystemJS,
		"processes.json":       ecosystemJSON,
		"ecosystem.yaml":       ecosystemYAML,
		"ecosystem.config.mjs": strings.Replace(ecosystemJS, "module.exports =", "export default", 1),
		"ecosystem.config.cjs": ecosystemJS,
	}
	for name, content := range files {
		for _, env := range []string{"", "production"} {
			t.Run(name+"/"+env, func(t *testing.T) {
				if strings.Contains(name, ".js") || strings.HasSuffix(name, "js") {
					needNode(t)
				}
				p := write(t, dir, name, content)
				apps, warnings, err := Load(p, template, Options{Env: env})
				if err != nil {
					t.Fatal(err)
				}
				want := "development"
				if env != "" {
					want = "production"
				}
				if !reflect.DeepEqual(apps, wantEcosystem(t, dir, want)) {
					t.Errorf("Load(%s):\n got %+v\nwant %+v", name, apps, wantEcosystem(t, dir, want))
				}
				if len(warnings) != 0 {
					t.Errorf("warnings: %v", warnings)
				}
			})
		}
	}
}

// In a package with "type": "module", a .js file is an ES module: export
// default works as in a .mjs file; process.cwd() is gm2-init's directory.
func TestLoadESModuleJS(t *testing.T) {
	needNode(t)
	dir := project(t)
	write(t, dir, "package.json", `{"type": "module"}`)
	write(t, dir, "ecosystem.config.js", `export default { apps: [{ name: "api", script: "api.js", cwd: process.cwd() }] };`)
	apps, _, err := Load("ecosystem.config.js", template, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].Dir != dir {
		t.Errorf("%+v, want api with cwd %s", apps, dir)
	}
}
