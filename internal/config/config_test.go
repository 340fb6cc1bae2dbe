package config

// Parse reads os.Environ (GM2_* variables, PATH), so none of these tests may
// run in parallel: they set the environment with t.Setenv.

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// env gives the test a clean environment: no GM2_* variable from the
// outside, and a PATH holding only "app" (executable) and "data" (not).
// It returns the path of app.
func env(t *testing.T) string {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") {
			t.Setenv(name, "") // restored after the test
			os.Unsetenv(name)
		}
	}
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if err := os.WriteFile(app, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	return app
}

func mustParse(t *testing.T, args ...string) *Config {
	t.Helper()
	cfg, err := Parse(args)
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return cfg
}

// parseErr runs Parse expecting a one-line *UsageError that contains every
// one of want.
func parseErr(t *testing.T, args []string, want ...string) string {
	t.Helper()
	cfg, err := Parse(args)
	if err == nil {
		t.Fatalf("Parse(%q) = %+v, want an error", args, cfg)
	}
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("Parse(%q) error %T %v, want a *UsageError", args, err, err)
	}
	if cfg != nil {
		t.Errorf("Parse(%q) returned a Config along with an error", args)
	}
	checkOneLine(t, err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", args, err, w)
		}
	}
	return err.Error()
}

func TestParseDefaults(t *testing.T) {
	app := env(t)
	// Unprefixed names belong to the app, never to gm2-init.
	t.Setenv("LOG_LEVEL", "nonsense")
	t.Setenv("PORT", "nonsense")
	t.Setenv("INSTANCES", "nonsense")
	t.Setenv("KILL_TIMEOUT", "nonsense")
	t.Setenv("LISTEN", "nonsense")
	for _, args := range [][]string{{"--", "app", "-x", "--y"}, {"app", "-x", "--y"}} {
		cfg := mustParse(t, args...)
		want := &Config{
			Instances:     appspec.Instances{N: 1},
			KillTimeout:   8 * time.Second,
			StopSignal:    syscall.SIGTERM,
			Restart:       appspec.Always,
			MinUptime:     time.Second,
			MaxRestarts:   16,
			ListenTimeout: 10 * time.Second,
			ReloadBatch:   1,
			HealthAddr:    ":9000",
			MinReady:      1,
			NodePreload:   "auto",
			LogLevel:      zerolog.InfoLevel,
			LogFormat:     "json",
			Command:       []string{"app", "-x", "--y"},
			Path:          app,
		}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", args, cfg, want)
		}
	}
}

