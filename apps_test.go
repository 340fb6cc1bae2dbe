package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/cpus"
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
	p, err := planApps(cfg, cpus.Result{Max: cpu})
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