// The documented variable of every option, and that envconfig really reads
// it: a variable envconfig spells differently (GM2_KILLTIMEOUT without
// split_words) would be silently ignored.
func TestEveryOptionReadsItsVariable(t *testing.T) {
	documented := []string{
		"GM2_INSTANCES", "GM2_CPUS", "GM2_CPU_ROUNDING", "GM2_LISTEN", "GM2_KILL_TIMEOUT",
		"GM2_STOP_SIGNAL", "GM2_RESTART", "GM2_MIN_UPTIME", "GM2_MAX_RESTARTS", "GM2_WAIT_READY",
		"GM2_LISTEN_TIMEOUT", "GM2_RELOAD_BATCH", "GM2_HEALTH_ADDR", "GM2_MIN_READY",
		"GM2_SHUTDOWN_DELAY", "GM2_NODE_PRELOAD", "GM2_LOG_LEVEL", "GM2_LOG_FORMAT",
	}
	var got []string
	for _, o := range describe() {
		got = append(got, o.env)
	}
	if !slices.Equal(got, documented) {
		t.Errorf("variables\n got %q\nwant %q", got, documented)
	}

	// A valid non-default value for each option, and how it shows.
	valid := map[string]struct {
		value string
		check func(*Config) bool
	}{
		"instances":      {"-2", func(c *Config) bool { return c.Instances == appspec.Instances{Relative: true, N: 2} }},
		"cpus":           {"3", func(c *Config) bool { return c.CPUs == 3 }},
		"cpu-rounding":   {"ceil", func(c *Config) bool { return c.CPUCeil }},
		"listen":         {"127.0.0.1:0", func(c *Config) bool { return len(c.Listen) == 1 && c.Listen[0].Addr == "127.0.0.1:0" }},
		"kill-timeout":   {"3s", func(c *Config) bool { return c.KillTimeout == 3*time.Second }},
		"stop-signal":    {"INT", func(c *Config) bool { return c.StopSignal == syscall.SIGINT }},
		"restart":        {"on-failure", func(c *Config) bool { return c.Restart == appspec.OnFailure }},
		"min-uptime":     {"250ms", func(c *Config) bool { return c.MinUptime == 250*time.Millisecond }},
		"max-restarts":   {"5", func(c *Config) bool { return c.MaxRestarts == 5 }},
		"wait-ready":     {"true", func(c *Config) bool { return c.WaitReady }},
		"listen-timeout": {"1m", func(c *Config) bool { return c.ListenTimeout == time.Minute }},
		"reload-batch":   {"3", func(c *Config) bool { return c.ReloadBatch == 3 }},
		"health-addr":    {"127.0.0.1:9100", func(c *Config) bool { return c.HealthAddr == "127.0.0.1:9100" }},
		"min-ready":      {"all", func(c *Config) bool { return c.MinReady == 0 }},
		"shutdown-delay": {"5s", func(c *Config) bool { return c.ShutdownDelay == 5*time.Second }},
		"node-preload":   {"off", func(c *Config) bool { return c.NodePreload == "off" }},
		"log-level":      {"debug", func(c *Config) bool { return c.LogLevel == zerolog.DebugLevel }},
		"log-format":     {"console", func(c *Config) bool { return c.LogFormat == "console" }},
	}
	// An invalid value for each option: the error names where it came from.
	invalid := map[string]string{
		"instances": "abc", "cpus": "-1", "cpu-rounding": "round", "listen": "nowhere",
		"kill-timeout": "8", "stop-signal": "KILL", "restart": "sometimes", "min-uptime": "-1s",
		"max-restarts": "-1", "wait-ready": "maybe", "listen-timeout": "0s", "reload-batch": "0",
		"health-addr": "example.com:80", "min-ready": "0", "shutdown-delay": "soon",
		"node-preload": "auto-ish", "log-level": "loud", "log-format": "xml",
	}

	for _, o := range describe() {
		t.Run(o.env, func(t *testing.T) {
			v, ok := valid[o.name]
			bad, ok2 := invalid[o.name]
			if !ok || !ok2 {
				t.Fatalf("option --%s has no test values: add it to this test", o.name)
			}
			flagName := "--" + o.name
			if o.short != "" {
				flagName = "-" + o.short + "/--" + o.name
			}

			env(t)
			if c := mustParse(t, "app"); v.check(c) {
				t.Fatalf("%s=%s is the default: pick another test value", o.env, v.value)
			}
			t.Setenv(o.env, v.value)
			if c := mustParse(t, "app"); !v.check(c) {
				t.Errorf("%s=%s is not read: %+v", o.env, v.value, c)
			}
			t.Setenv(o.env, bad)
			msg := parseErr(t, []string{"app"}, o.env, bad)
			if strings.Contains(msg, "--"+o.name) {
				t.Errorf("error %q about the variable should not name the flag", msg)
			}

			// The flag, in both spellings, wins over the bad variable.
			for _, args := range [][]string{
				{"--" + o.name + "=" + v.value, "app"},
				{"--" + o.name, v.value, "app"},
			} {
				if o.isBool {
					args = args[:1:1]
					args = append(args, "app")
				}
				if c := mustParse(t, args...); !v.check(c) {
					t.Errorf("Parse(%q) with %s=%s: flag not applied: %+v", args, o.env, bad, c)
				}
			}
			if o.short != "" {
				if c := mustParse(t, "-"+o.short, v.value, "app"); !v.check(c) {
					t.Errorf("-%s %s not applied", o.short, v.value)
				}
			}

			// A bad flag over a good variable names the flag.
			t.Setenv(o.env, v.value)
			msg = parseErr(t, []string{"--" + o.name + "=" + bad, "app"}, flagName, bad)
			if strings.Contains(msg, o.env) {
				t.Errorf("error %q about the flag should not name the variable", msg)
			}
		})
	}
}

func TestParsePrecedence(t *testing.T) {
	env(t)
	t.Setenv("GM2_INSTANCES", "3")
	t.Setenv("GM2_KILL_TIMEOUT", "20s")
	t.Setenv("GM2_LOG_LEVEL", "warn")
	cfg := mustParse(t, "-i", "max", "--log-level=error", "--", "app")
	if cfg.Instances != (appspec.Instances{Relative: true}) {
		t.Errorf("flag -i max lost to GM2_INSTANCES=3: %+v", cfg.Instances)
	}
	if cfg.LogLevel != zerolog.ErrorLevel {
		t.Errorf("flag --log-level lost to the variable: %v", cfg.LogLevel)
	}
	if cfg.KillTimeout != 20*time.Second {
		t.Errorf("GM2_KILL_TIMEOUT lost to the default: %v", cfg.KillTimeout)
	}
	if cfg.ReloadBatch != 1 {
		t.Errorf("default reload batch: %d", cfg.ReloadBatch)
	}
	// The last use of a (non-repeatable) flag wins.
	cfg = mustParse(t, "-i", "2", "--instances", "4", "app")
	if cfg.Instances != (appspec.Instances{N: 4}) {
		t.Errorf("-i 2 --instances 4 = %+v", cfg.Instances)
	}
}

func TestParseWaitReadyBool(t *testing.T) {
	env(t)
	for _, tc := range []struct {
		env  string
		args []string
		want bool
	}{
		{"", []string{"--wait-ready", "app"}, true},
		{"true", []string{"--wait-ready=false", "app"}, false},
		{"false", []string{"--wait-ready=yes", "app"}, true},
		{"yes", []string{"app"}, true},
		{"0", []string{"app"}, false},
		// A bool flag does not take the next argument as its value.
		{"", []string{"--wait-ready", "app", "false"}, true},
	} {
		t.Setenv("GM2_WAIT_READY", tc.env)
		if tc.env == "" {
			os.Unsetenv("GM2_WAIT_READY")
		}
		c := mustParse(t, tc.args...)
		if c.WaitReady != tc.want {
			t.Errorf("GM2_WAIT_READY=%q %q: WaitReady = %v", tc.env, tc.args, c.WaitReady)
		}
		if c.Command[0] != "app" {
			t.Errorf("%q: Command = %q", tc.args, c.Command)
		}
	}
}

func listenAddrs(c *Config) []string {
	var out []string
	for _, s := range c.Listen {
		out = append(out, s.Name+"="+s.String())
	}
	return out
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		name string
		env  string // GM2_LISTEN; "-" = unset
		args []string
		want []string
	}{
		{"none", "-", nil, nil},
		{"variable, comma-separated", "http=:8080, udp://:5353,,unix:///run/a.sock", nil,
			[]string{"http=tcp://:8080", "udp-5353=udp://:5353", "unix-a.sock=unix:///run/a.sock"}},
		{"empty variable", "", nil, nil},
		{"multi-line variable", "\n  http=:8080,\n  udp://:53\n", nil, []string{"http=tcp://:8080", "udp-53=udp://:53"}},
		{"flag", "-", []string{"--listen", ":8080"}, []string{"tcp-8080=tcp://:8080"}},
		{"flag repeated", "-", []string{"--listen", ":8080", "--listen=udp://:8080", "--listen", "admin=127.0.0.1:9"},
			[]string{"tcp-8080=tcp://:8080", "udp-8080=udp://:8080", "admin=tcp://127.0.0.1:9"}},
		// The first use of the flag replaces the variable's value; later
		// uses add to it.
		{"flag replaces variable", ":1,:2", []string{"--listen", ":3"}, []string{"tcp-3=tcp://:3"}},
		{"flags replace variable", ":1,:2", []string{"--listen", ":3", "--listen", ":4"}, []string{"tcp-3=tcp://:3", "tcp-4=tcp://:4"}},
		{"flag with commas", "-", []string{"--listen", ":3,:4"}, []string{"tcp-3=tcp://:3", "tcp-4=tcp://:4"}},
		{"port 0 twice", "-", []string{"--listen", ":0", "--listen", ":0"}, []string{"tcp-0=tcp://:0", "tcp-0=tcp://:0"}},
		{"both families", "-", []string{"--listen", "tcp4://:80", "--listen", "tcp6://:80"}, []string{"tcp-80=tcp4://:80", "tcp-80=tcp6://:80"}},
		{"tcp and udp", "-", []string{"--listen", ":53", "--listen", "udp://:53"}, []string{"tcp-53=tcp://:53", "udp-53=udp://:53"}},
		{"two loopbacks", "-", []string{"--listen", "127.0.0.1:80", "--listen", "[::1]:80"}, []string{"tcp-80=tcp://127.0.0.1:80", "tcp-80=tcp://[::1]:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env(t)
			if tt.env != "-" {
				t.Setenv("GM2_LISTEN", tt.env)
			}
			got := listenAddrs(mustParse(t, append(tt.args, "app")...))
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseListenErrors(t *testing.T) {
	tests := []struct {
		name string
		env  string
		args []string
		want []string
	}{
		{"bad variable", "http=:8080,:99999", nil, []string{"GM2_LISTEN: ", `":99999"`, "0 to 65535"}},
		{"bad flag", "", []string{"--listen", "unix://rel.sock"}, []string{"--listen: ", "absolute path"}},
		{"bad flag over good variable", ":1", []string{"--listen", "x y=:1"}, []string{"--listen: ", "may only hold"}},
		{"same address", "", []string{"--listen", ":8080", "--listen", "8080"}, []string{"--listen: ", `":8080" and "8080" bind the same address`}},
		{"same address in the variable", ":8080,tcp://:8080", nil, []string{"GM2_LISTEN: ", "bind the same address"}},
		{"wildcard and loopback", "", []string{"--listen", ":8080", "--listen", "127.0.0.1:8080"}, []string{"bind the same address"}},
		{"dual-stack and tcp6", "", []string{"--listen", ":8080", "--listen", "tcp6://[::1]:8080"}, []string{"bind the same address"}},
		{"localhost twice", "", []string{"--listen", "localhost:80", "--listen", "127.0.0.1:80"}, []string{"bind the same address"}},
		{"same unix path", "", []string{"--listen", "unix:///run/a.sock", "--listen", "unixgram:///run/b/../a.sock"}, []string{"bind the same address"}},
		{"health on a listener", "", []string{"--listen", ":9000"}, []string{"--health-addr default", `":9000"`, "--listen", "another port"}},
		{"health variable on a listener", "", []string{"--listen", "127.0.0.1:9100", "--health-addr", "127.0.0.1:9100"}, []string{"--health-addr", "--listen", "bind the same address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env(t)
			if tt.env != "" {
				t.Setenv("GM2_LISTEN", tt.env)
			}
			parseErr(t, append(tt.args, "app"), tt.want...)
		})
	}
	// The health endpoint may share the port with a UDP listener, or be off.
	env(t)
	mustParse(t, "--listen", "udp://:9000", "app")
	mustParse(t, "--listen", ":9000", "--health-addr", "off", "app")
	mustParse(t, "--listen", ":9000", "--health-addr", ":9001", "app")
}

// checkDistinct claims to predict EADDRINUSE between two listeners: check
// it against the kernel, with real binds on loopback.
func TestListenOverlapMatchesKernel(t *testing.T) {
	probe, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(probe.Addr().String())
	probe.Close()
	ipv6 := true
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		ipv6 = false
	} else {
		l.Close()
	}
	forms := []string{
		":P", "tcp4://:P", "0.0.0.0:P", "127.0.0.1:P", "localhost:P",
		"tcp6://:P", "[::]:P", "[::1]:P", "tcp6://localhost:P", "udp://:P", "udp://127.0.0.1:P",
	}
	for i, a := range forms {
		for _, b := range forms[i+1:] {
			if !ipv6 && (strings.Contains(a+b, "6") || strings.Contains(a+b, "[")) {
				continue
			}
			sa, err := sockets.ParseSpec(strings.ReplaceAll(a, "P", port))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := sockets.ParseSpec(strings.ReplaceAll(b, "P", port))
			if err != nil {
				t.Fatal(err)
			}
			predicted := checkDistinct([]sockets.Spec{sa, sb}) != nil
			ls, err := sockets.Bind([]sockets.Spec{sa, sb})
			sockets.CloseAll(ls)
			var be *sockets.BindError
			if err != nil && (!errors.As(err, &be) || !errors.Is(err, syscall.EADDRINUSE) || be.Spec.Raw == sa.Raw) {
				t.Skipf("cannot bind port %s here (taken by another process?): %v", port, err)
			}
			if inUse := err != nil && be.Spec.Raw == sb.Raw; inUse != predicted {
				t.Errorf("%s and %s: checkDistinct predicts a clash %v, the kernel says %v", a, b, predicted, err)
			}
		}
	}
}

func TestParseMessages(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"flag names both spellings", nil, []string{"-i", "abc", "app"}, []string{`-i/--instances: invalid value "abc": accepted: max`}},
		{"long flag", nil, []string{"--instances=1.5", "app"}, []string{`-i/--instances: invalid value "1.5"`}},
		{"variable", map[string]string{"GM2_KILL_TIMEOUT": "8"}, []string{"app"}, []string{`GM2_KILL_TIMEOUT: invalid value "8": accepted: a duration with a unit, such as 8s or 8ms`}},
		{"flag without short name", map[string]string{"GM2_KILL_TIMEOUT": "8s"}, []string{"--kill-timeout", "-1s", "app"}, []string{`--kill-timeout: invalid value "-1s"`}},
		{"kill timeout at least 1ms", nil, []string{"--kill-timeout", "0", "app"}, []string{"--kill-timeout", "at least 1ms"}},
		{"stop signal", map[string]string{"GM2_STOP_SIGNAL": "SIGKILL"}, []string{"app"}, []string{"GM2_STOP_SIGNAL", "cannot be caught"}},
		{"newline in a value", map[string]string{"GM2_LOG_LEVEL": "info\nerror"}, []string{"app"}, []string{`GM2_LOG_LEVEL: invalid value "info\nerror"`}},
		{"missing command", nil, nil, []string{"missing command", "-- COMMAND"}},
		{"missing command after --", nil, []string{"-i", "2", "--"}, []string{"missing command"}},
		{"command not found", nil, []string{"--", "nosuchapp"}, []string{`command "nosuchapp": not found in PATH`}},
		{"command not executable", nil, []string{"data"}, []string{`command "data": found as "`, `/data" in PATH, but it is not executable`}},
		{"command path not executable", nil, []string{"PATHDIR/data"}, []string{`/data": is not executable`}},
		{"command path missing", nil, []string{"/nonexistent/app"}, []string{`command "/nonexistent/app": no such file`}},
		{"command path through a file", nil, []string{"SELF/app"}, []string{`/app": no such file`}},
		{"command with a newline", nil, []string{"/no\nsuch"}, []string{`command "/no\nsuch"`}},
		{"unknown long flag", nil, []string{"--instance", "2", "app"}, []string{"unknown flag --instance", "put the command after --"}},
		{"unknown short flag", nil, []string{"-x", "app"}, []string{"unknown flag -x"}},
		{"unknown flag with a newline", nil, []string{"--a\nb", "app"}, []string{`unknown flag "--a\nb"`}},
		{"bad flag syntax", nil, []string{"---x\ny", "app"}, []string{`bad flag syntax "---x\ny"`}},
		{"flag without its value", nil, []string{"app", "-i"}, nil},
		{"flag needs a value", nil, []string{"-i"}, []string{"flag -i needs a value"}},
		{"long flag needs a value", nil, []string{"--kill-timeout"}, []string{"flag --kill-timeout needs a value"}},
		{"bad bool flag", nil, []string{"--dry-run=perhaps", "app"}, []string{`"perhaps"`, "dry-run", "see gm2-init -h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if tt.name == "flag without its value" {
				// "-i" after the command is the command's own argument.
				if c := mustParse(t, tt.args...); !slices.Equal(c.Command, []string{"app", "-i"}) {
					t.Errorf("Command = %q", c.Command)
				}
				return
			}
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range tt.args {
				a = strings.ReplaceAll(a, "SELF", self)
				tt.args[i] = strings.ReplaceAll(a, "PATHDIR", os.Getenv("PATH"))
			}
			parseErr(t, tt.args, tt.want...)
		})
	}
}

func TestParseHelpAndVersion(t *testing.T) {
	env(t)
	t.Setenv("GM2_INSTANCES", "garbage") // not even looked at
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--version"}, {"-h", "--", "nosuchapp"}} {
		cfg, err := Parse(args)
		if err != nil {
			t.Fatalf("Parse(%q): %v", args, err)
		}
		if !cfg.ShowHelp && !cfg.ShowVersion {
			t.Errorf("Parse(%q): neither help nor version", args)
		}
	}
	cfg := mustParse(t, "--dry-run", "-i", "2", "app")
	if !cfg.DryRun || cfg.ShowHelp || cfg.ShowVersion {
		t.Errorf("--dry-run: %+v", cfg)
	}
}

func TestParseWarnings(t *testing.T) {
	env(t)
	t.Setenv("GM2_INSTANCE", "3")   // set by gm2-init for its workers
	t.Setenv("GM2_LISTENERS", "x")  // idem
	t.Setenv("GM2_PRELOAD_FD", "4") // idem
	cfg := mustParse(t, "app")
	if len(cfg.Warnings) != 0 {
		t.Errorf("worker-side variables warned about: %q", cfg.Warnings)
	}
	t.Setenv("GM2_KILLTIMEOUT", "30s") // a typo: no underscore
	t.Setenv("GM2_INSTANCESS", "2")
	cfg = mustParse(t, "app")
	want := []string{
		"unknown variable GM2_INSTANCESS ignored (gm2-init -h lists the GM2_* variables)",
		"unknown variable GM2_KILLTIMEOUT ignored (gm2-init -h lists the GM2_* variables)",
	}
	if !slices.Equal(cfg.Warnings, want) {
		t.Errorf("Warnings = %q, want %q", cfg.Warnings, want)
	}
	if cfg.KillTimeout != 8*time.Second {
		t.Errorf("GM2_KILLTIMEOUT was read: %v", cfg.KillTimeout)
	}
	for _, w := range cfg.Warnings {
		if strings.ContainsAny(w, "\n\r") {
			t.Errorf("warning not one line: %q", w)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		args  []string
		check func(*Config) bool
	}{
		{[]string{"--cpus", "0"}, func(c *Config) bool { return c.CPUs == 0 }},
		{[]string{"--cpu-rounding", " FLOOR "}, func(c *Config) bool { return !c.CPUCeil }},
		{[]string{"--health-addr", "OFF"}, func(c *Config) bool { return c.HealthAddr == "" }},
		{[]string{"--health-addr", ""}, func(c *Config) bool { return c.HealthAddr == "" }},
		{[]string{"--health-addr", "[::1]:0"}, func(c *Config) bool { return c.HealthAddr == "[::1]:0" }},
		{[]string{"--health-addr", "localhost:9000"}, func(c *Config) bool { return c.HealthAddr == "localhost:9000" }},
		{[]string{"--min-ready", "ALL"}, func(c *Config) bool { return c.MinReady == 0 }},
		{[]string{"--min-ready", "3"}, func(c *Config) bool { return c.MinReady == 3 }},
		{[]string{"--min-uptime", "0"}, func(c *Config) bool { return c.MinUptime == 0 }},
		{[]string{"--shutdown-delay", "0"}, func(c *Config) bool { return c.ShutdownDelay == 0 }},
		{[]string{"--log-level", "WARN"}, func(c *Config) bool { return c.LogLevel == zerolog.WarnLevel }},
		{[]string{"--node-preload", "On"}, func(c *Config) bool { return c.NodePreload == "on" }},
		{[]string{"--max-restarts", "0"}, func(c *Config) bool { return c.MaxRestarts == 0 }},
		{[]string{"--stop-signal", "34"}, func(c *Config) bool { return c.StopSignal == syscall.Signal(34) }},
	}
	for _, tt := range tests {
		env(t)
		if c := mustParse(t, append(tt.args, "app")...); !tt.check(c) {
			t.Errorf("Parse(%q): %+v", tt.args, c)
		}
	}
	env(t)
	for _, args := range [][]string{
		{"--health-addr", "9000"},
		{"--health-addr", ":65536"},
		{"--health-addr", "host:9000"},
		{"--log-level", ""},
		{"--log-level", "trace-ish"},
		{"--cpus", "1.5"},
		{"--min-ready", "-1"},
		{"--reload-batch", "x"},
	} {
		parseErr(t, append(args, "app"), args[0], "invalid value")
	}
}

func TestUsage(t *testing.T) {
	var b bytes.Buffer
	Usage(&b, "v1.2.3")
	out := b.String()
	if !strings.Contains(out, "gm2-init v1.2.3") {
		t.Errorf("no version in the help")
	}
	for _, o := range describe() {
		for _, want := range []string{"--" + o.name, "[" + o.env + "]", o.desc} {
			if !strings.Contains(out, want) {
				t.Errorf("help lacks %q", want)
			}
		}
		if o.short != "" && !strings.Contains(out, "-"+o.short+", --"+o.name) {
			t.Errorf("help lacks -%s", o.short)
		}
		if o.def != "" && !strings.Contains(out, "(default "+o.def+")") {
			t.Errorf("help lacks the default of --%s", o.name)
		}
	}
	for _, want := range []string{"--dry-run", "--help", "--version", "-- COMMAND"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// Every default in the struct tags is itself a valid value (a typo there
// would make gm2-init fail to start with no flag given).
func TestDefaultsAreValid(t *testing.T) {
	env(t)
	for _, o := range describe() {
		if o.def == "" {
			continue
		}
		if _, err := Parse([]string{"--" + o.name + "=" + o.def, "app"}); err != nil {
			t.Errorf("default of --%s: %v", o.name, err)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain — unicode ≥ 1":   "plain — unicode ≥ 1",
		"a\nb\r\tc":             `a\nb\r\tc`,
		"nul\x00":               `nul\x00`,
		"bad \xff utf8":         `bad \xff utf8`,
		"line\u2028separator":   `line\u2028separator`,
		`already "quoted\n"`:    `already "quoted\n"`,
		"del\x7f and c1 \u0085": `del\x7f and c1 \u0085`,
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseArgs feeds arbitrary flags to Parse: never a panic, always a
// one-line *UsageError or a usable Config.
func FuzzParseArgs(f *testing.F) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") {
			f.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	for _, a := range [][2]string{
		{"-i", "max"}, {"--listen", ":8080"}, {"--listen=:1", "--listen=:1"}, {"--kill-timeout", "8"},
		{"--wait-ready", "--dry-run"}, {"---", "x"}, {"-\n", ""}, {"--stop-signal=KILL", "-h"},
		{"--health-addr", "[::1]:9000"}, {"--listen", "unix:///tmp/\x00"}, {"--", "--"},
	} {
		f.Add(a[0], a[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		cfg, err := Parse([]string{a, b, "--", self})
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Parse(%q, %q): %T %v, want a *UsageError", a, b, err, err)
			}
			checkOneLine(t, err)
			return
		}
		if cfg.ShowHelp || cfg.ShowVersion {
			return
		}
		if len(cfg.Command) == 0 || cfg.Path == "" {
			t.Fatalf("Parse(%q, %q): no command: %+v", a, b, cfg)
		}
		if n, _ := cfg.Instances.Resolve(1); n < 1 || n > appspec.MaxWorkers {
			t.Fatalf("Parse(%q, %q): %d instances", a, b, n)
		}
		if cfg.KillTimeout < time.Millisecond || cfg.ListenTimeout < time.Millisecond || cfg.ReloadBatch < 1 || cfg.MinReady < 0 {
			t.Fatalf("Parse(%q, %q): out-of-range value in %+v", a, b, cfg)
		}
		if err := checkDistinct(cfg.Listen); err != nil {
			t.Fatalf("Parse(%q, %q): accepted overlapping listeners: %v", a, b, err)
		}
	})
}
