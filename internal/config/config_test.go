package config

// Parse reads os.Environ (GM2_* variables, PATH), so none of these tests may
// run in parallel: they set the environment with t.Setenv.

import (
	"bytes"
	"encoding/json"
	"errors"
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
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
}

// clearEnv removes every GM2_* variable (restored after the test).
func clearEnv(t testing.TB) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") || name == "NODE_APP_INSTANCE" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

// env gives the test a clean environment: no GM2_* variable from the
// outside, and a PATH holding only "app" (executable) and "data" (not).
// It returns the path of app.
func env(t *testing.T) string {
	t.Helper()
	clearEnv(t)
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
	for _, name := range []string{"LOG_LEVEL", "PORT", "INSTANCES", "KILL_TIMEOUT", "LISTEN", "CONFIG", "ENV", "ONLY"} {
		t.Setenv(name, "nonsense")
	}
	for _, args := range [][]string{{"--", "app", "-x", "--y"}, {"app", "-x", "--y"}} {
		cfg := mustParse(t, args...)
		cfg.sources = nil
		want := &Config{
			App: appspec.App{
				Name:          "app",
				Command:       []string{"app", "-x", "--y"},
				Path:          app,
				Instances:     appspec.Instances{N: 1},
				KillTimeout:   8 * time.Second,
				StopSignal:    syscall.SIGTERM,
				Restart:       appspec.Always,
				MinUptime:     time.Second,
				MaxRestarts:   16,
				ListenTimeout: 10 * time.Second,
				ReloadBatch:   1,
				MinReady:      1,
				NodePreload:   "auto",
			},
			Global: Global{
				CPURounding:         cpus.Floor,
				HealthAddr:          ":9000",
				QueueTimeout:        5 * time.Second,
				MemoryCheckInterval: 30 * time.Second,
				MaxSharedPorts:      64,
				LogLevel:            zerolog.InfoLevel,
				LogFormat:           "json",
			},
		}
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", args, cfg, want)
		}
	}
}

// testValues has, for every option, a valid value that is not the default
// (with how it shows in Config) and an invalid one. An option missing here
// fails TestEveryOption.
var testValues = map[string]struct {
	valid string
	check func(*Config) bool
	bad   string
}{
	"instances":             {"-2", func(c *Config) bool { return c.App.Instances == appspec.Instances{Relative: true, N: 2} }, "abc"},
	"cpus":                  {"3", func(c *Config) bool { return c.CPUs == 3 }, "-1"},
	"cpu-rounding":          {"ceil", func(c *Config) bool { return c.CPURounding == cpus.Ceil }, "round"},
	"listen":                {"127.0.0.1:0", func(c *Config) bool { return len(c.App.Listen) == 1 && c.App.Listen[0].Addr == "127.0.0.1:0" }, "nowhere"},
	"kill-timeout":          {"3s", func(c *Config) bool { return c.App.KillTimeout == 3*time.Second }, "8"},
	"stop-signal":           {"INT", func(c *Config) bool { return c.App.StopSignal == syscall.SIGINT }, "KILL"},
	"restart":               {"on-failure", func(c *Config) bool { return c.App.Restart == appspec.OnFailure }, "sometimes"},
	"min-uptime":            {"250ms", func(c *Config) bool { return c.App.MinUptime == 250*time.Millisecond }, "-1s"},
	"max-restarts":          {"5", func(c *Config) bool { return c.App.MaxRestarts == 5 }, "-1"},
	"wait-ready":            {"true", func(c *Config) bool { return c.App.WaitReady }, "maybe"},
	"listen-timeout":        {"1m", func(c *Config) bool { return c.App.ListenTimeout == time.Minute }, "0s"},
	"reload-batch":          {"3", func(c *Config) bool { return c.App.ReloadBatch == 3 }, "0"},
	"max-memory-restart":    {"300M", func(c *Config) bool { return c.App.MaxMemory == 300<<20 }, "10X"},
	"memory-check-interval": {"5s", func(c *Config) bool { return c.MemoryCheckInterval == 5*time.Second }, "500ms"},
	"health-addr":           {"127.0.0.1:9100", func(c *Config) bool { return c.HealthAddr == "127.0.0.1:9100" }, "example.com:80"},
	"min-ready":             {"all", func(c *Config) bool { return c.App.MinReady == 0 }, "0"},
	"queue-timeout":         {"0", func(c *Config) bool { return c.QueueTimeout == 0 }, "10ms"},
	"shutdown-delay":        {"5s", func(c *Config) bool { return c.ShutdownDelay == 5*time.Second }, "soon"},
	"node-preload":          {"off", func(c *Config) bool { return c.App.NodePreload == "off" }, "auto-ish"},
	"max-shared-ports":      {"8", func(c *Config) bool { return c.MaxSharedPorts == 8 }, "0"},
	"config":                {"PROCFILE", func(c *Config) bool { return strings.HasSuffix(c.ConfigFile, "ecosystem.json") }, "/nonexistent/ecosystem.json"},
	"only":                  {"web,worker", func(c *Config) bool { return slices.Equal(c.Only, []string{"web", "worker"}) }, "a b"},
	"env":                   {"production", func(c *Config) bool { return c.Env == "production" }, "prod/uction"},
	"log-level":             {"debug", func(c *Config) bool { return c.LogLevel == zerolog.DebugLevel }, "loud"},
	"log-format":            {"console", func(c *Config) bool { return c.LogFormat == "console" }, "xml"},
}

// The documented variable of every option, that envconfig really reads it
// (a variable envconfig spells differently from the option's env(), say
// GM2_KILLTIMEOUT, would be silently ignored), and that the flag, in every
// spelling, wins over it.
func TestEveryOption(t *testing.T) {
	documented := []string{
		"GM2_INSTANCES", "GM2_CPUS", "GM2_CPU_ROUNDING", "GM2_LISTEN", "GM2_KILL_TIMEOUT",
		"GM2_STOP_SIGNAL", "GM2_RESTART", "GM2_MIN_UPTIME", "GM2_MAX_RESTARTS", "GM2_WAIT_READY",
		"GM2_LISTEN_TIMEOUT", "GM2_RELOAD_BATCH", "GM2_MAX_MEMORY_RESTART", "GM2_MEMORY_CHECK_INTERVAL",
		"GM2_HEALTH_ADDR", "GM2_MIN_READY", "GM2_QUEUE_TIMEOUT", "GM2_SHUTDOWN_DELAY", "GM2_NODE_PRELOAD",
		"GM2_MAX_SHARED_PORTS", "GM2_CONFIG", "GM2_ONLY", "GM2_ENV", "GM2_LOG_LEVEL", "GM2_LOG_FORMAT",
	}
	var got []string
	for _, o := range options {
		if e := o.env(); e != "" {
			got = append(got, e)
		}
	}
	if !slices.Equal(got, documented) {
		t.Errorf("variables\n got %q\nwant %q", got, documented)
	}

	for _, o := range options {
		if o.scope == actionScope {
			continue
		}
		t.Run(o.env(), func(t *testing.T) {
			tv, ok := testValues[o.long]
			if !ok {
				t.Fatalf("option --%s has no test values: add it to testValues", o.long)
			}
			valid := tv.valid
			env(t)
			if valid == "PROCFILE" {
				valid = filepath.Join(t.TempDir(), "ecosystem.json")
				os.WriteFile(valid, []byte(`{"apps":[]}`), 0o644)
			}
			if c := mustParse(t, "app"); tv.check(c) {
				t.Fatalf("%s=%s is the default: pick another test value", o.env(), valid)
			}
			needs := func(args ...string) []string { // --only and --env need --config
				if o.long == "only" || o.long == "env" {
					p := filepath.Join(t.TempDir(), "ecosystem.json")
					os.WriteFile(p, []byte(`{"apps":[]}`), 0o644)
					return append([]string{"--config", p}, args...)
				}
				return args
			}
			t.Setenv(o.env(), valid)
			if c := mustParse(t, needs("app")...); !tv.check(c) {
				t.Errorf("%s=%s is not read: %+v", o.env(), valid, c)
			}
			t.Setenv(o.env(), tv.bad)
			msg := parseErr(t, needs("app"), o.env(), tv.bad)
			if strings.Contains(msg, "--"+o.long) {
				t.Errorf("error %q about the variable should not name the flag", msg)
			}

			// The flag, in every spelling, wins over the bad variable.
			spellings := [][]string{{"--" + o.long + "=" + valid, "app"}, {"-" + o.long + "=" + valid, "app"}}
			if o.kind != switchKind {
				spellings = append(spellings, []string{"--" + o.long, valid, "app"})
				if o.short != "" {
					spellings = append(spellings, []string{"-" + o.short, valid, "app"}, []string{"-" + o.short + "=" + valid, "app"})
				}
			} else {
				spellings = append(spellings, []string{"--" + o.long, "app"})
			}
			for _, args := range spellings {
				if c := mustParse(t, needs(args...)...); !tv.check(c) {
					t.Errorf("Parse(%q) with %s=%s: flag not applied: %+v", args, o.env(), tv.bad, c)
				}
			}

			// A bad flag over a good variable names the flag.
			t.Setenv(o.env(), valid)
			msg = parseErr(t, needs("--"+o.long+"="+tv.bad, "app"), o.spelling(), tv.bad)
			if strings.Contains(msg, o.env()) {
				t.Errorf("error %q about the flag should not name the variable", msg)
			}
		})
	}
}

func TestSourceNames(t *testing.T) {
	env(t)
	t.Setenv("GM2_KILL_TIMEOUT", "3s")
	c := mustParse(t, "-i", "2", "app")
	for long, want := range map[string]string{
		"instances":    "-i/--instances",
		"kill-timeout": "GM2_KILL_TIMEOUT",
		"listen":       "--listen",
		"min-ready":    "--min-ready default",
	} {
		if got := c.Source(long); got != want {
			t.Errorf("Source(%q) = %q, want %q", long, got, want)
		}
	}
	// Every long name this package passes to byLong exists.
	for _, long := range []string{"health-addr", "listen", "instances", "min-ready", "only", "env"} {
		if o := byLong(long); o.set == nil {
			t.Errorf("byLong(%q): no such option", long)
		}
	}
}

func TestParsePrecedence(t *testing.T) {
	env(t)
	t.Setenv("GM2_INSTANCES", "3")
	t.Setenv("GM2_KILL_TIMEOUT", "20s")
	t.Setenv("GM2_LOG_LEVEL", "warn")
	cfg := mustParse(t, "-i", "max", "--log-level=error", "--", "app")
	if cfg.App.Instances != (appspec.Instances{Relative: true}) {
		t.Errorf("flag -i max lost to GM2_INSTANCES=3: %+v", cfg.App.Instances)
	}
	if cfg.LogLevel != zerolog.ErrorLevel {
		t.Errorf("flag --log-level lost to the variable: %v", cfg.LogLevel)
	}
	if cfg.App.KillTimeout != 20*time.Second {
		t.Errorf("GM2_KILL_TIMEOUT lost to the default: %v", cfg.App.KillTimeout)
	}
	if cfg.App.ReloadBatch != 1 {
		t.Errorf("default reload batch: %d", cfg.App.ReloadBatch)
	}
}

// An option given twice is refused, whatever the spellings; only --listen
// repeats.
func TestParseTwice(t *testing.T) {
	env(t)
	for _, args := range [][]string{
		{"-i", "2", "--instances", "3"},
		{"-i", "2", "-i", "2"},
		{"--instances=2", "-instances", "3"},
		{"--kill-timeout", "1s", "--kill-timeout=2s"},
		{"--wait-ready", "--wait-ready=false"},
		{"--dry-run", "--dry-run"},
		{"--config", "x", "--config", "y"},
	} {
		o := lookup(strings.TrimLeft(strings.SplitN(args[0], "=", 2)[0], "-"))
		parseErr(t, append(args, "app"), o.spelling()+" given twice", "give it once")
	}
	msg := parseErr(t, []string{"-i", "2", "--instances", "3", "app"})
	if want := `-i/--instances given twice ("-i 2" then "--instances 3"); give it once (only --listen repeats)`; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
}

// Switches take their value after '=' only. A switch followed by a word it
// would take as a value is refused: Go's flag parser would have read it as
// the command (--wait-ready false --dry-run -- cmd ran /bin/false).
func TestParseSwitches(t *testing.T) {
	env(t)
	for _, tc := range []struct {
		env  string // GM2_WAIT_READY; "-" = unset
		args []string
		want bool
	}{
		{"-", []string{"--wait-ready", "app"}, true},
		{"-", []string{"--wait-ready", "--", "app"}, true},
		{"true", []string{"--wait-ready=false", "app"}, false},
		{"false", []string{"--wait-ready=yes", "app"}, true},
		{"false", []string{"--wait-ready=1", "app"}, true},
		{"yes", []string{"app"}, true},
		{"0", []string{"app"}, false},
		{"off", []string{"app"}, false},
		// A switch never takes the next argument as its value.
		{"-", []string{"--wait-ready", "app", "false"}, true},
	} {
		if tc.env == "-" {
			os.Unsetenv("GM2_WAIT_READY")
		} else {
			t.Setenv("GM2_WAIT_READY", tc.env)
		}
		c := mustParse(t, tc.args...)
		if c.App.WaitReady != tc.want {
			t.Errorf("GM2_WAIT_READY=%q %q: WaitReady = %v", tc.env, tc.args, c.App.WaitReady)
		}
		if c.App.Command[0] != "app" {
			t.Errorf("%q: Command = %q", tc.args, c.App.Command)
		}
	}
	os.Unsetenv("GM2_WAIT_READY")
	for _, args := range [][]string{
		{"--wait-ready", "false", "--dry-run", "--", "app"},
		{"--wait-ready", "true", "app"},
		{"--wait-ready", "FALSE", "app"},
		{"--dry-run", "no", "--", "app"},
		{"--wait-ready", "0", "app"},
		{"--wait-ready", "1", "app"},
	} {
		parseErr(t, args, args[0]+" "+`"`+args[1]+`"`, "a switch takes its value after '='", "--"+strings.TrimLeft(args[0], "-")+"="+strings.ToLower(args[1]), "goes after --")
	}
	parseErr(t, []string{"--wait-ready=maybe", "app"}, `--wait-ready: invalid value "maybe": accepted: true or false`)
	parseErr(t, []string{"--dry-run=perhaps", "app"}, `--dry-run: invalid value "perhaps"`)
	// Only the spellings listed are a switch's value: y, 2 or enabled are
	// refused, not read as true.
	for _, v := range []string{"y", "n", "2", "enabled"} {
		parseErr(t, []string{"--wait-ready=" + v, "app"}, `--wait-ready: invalid value "`+v+`": accepted: true or false`)
	}
}

func listenAddrs(c *Config) []string {
	var out []string
	for _, s := range c.App.Listen {
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
		{"multi-line variable", "\n  http=:8080,\n  udp://:53,\n", nil, []string{"http=tcp://:8080", "udp-53=udp://:53"}},
		{"flag", "-", []string{"--listen", ":8080"}, []string{"tcp-8080=tcp://:8080"}},
		{"flag repeated", "-", []string{"--listen", ":8080", "--listen=udp://:8080", "--listen", "admin=127.0.0.1:9"},
			[]string{"tcp-8080=tcp://:8080", "udp-8080=udp://:8080", "admin=tcp://127.0.0.1:9"}},
		// The flag replaces the variable's value; later uses add to it.
		{"flag replaces variable", ":1,:2", []string{"--listen", ":3"}, []string{"tcp-3=tcp://:3"}},
		{"flags replace variable", ":1,:2", []string{"--listen", ":3", "--listen", ":4"}, []string{"tcp-3=tcp://:3", "tcp-4=tcp://:4"}},
		{"flag with commas", "-", []string{"--listen", ":3,:4"}, []string{"tcp-3=tcp://:3", "tcp-4=tcp://:4"}},
		{"port 0 twice", "-", []string{"--listen", ":0", "--listen", ":0"}, []string{"tcp-0-1=tcp://:0", "tcp-0-2=tcp://:0"}},                      // names were both tcp-0
		{"both families", "-", []string{"--listen", "tcp4://:80", "--listen", "tcp6://:80"}, []string{"tcp4-80=tcp4://:80", "tcp6-80=tcp6://:80"}}, // were both tcp-80
		{"tcp and udp", "-", []string{"--listen", ":53", "--listen", "udp://:53"}, []string{"tcp-53=tcp://:53", "udp-53=udp://:53"}},
		{"two loopbacks", "-", []string{"--listen", "127.0.0.1:80", "--listen", "[::1]:80"}, []string{"tcp-127.0.0.1-80=tcp://127.0.0.1:80", "tcp-__1-80=tcp://[::1]:80"}}, // were both tcp-80
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
		{"empty flag", "", []string{"--listen", ""}, []string{`--listen: invalid value "": no address; accepted: [NAME=]ADDR`}},
		{"blank flag", "", []string{"--listen", " , "}, []string{`--listen: invalid value " , ": no address`}},
		{"empty flag among others", "", []string{"--listen", ":1", "--listen="}, []string{"--listen: ", "no address"}},
		{"variable with no address", ",", nil, []string{`GM2_LISTEN: invalid value ",": no address`}},
		{"variable with blanks only", " ,\n, ", nil, []string{"GM2_LISTEN: ", "no address"}},
		{"same address", "", []string{"--listen", ":8080", "--listen", "8080"}, []string{"--listen: ", `":8080" and "8080" bind the same address`}},
		{"same address in the variable", ":8080,tcp://:8080", nil, []string{"GM2_LISTEN: ", "bind the same address"}},
		{"wildcard and loopback", "", []string{"--listen", ":8080", "--listen", "127.0.0.1:8080"}, []string{"bind the same address"}},
		{"dual-stack and tcp6", "", []string{"--listen", ":8080", "--listen", "tcp6://[::1]:8080"}, []string{"bind the same address"}},
		{"localhost twice", "", []string{"--listen", "localhost:80", "--listen", "127.0.0.1:80"}, []string{"bind the same address"}},
		{"one name twice (was accepted)", "", []string{"--listen", "a=:1", "--listen", "a=:2"},
			[]string{`--listen: name "a" is given to both "a=:1" and "a=:2"; give each listener its own name (LISTEN_FDNAMES tells them apart by name)`}},
		{"one name twice in the variable", "web=:1,web=udp://:2", nil, []string{`GM2_LISTEN: name "web" is given to both "web=:1" and "web=udp://:2"`}},
		{"same unix path", "", []string{"--listen", "unix:///run/a.sock", "--listen", "unixgram:///run/b/../a.sock"}, []string{"bind the same address"}},
		{"health on a listener", "", []string{"--listen", ":9000"}, []string{"--health-addr default", `":9000"`, "--listen", "another port"}},
		{"health flag on a listener", "", []string{"--listen", "127.0.0.1:9100", "--health-addr", "127.0.0.1:9100"}, []string{"--health-addr", "--listen", "bind the same address"}},
		// net.Listen("tcp", "[::]:P") is dual-stack: it takes 0.0.0.0:P too.
		{"health [::] on an IPv4 listener", "", []string{"--listen", "0.0.0.0:9100", "--health-addr", "[::]:9100"}, []string{`--health-addr "[::]:9100" and --listen "0.0.0.0:9100" bind the same address`}},
		{"health 0.0.0.0 on an IPv6 listener", "", []string{"--listen", "[::1]:9100", "--health-addr", "0.0.0.0:9100"}, []string{"bind the same address"}},
		{"health variable on a listener variable", "127.0.0.1:9100", []string{"--health-addr", "localhost:9100"}, []string{`--health-addr "localhost:9100" and GM2_LISTEN "127.0.0.1:9100"`}},
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
	mustParse(t, "--listen", "[::]:9100", "--health-addr", "127.0.0.1:9100", "app") // Bind's [::] is IPv6 only
}

func TestParseMessages(t *testing.T) {
	long := strings.Repeat("9", 100*1024)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"flag names both spellings", nil, []string{"-i", "abc", "app"}, []string{`-i/--instances: invalid value "abc": accepted: max`}},
		{"long flag", nil, []string{"--instances=1.5", "app"}, []string{`-i/--instances: invalid value "1.5"`}},
		{"huge value cut short", nil, []string{"-i", long, "app"}, []string{`-i/--instances: invalid value "` + long[:64] + `…": accepted`}},
		{"variable", map[string]string{"GM2_KILL_TIMEOUT": "8"}, []string{"app"}, []string{`GM2_KILL_TIMEOUT: invalid value "8": accepted: a duration with a unit, such as 8s or 8ms`}},
		{"flag without short name", map[string]string{"GM2_KILL_TIMEOUT": "8s"}, []string{"--kill-timeout", "-1s", "app"}, []string{`--kill-timeout: invalid value "-1s"`}},
		{"kill timeout at least 1ms", nil, []string{"--kill-timeout", "0", "app"}, []string{"--kill-timeout", "from 1ms to 24h"}},
		{"huge duration", nil, []string{"--shutdown-delay", "2562047h", "app"}, []string{"--shutdown-delay", "at most 24h"}},
		{"stop signal", map[string]string{"GM2_STOP_SIGNAL": "SIGKILL"}, []string{"app"}, []string{"GM2_STOP_SIGNAL", "cannot be caught"}},
		{"newline in a value", map[string]string{"GM2_LOG_LEVEL": "info\nerror"}, []string{"app"}, []string{`GM2_LOG_LEVEL: invalid value "info\nerror"`}},
		{"missing command", nil, nil, []string{"missing command", "-- COMMAND"}},
		{"missing command after --", nil, []string{"-i", "2", "--"}, []string{"missing command"}},
		{"command not found", nil, []string{"--", "nosuchapp"}, []string{`command "nosuchapp": not found in PATH`}},
		{"command not executable", nil, []string{"data"}, []string{`command "data": found as "/`, `" in PATH, but it is not executable`}},
		{"command path not executable", nil, []string{"PATHDIR/data"}, []string{`": is not executable`}},
		{"command path missing", nil, []string{"/nonexistent/app"}, []string{`command "/nonexistent/app": no such file`}},
		{"command path through a file", nil, []string{"SELF/app"}, []string{`/app": no such file`}},
		{"command with a newline", nil, []string{"/no\nsuch"}, []string{`command "/no\nsuch"`}},
		{"huge command", nil, []string{"/" + long}, []string{`command "/` + long[:63] + `…": file name too long`}},
		{"unknown long flag", nil, []string{"--instance", "2", "app"}, []string{"unknown flag --instance", "put the command after --"}},
		{"unknown short flag", nil, []string{"-x", "app"}, []string{"unknown flag -x (see gm2-init -h"}},
		{"flag typo", nil, []string{"--kill-timout", "3s", "app"}, []string{"unknown flag --kill-timout; did you mean --kill-timeout? (see gm2-init -h; put the command after --)"}},
		{"flag typo, one dash", nil, []string{"-instance", "2", "app"}, []string{"unknown flag -instance; did you mean --instances?"}},
		{"flag with PM2's underscores", nil, []string{"--max_memory_restart", "1G", "app"}, []string{"unknown flag --max_memory_restart; did you mean --max-memory-restart?"}},
		{"switch with PM2's underscores", nil, []string{"--wait_ready", "app"}, []string{"unknown flag --wait_ready; did you mean --wait-ready?"}},
		{"switch with underscores and a value", nil, []string{"--wait_ready=false", "app"}, []string{"unknown flag --wait_ready; did you mean --wait-ready?"}},
		{"flag in capitals", nil, []string{"--DRY-RUN", "app"}, []string{"unknown flag --DRY-RUN; did you mean --dry-run?"}},
		{"short flag glued to its value", nil, []string{"-i3", "app"}, []string{"unknown flag -i3: a value goes after a blank or '=': -i 3 or -i=3"}},
		{"short flag glued to max", nil, []string{"-imax", "app"}, []string{"unknown flag -imax: a value goes after a blank or '=': -i max or -i=max"}},
		{"no suggestion far from every option", nil, []string{"--nope", "app"}, []string{"unknown flag --nope (see gm2-init -h; put the command after --)"}},
		{"no suggestion for a one-letter flag", nil, []string{"-n", "app"}, []string{"unknown flag -n (see gm2-init -h; put the command after --)"}},
		{"a switch glued to a word is no value", nil, []string{"-hx", "app"}, []string{"unknown flag -hx (see gm2-init -h; put the command after --)"}},
		{"a lone dash is the command", nil, []string{"-"}, []string{`command "-": not found`}},
		{"unknown flag with a newline", nil, []string{"--a\nb", "app"}, []string{`unknown flag "--a\nb"`}},
		{"bad flag syntax", nil, []string{"---x\ny", "app"}, []string{`bad flag syntax "---x\ny"`}},
		{"bad flag syntax =", nil, []string{"--=x", "app"}, []string{`bad flag syntax "--=x"`}},
		{"flag needs a value", nil, []string{"-i"}, []string{"flag -i needs a value"}},
		{"long flag needs a value", nil, []string{"--kill-timeout"}, []string{"flag --kill-timeout needs a value"}},
		{"bad bool flag", nil, []string{"--dry-run=perhaps", "app"}, []string{`"perhaps"`, "dry-run", "accepted: true or false"}},
		{"cpus above the cap", nil, []string{"--cpus", "100000", "app"}, []string{`--cpus: invalid value "100000"`, "from 1 to 1024", "cap on workers"}},
		{"only without config", nil, []string{"--only", "web", "app"}, []string{"--only selects from a process file", "--config FILE"}},
		{"env without config", map[string]string{"GM2_ENV": "production"}, []string{"app"}, []string{"GM2_ENV selects from a process file"}},
		{"config missing", nil, []string{"--config", "/nonexistent/ecosystem.config.js"}, []string{`--config: invalid value "/nonexistent/ecosystem.config.js": no such file`}},
		{"config a directory", nil, []string{"--config", "/"}, []string{`--config: invalid value "/": not a regular file`}},
		{"config empty", nil, []string{"--config", ""}, []string{`--config: invalid value "": accepted: the path of a PM2 process file`}},
		{"max memory zero", nil, []string{"--max-memory-restart", "0", "app"}, []string{"--max-memory-restart", "300M", "or off"}},
		{"max memory negative", nil, []string{"--max-memory-restart=-5M", "app"}, []string{`--max-memory-restart: invalid value "-5M"`}},
		{"memory check too often", nil, []string{"--memory-check-interval", "10ms", "app"}, []string{"from 1s to 24h"}},
		{"queue timeout too short", nil, []string{"--queue-timeout", "1ms", "app"}, []string{"0 (off) or a duration from 100ms"}},
		{"empty GM2_HEALTH_ADDR is refused, as every empty variable of an option with a default", map[string]string{"GM2_HEALTH_ADDR": ""}, []string{"app"},
			[]string{`GM2_HEALTH_ADDR: invalid value "": accepted: off, PORT, :PORT, HOST:PORT or [IPv6]:PORT`}},
		{"empty GM2_WAIT_READY", map[string]string{"GM2_WAIT_READY": ""}, []string{"app"}, []string{`GM2_WAIT_READY: invalid value "": accepted: true or false`}},
		{"shared ports 0", nil, []string{"--max-shared-ports", "0", "app"}, []string{"from 1 to 1024"}},
		{"shared ports 1025", nil, []string{"--max-shared-ports", "1025", "app"}, []string{"from 1 to 1024"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range tt.args {
				a = strings.ReplaceAll(a, "SELF", self)
				tt.args[i] = strings.ReplaceAll(a, "PATHDIR", os.Getenv("PATH"))
			}
			msg := parseErr(t, tt.args, tt.want...)
			if len(msg) > 600 {
				t.Errorf("message of %d bytes: values must be cut short", len(msg))
			}
		})
	}
	// "-i" after the command is the command's own argument.
	env(t)
	if c := mustParse(t, "app", "-i"); !slices.Equal(c.App.Command, []string{"app", "-i"}) {
		t.Errorf("Command = %q", c.App.Command)
	}
}

func TestParseHelpAndVersion(t *testing.T) {
	env(t)
	t.Setenv("GM2_INSTANCES", "garbage") // not even looked at
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--version"}, {"-h", "--", "nosuchapp"}, {"-i", "x", "-h"}} {
		cfg, err := Parse(args)
		if err != nil {
			t.Fatalf("Parse(%q): %v", args, err)
		}
		if !cfg.ShowHelp && !cfg.ShowVersion {
			t.Errorf("Parse(%q): neither help nor version", args)
		}
	}
	os.Unsetenv("GM2_INSTANCES")
	cfg := mustParse(t, "--dry-run", "-i", "2", "app")
	if !cfg.DryRun || cfg.ShowHelp || cfg.ShowVersion {
		t.Errorf("--dry-run: %+v", cfg)
	}
}

func TestParseWarnings(t *testing.T) {
	env(t)
	t.Setenv("GM2_LISTENERS", "x")  // set by gm2-init for its workers
	t.Setenv("GM2_PRELOAD_FD", "4") // idem
	// Inherited from an outer gm2-init: NODE_APP_INSTANCE has the same
	// value.
	t.Setenv("GM2_INSTANCE", "3")
	t.Setenv("NODE_APP_INSTANCE", "3")
	cfg := mustParse(t, "app")
	if len(cfg.Warnings) != 0 {
		t.Errorf("worker-side variables warned about: %q", cfg.Warnings)
	}
	// Alone (or with another NODE_APP_INSTANCE), it is a typo.
	t.Setenv("NODE_APP_INSTANCE", "0")
	t.Setenv("GM2_INSTANCE", "4")
	t.Setenv("GM2_KILLTIMEOUT", "30s") // a typo: no underscore
	t.Setenv("GM2_INSTANCESS", "2")
	t.Setenv("GM2_FROBNICATE", "1")
	cfg = mustParse(t, "app")
	want := []string{
		`GM2_INSTANCE="4" ignored: gm2-init sets it for its workers (their slot number), it is no option; did you mean GM2_INSTANCES?`,
		"unknown variable GM2_FROBNICATE ignored (gm2-init -h lists the GM2_* variables)",
		"unknown variable GM2_INSTANCESS ignored; did you mean GM2_INSTANCES?",
		"unknown variable GM2_KILLTIMEOUT ignored; did you mean GM2_KILL_TIMEOUT?",
	}
	if !slices.Equal(cfg.Warnings, want) {
		t.Errorf("Warnings =\n%q\nwant\n%q", cfg.Warnings, want)
	}
	if cfg.App.KillTimeout != 8*time.Second || cfg.App.Instances.N != 1 {
		t.Errorf("a misspelt variable was read: %+v", cfg.App)
	}
	os.Unsetenv("NODE_APP_INSTANCE")
	if w := unknownVars([]string{"GM2_INSTANCE=1"}); len(w) != 1 || !strings.Contains(w[0], "did you mean GM2_INSTANCES?") {
		t.Errorf("GM2_INSTANCE without NODE_APP_INSTANCE: %q", w)
	}
	// Only GM2_* names are gm2-init's; a suggestion is at most 2 edits away.
	for _, c := range []struct {
		environ []string
		want    []string
	}{
		{[]string{"GM2=1", "GM2X=1", "GM2KILL_TIMEOUT=1"}, nil},
		{[]string{"GM2_KILL_TIMEOUTXY=1"}, []string{"unknown variable GM2_KILL_TIMEOUTXY ignored; did you mean GM2_KILL_TIMEOUT?"}},
		{[]string{"GM2_KILL_TIMEOUTXYZ=1"}, []string{"unknown variable GM2_KILL_TIMEOUTXYZ ignored (gm2-init -h lists the GM2_* variables)"}},
	} {
		if w := unknownVars(c.environ); !slices.Equal(w, c.want) {
			t.Errorf("unknownVars(%q) = %q, want %q", c.environ, w, c.want)
		}
	}
	w := unknownVars([]string{"GM2_X\n=1", "GM2_" + strings.Repeat("Y", 1000) + "=1", "GM2_INSTANCE=" + strings.Repeat("z", 1000)})
	if len(w) != 3 {
		t.Fatalf("warnings %q", w)
	}
	for _, l := range w {
		if strings.ContainsAny(l, "\n\r") || len(l) > 200 {
			t.Errorf("warning not one short line: %q", l)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		args  []string
		check func(*Config) bool
	}{
		{[]string{"--cpus", "0"}, func(c *Config) bool { return c.CPUs == 0 }},
		{[]string{"--cpus", "1024"}, func(c *Config) bool { return c.CPUs == 1024 }},
		{[]string{"--cpu-rounding", " FLOOR "}, func(c *Config) bool { return c.CPURounding == cpus.Floor }},
		{[]string{"--health-addr", "OFF"}, func(c *Config) bool { return c.HealthAddr == "" }},
		{[]string{"--health-addr", "9000"}, func(c *Config) bool { return c.HealthAddr == ":9000" }}, // a bare port, as --listen 9000
		{[]string{"--health-addr", "[::1]:0"}, func(c *Config) bool { return c.HealthAddr == "[::1]:0" }},
		{[]string{"--health-addr", "localhost:9000"}, func(c *Config) bool { return c.HealthAddr == "localhost:9000" }},
		{[]string{"--min-ready", "ALL"}, func(c *Config) bool { return c.App.MinReady == 0 }},
		{[]string{"--min-ready", "3"}, func(c *Config) bool { return c.App.MinReady == 3 }},
		{[]string{"--min-uptime", "0"}, func(c *Config) bool { return c.App.MinUptime == 0 }},
		{[]string{"--shutdown-delay", "0"}, func(c *Config) bool { return c.ShutdownDelay == 0 }},
		{[]string{"--shutdown-delay", "24h"}, func(c *Config) bool { return c.ShutdownDelay == 24*time.Hour }},
		{[]string{"--log-level", "WARN"}, func(c *Config) bool { return c.LogLevel == zerolog.WarnLevel }},
		{[]string{"--node-preload", "On"}, func(c *Config) bool { return c.App.NodePreload == "on" }},
		{[]string{"--max-restarts", "0"}, func(c *Config) bool { return c.App.MaxRestarts == 0 }},
		{[]string{"--stop-signal", "term"}, func(c *Config) bool { return c.App.StopSignal == syscall.SIGTERM }},
		{[]string{"--stop-signal", "28"}, func(c *Config) bool { return c.App.StopSignal == syscall.SIGWINCH }},
		{[]string{"--max-memory-restart", "1g"}, func(c *Config) bool { return c.App.MaxMemory == 1<<30 }},
		{[]string{"--max-memory-restart", "OFF"}, func(c *Config) bool { return c.App.MaxMemory == 0 }},
		{[]string{"--max-memory-restart", "1048576"}, func(c *Config) bool { return c.App.MaxMemory == 1<<20 }},
		{[]string{"--queue-timeout", "100ms"}, func(c *Config) bool { return c.QueueTimeout == 100*time.Millisecond }},
		{[]string{"--max-shared-ports", "1024"}, func(c *Config) bool { return c.MaxSharedPorts == 1024 }},
		{[]string{"-i", "max"}, func(c *Config) bool { return c.App.Instances.Relative && c.App.Name == "app" }},
	}
	for _, tt := range tests {
		env(t)
		if c := mustParse(t, append(tt.args, "app")...); !tt.check(c) {
			t.Errorf("Parse(%q): %+v", tt.args, c)
		}
	}
	env(t)
	for _, args := range [][]string{
		{"--health-addr", ""},
		{"--health-addr", "65536"},
		{"--health-addr", ":65536"},
		{"--health-addr", "host:9000"},
		{"--log-level", ""},
		{"--log-level", "trace-ish"},
		{"--cpus", "1.5"},
		{"--cpus", "1025"},
		{"--min-ready", "-1"},
		{"--min-ready", "1025"},
		{"--reload-batch", "x"},
		{"--stop-signal", "TSTP"},
		{"--stop-signal", "CHLD"},
		{"--stop-signal", "32"},
		{"--stop-signal", "34"},
		{"--max-memory-restart", "10X"},
		{"--max-memory-restart", "8589934592G"},
		{"--max-memory-restart", ""},
		{"--kill-timeout", "25h"},
		{"--listen-timeout", "9223372036854775807ns"},
		{"--only", ","},
		{"--env", ""},
	} {
		parseErr(t, append(args, "app"), args[0], "invalid value")
	}
}

// --config makes the command optional; --only and --env come with it.
func TestParseConfigFile(t *testing.T) {
	env(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "ecosystem.config.js")
	os.WriteFile(file, []byte("module.exports = {apps: []}\n"), 0o644)
	c := mustParse(t, "--config", file, "--only", "web, api", "--env", "production", "-i", "2")
	if c.ConfigFile != file || !slices.Equal(c.Only, []string{"web", "api"}) || c.Env != "production" {
		t.Errorf("globals: %+v", c.Global)
	}
	if c.App.Command != nil || c.App.Path != "" || c.App.Name != "" || c.App.Instances.N != 2 {
		t.Errorf("the template app: %+v", c.App)
	}
	// With a command too, the command is the app's.
	c = mustParse(t, "--config", file, "--", "app", "x")
	if !slices.Equal(c.App.Command, []string{"app", "x"}) || c.App.Name != "app" {
		t.Errorf("command with --config: %+v", c.App)
	}
	t.Setenv("GM2_CONFIG", file)
	t.Setenv("GM2_ONLY", "web")
	c = mustParse(t)
	if c.ConfigFile != file || !slices.Equal(c.Only, []string{"web"}) {
		t.Errorf("from the variables: %+v", c.Global)
	}
	// Empty variables of options without a default are unset.
	t.Setenv("GM2_CONFIG", "")
	t.Setenv("GM2_ONLY", "")
	t.Setenv("GM2_ENV", "")
	if c := mustParse(t, "app"); c.ConfigFile != "" || c.Only != nil || c.Env != "" {
		t.Errorf("empty variables: %+v", c.Global)
	}
	parseErr(t, nil, "missing command")
	unreadable := filepath.Join(dir, "secret.json")
	os.WriteFile(unreadable, []byte("{}"), 0o000)
	if f, err := os.Open(unreadable); err == nil {
		f.Close() // root reads anything
	} else {
		parseErr(t, []string{"--config", unreadable}, "--config", "not readable")
	}
}

// Checks that need the worker count are made once the CPUs are known.
func TestResolve(t *testing.T) {
	tests := []struct {
		args []string
		cpus int
		want appspec.Count
		err  string
	}{
		{[]string{"-i", "2"}, 8, appspec.Count{N: 2}, ""},
		{[]string{"-i", "2", "--min-ready", "2"}, 8, appspec.Count{N: 2}, ""},
		{[]string{"-i", "2", "--min-ready", "all"}, 8, appspec.Count{N: 2}, ""},
		{[]string{"-i", "2", "--min-ready", "5"}, 8, appspec.Count{N: 2},
			"--min-ready: 5 is more than the 2 workers of -i/--instances 2; accepted: a whole number from 1 to the worker count, or all"},
		{[]string{"-i", "max", "--min-ready", "5"}, 2, appspec.Count{N: 2},
			"--min-ready: 5 is more than the 2 workers of -i/--instances max on 2 usable CPUs"},
		{[]string{"-i", "max", "--min-ready", "5"}, 8, appspec.Count{N: 8}, ""},
		{[]string{"-i", "max"}, 5000, appspec.Count{N: 1024, Capped: true}, ""},
		{[]string{"-i", "4"}, 2, appspec.Count{N: 4, Oversubscribed: true}, ""},
	}
	for _, tt := range tests {
		env(t)
		c := mustParse(t, append(tt.args, "app")...)
		got, err := c.Resolve(tt.cpus)
		if got != tt.want {
			t.Errorf("%q on %d CPUs: %+v, want %+v", tt.args, tt.cpus, got, tt.want)
		}
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q on %d CPUs: %v", tt.args, tt.cpus, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q on %d CPUs: error %v, want %q", tt.args, tt.cpus, err, tt.err)
		case err != nil:
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Errorf("%T, want a *UsageError", err)
			}
		}
	}
	// From the variable, the message names the variable.
	env(t)
	t.Setenv("GM2_MIN_READY", "3")
	c := mustParse(t, "app")
	if _, err := c.Resolve(4); err == nil || !strings.HasPrefix(err.Error(), "GM2_MIN_READY: 3 is more than the 1 workers of --instances default 1") {
		t.Errorf("error %v", err)
	}
	// Without a command the app is a template for a process file's apps.
	os.Unsetenv("GM2_MIN_READY")
	file := filepath.Join(t.TempDir(), "apps.json")
	os.WriteFile(file, []byte("{}"), 0o644)
	c = mustParse(t, "--config", file, "--min-ready", "3")
	if _, err := c.Resolve(1); err != nil {
		t.Errorf("template checked: %v", err)
	}
	if w := ResolveWarnings(appspec.Count{N: 1024, Capped: true}, 5000); len(w) != 1 || !strings.Contains(w[0], "at most 1024 workers") {
		t.Errorf("capped: %q", w)
	}
	if w := ResolveWarnings(appspec.Count{N: 4, Oversubscribed: true}, 2); len(w) != 1 || !strings.Contains(w[0], "4 workers on 2 usable CPUs") {
		t.Errorf("oversubscribed: %q", w)
	}
}

func TestDryRun(t *testing.T) {
	env(t)
	c := mustParse(t, "-i", "3", "--listen", "web=:8080", "--stop-signal", "INT", "--max-memory-restart", "300M", "--", "app", "x")
	n, err := c.Resolve(2)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	cpu := cpus.Result{Max: 2, Affinity: 4, Source: "test"}
	if err := c.WriteDryRun(&b, "v9", cpu, Plan{Apps: []RunApp{{App: c.App, Workers: n}}}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(b.String(), "\n") != 1 {
		t.Errorf("not one line: %s", b.String())
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	// Every option has its field.
	for _, o := range options {
		if o.scope == actionScope {
			continue
		}
		if _, ok := m[o.jsonField()]; !ok {
			t.Errorf("no field %q for --%s", o.jsonField(), o.long)
		}
	}
	for field, want := range map[string]any{
		"version": "v9", "instances": float64(3), "instances_spec": "3", "instances_source": "-i/--instances 3",
		"stop_signal": "SIGINT", "kill_timeout": "8s", "max_memory_restart": float64(300 << 20),
		"memory_check_interval": "30s", "queue_timeout": "5s", "max_shared_ports": float64(64),
		"config": "", "env": "", "name": "app", "min_ready": "1", "health_addr": ":9000",
		"cpu_rounding": "floor", "cpus_override": float64(0), "log_level": "info", "wait_ready": false,
		"worst_case_stop": "9s",
	} {
		if !reflect.DeepEqual(m[field], want) {
			t.Errorf("%s = %#v, want %#v", field, m[field], want)
		}
	}
	if cpus := m["cpus"].(map[string]any); cpus["max"] != float64(2) || cpus["affinity"] != float64(4) {
		t.Errorf("cpus = %v", m["cpus"])
	}
	if l := m["listen"].([]any); len(l) != 1 || l[0].(map[string]any)["name"] != "web" {
		t.Errorf("listen = %v", m["listen"])
	}
	apps := m["apps"].([]any)
	if len(apps) != 1 {
		t.Fatalf("apps = %v", apps)
	}
	app := apps[0].(map[string]any)
	if app["instances"] != float64(3) || app["name"] != "app" || app["stop_signal"] != "SIGINT" || app["instances_spec"] != "3" {
		t.Errorf("apps[0] = %v", app)
	}
	for _, o := range options {
		if _, ok := app[o.jsonField()]; ok != (o.scope == appScope) {
			t.Errorf("apps[0] has field %q: %v", o.jsonField(), ok)
		}
	}
}

// TestDryRunWorstCaseAndInherited: worst_case_stop adds --shutdown-delay
// to the kill timeout, and an inherited socket is named by its own fd, not
// by the position of the --listen entry it serves.
func TestDryRunWorstCaseAndInherited(t *testing.T) {
	env(t)
	c := mustParse(t, "--shutdown-delay", "5s", "--listen", ":8080", "app")
	n, err := c.Resolve(2)
	if err != nil {
		t.Fatal(err)
	}
	inherited := []*sockets.Listener{
		{Spec: sockets.Spec{Name: "other", Network: sockets.TCP, Addr: "0.0.0.0:8081"}, Bound: "0.0.0.0:8081"},
		{Spec: sockets.Spec{Name: "web", Network: sockets.TCP, Addr: "0.0.0.0:8080"}, Bound: "0.0.0.0:8080"},
	}
	var b bytes.Buffer
	plan := Plan{Apps: []RunApp{{App: c.App, Workers: n}}, Inherited: inherited}
	if err := c.WriteDryRun(&b, "v9", cpus.Result{Max: 2, Affinity: 2}, plan); err != nil {
		t.Fatal(err)
	}
	var m struct {
		WorstCaseStop string              `json:"worst_case_stop"`
		Listen        []map[string]string `json:"listen"`
		Inherited     []map[string]any    `json:"inherited"`
	}
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if want := (5*time.Second + 8*time.Second + appspec.StopSweep).String(); m.WorstCaseStop != want {
		t.Errorf("worst_case_stop = %q, want %q", m.WorstCaseStop, want)
	}
	if len(m.Listen) != 1 || m.Listen[0]["inherited_fd"] != "4" {
		t.Errorf("listen = %v, want :8080 served by fd 4", m.Listen)
	}
	if len(m.Inherited) != 2 || m.Inherited[0]["listen"] != "" || m.Inherited[1]["listen"] != ":8080" || m.Inherited[1]["fd"] != float64(4) {
		t.Errorf("inherited = %v", m.Inherited)
	}
}

// instances_source says where the count came from: the flag or variable
// of a fixed count (it named the CPU detection for -i 3), the CPU
// detection for max and -N, the split with a process file.
func TestInstancesSource(t *testing.T) {
	cpu := cpus.Result{Max: 2, Source: "affinity mask (2 CPUs), no cgroup CPU limit"}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		split string
		want  string
	}{
		{"fixed by the flag", nil, []string{"-i", "3", "app"}, "", "-i/--instances 3"},
		{"fixed by the long flag", nil, []string{"--instances=3", "app"}, "", "-i/--instances 3"},
		{"fixed by the variable", map[string]string{"GM2_INSTANCES": "4"}, []string{"app"}, "", "GM2_INSTANCES 4"},
		{"the default", nil, []string{"app"}, "", "--instances default 1"},
		{"max", nil, []string{"-i", "max", "app"}, "", cpu.Source},
		{"-N", map[string]string{"GM2_INSTANCES": "-1"}, []string{"app"}, "", cpu.Source},
		{"process file", nil, []string{"--config", "FILE", "-i", "3"}, "2 usable CPUs: api 1 (max: the 1 CPU left), worker 1 (fork)",
			cpu.Source + "; 2 usable CPUs: api 1 (max: the 1 CPU left), worker 1 (fork)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			file := filepath.Join(t.TempDir(), "eco.json")
			if err := os.WriteFile(file, []byte(`{"apps": []}`), 0o644); err != nil {
				t.Fatal(err)
			}
			args := slices.Clone(tc.args)
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "FILE", file)
			}
			c := mustParse(t, args...)
			n, err := c.Resolve(cpu.Max)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.InstancesSource(cpu, []RunApp{{App: c.App, Workers: n}}, tc.split); got != tc.want {
				t.Errorf("InstancesSource = %q, want %q", got, tc.want)
			}
		})
	}
}

// --dry-run's warnings are the configuration's and the plan's, in the
// order a start logs them (the plan's were missing: only GM2_* variable
// warnings showed).
func TestDryRunWarnings(t *testing.T) {
	env(t)
	t.Setenv("GM2_KILLTIMEOUT", "3s")
	c := mustParse(t, "-i", "4", "app")
	n, err := c.Resolve(2)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	plan := Plan{Apps: []RunApp{{App: c.App, Workers: n}}, Warnings: ResolveWarnings(n, 2)}
	if err := c.WriteDryRun(&b, "v9", cpus.Result{Max: 2}, plan); err != nil {
		t.Fatal(err)
	}
	var m struct{ Warnings []string }
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"unknown variable GM2_KILLTIMEOUT ignored; did you mean GM2_KILL_TIMEOUT?",
		"4 workers on 2 usable CPUs: they share the same CPU quota and add latency and memory",
	}
	if !slices.Equal(m.Warnings, want) {
		t.Errorf("warnings %q, want %q", m.Warnings, want)
	}
	if len(c.Warnings) != 1 {
		t.Errorf("WriteDryRun changed c.Warnings: %q", c.Warnings)
	}
}

func TestUsage(t *testing.T) {
	var b bytes.Buffer
	Usage(&b, "v1.2.3")
	out := b.String()
	if !strings.Contains(out, "gm2-init v1.2.3") {
		t.Errorf("no version in the help")
	}
	for _, o := range options {
		for _, want := range []string{"--" + o.long, o.help} {
			if !strings.Contains(out, want) {
				t.Errorf("help lacks %q", want)
			}
		}
		if e := o.env(); e != "" && !strings.Contains(out, "["+e+"]") {
			t.Errorf("help lacks %s", e)
		}
		if o.short != "" && !strings.Contains(out, "-"+o.short+", --"+o.long) {
			t.Errorf("help lacks -%s", o.short)
		}
		if o.def != "" && o.kind != switchKind && !strings.Contains(out, "(default "+o.def+")") {
			t.Errorf("help lacks the default of --%s", o.long)
		}
	}
	for _, want := range []string{"--dry-run", "--help", "--version", "-- COMMAND", "--config FILE", "--wait-ready=false (never --wait-ready false)"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// Every default is itself a valid value (a typo there would make gm2-init
// fail to start with no flag given).
func TestDefaultsAreValid(t *testing.T) {
	env(t)
	for _, o := range options {
		if o.def == "" {
			continue
		}
		if _, err := Parse([]string{"--" + o.long + "=" + o.def, "app"}); err != nil {
			t.Errorf("default of --%s: %v", o.long, err)
		}
	}
}

func TestHealthCheckAddr(t *testing.T) {
	clearEnv(t)
	if got := HealthCheckAddr(); got != ":9000" {
		t.Errorf("default: %q", got)
	}
	t.Setenv("GM2_HEALTH_ADDR", "127.0.0.1:9100")
	if got := HealthCheckAddr(); got != "127.0.0.1:9100" {
		t.Errorf("variable: %q", got)
	}
}

func TestFieldName(t *testing.T) {
	for long, want := range map[string]string{"cpus": "CPUS", "kill-timeout": "KILL_TIMEOUT", "max-memory-restart": "MAX_MEMORY_RESTART"} {
		if got := fieldName(long); got != want {
			t.Errorf("fieldName(%q) = %q", long, got)
		}
	}
}

// checkConfig holds what a Config accepted by Parse promises.
func checkConfig(t *testing.T, what string, cfg *Config) {
	t.Helper()
	if cfg.ShowHelp || cfg.ShowVersion {
		return
	}
	a := cfg.App
	if len(a.Command) == 0 || a.Path == "" || a.Name == "" {
		t.Fatalf("%s: no command: %+v", what, cfg)
	}
	if n, _ := a.Instances.Resolve(1 << 20); n < 1 || n > appspec.MaxWorkers {
		t.Fatalf("%s: %d instances", what, n)
	}
	if cfg.CPUs < 0 || cfg.CPUs > appspec.MaxWorkers {
		t.Fatalf("%s: --cpus %d", what, cfg.CPUs)
	}
	for _, d := range []time.Duration{a.KillTimeout, a.ListenTimeout, a.MinUptime, cfg.ShutdownDelay, cfg.QueueTimeout, cfg.MemoryCheckInterval} {
		if d < 0 || d > appspec.MaxDuration {
			t.Fatalf("%s: duration %v out of range in %+v", what, d, cfg)
		}
	}
	if a.KillTimeout < time.Millisecond || a.ListenTimeout < time.Millisecond || a.ReloadBatch < 1 || a.MinReady < 0 || cfg.MemoryCheckInterval < time.Second {
		t.Fatalf("%s: out-of-range value in %+v", what, cfg)
	}
	if cfg.MaxSharedPorts < 1 || cfg.MaxSharedPorts > 1024 || a.MaxMemory < 0 {
		t.Fatalf("%s: out-of-range value in %+v", what, cfg)
	}
	if err := sockets.CheckDistinct(a.Listen); err != nil {
		t.Fatalf("%s: accepted overlapping listeners: %v", what, err)
	}
	if _, clash := cfg.HealthClash(a.Listen); clash {
		t.Fatalf("%s: accepted health on a listener", what)
	}
	if !slices.Contains(appspec.StopSignals, a.StopSignal) {
		t.Fatalf("%s: stop signal %v", what, a.StopSignal)
	}
}

func checkParseResult(t *testing.T, what string, cfg *Config, err error) {
	t.Helper()
	if err != nil {
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Fatalf("%s: %T %v, want a *UsageError", what, err, err)
		}
		checkOneLine(t, err)
		if len(err.Error()) > 1000 {
			t.Fatalf("%s: message of %d bytes", what, len(err.Error()))
		}
		return
	}
	checkConfig(t, what, cfg)
}

// FuzzParseArgs feeds arbitrary flags to Parse: never a panic, always a
// one-line *UsageError or a Config that keeps its promises.
func FuzzParseArgs(f *testing.F) {
	clearEnv(f)
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	for _, a := range [][2]string{
		{"-i", "max"}, {"--listen", ":8080"}, {"--listen=:1", "--listen=:1"}, {"--kill-timeout", "8"},
		{"--wait-ready", "--dry-run"}, {"---", "x"}, {"-\n", ""}, {"--stop-signal=KILL", "-h"},
		{"--health-addr", "[::1]:9000"}, {"--listen", "unix:///tmp/\x00"}, {"--", "--"},
		{"--wait-ready", "false"}, {"-i", "2"}, {"--cpus", "100000"}, {"--listen", ""},
		{"--stop-signal", "TSTP"}, {"--max-memory-restart", "300M"}, {"--shutdown-delay", "2562047h"},
		{"--health-addr", "[::]:9000"}, {"--only", "a,b"}, {"--config", "/"},
	} {
		f.Add(a[0], a[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		cfg, err := Parse([]string{a, b, "--", self})
		checkParseResult(t, "Parse("+strings.Join([]string{a, b}, " ")+")", cfg, err)
	})
}

// FuzzParseEnv sets one GM2_* variable (and a flag) to arbitrary values.
func FuzzParseEnv(f *testing.F) {
	clearEnv(f)
	self, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	var names []string
	for _, o := range options {
		if e := o.env(); e != "" {
			names = append(names, e)
		}
	}
	for i, v := range []string{"max", ",", "", "2562047h", "TSTP", "[::]:9000", "300M", "-1", "true", " , \n"} {
		f.Add(uint8(i), v, "-i")
	}
	f.Add(uint8(3), ":9000", "--listen")
	f.Fuzz(func(t *testing.T, which uint8, value, flag string) {
		name := names[int(which)%len(names)]
		if strings.ContainsRune(value, 0) {
			return // no environment variable can hold a NUL
		}
		t.Setenv(name, value)
		cfg, err := Parse([]string{flag, "2", self})
		checkParseResult(t, name+"="+value+" "+flag+" 2", cfg, err)
	})
}

// A gm2-init started inside a worker of another gm2-init inherits what the
// outer one set for that worker: those variables are no typos, and the
// outer one's worker count (GM2_INSTANCES) is not this one's -i.
func TestInheritedFromOuterInit(t *testing.T) {
	// What an outer gm2-init gives a cluster worker of a Node-enabled app.
	outer := []string{
		"GM2_INSTANCE=1", "NODE_APP_INSTANCE=1", "GM2_INSTANCES=4",
		"GM2_LISTENERS=x", "GM2_PRELOAD_FD=4", "GM2_PRELOAD_IMPORT=1",
		"GM2_NODE_CLUSTER=3", "GM2_NODE_RELAYED=1",
	}
	ignored := `GM2_INSTANCES="4" ignored: an outer gm2-init set it for its workers (its worker count), it is not this gm2-init's -i; give -i/--instances`
	tests := []struct {
		name      string
		env       []string
		args      []string
		instances string
		warnings  []string
	}{
		{"worker of an outer gm2-init", outer, []string{"app"}, "1", []string{ignored}},
		{"worker of an outer gm2-init, -i given", outer, []string{"-i", "2", "app"}, "2", nil},
		{"GM2_INSTANCES of the user", []string{"GM2_INSTANCES=4"}, []string{"app"}, "4", nil},
		{"GM2_INSTANCES of the user, slot variables emptied", []string{"GM2_INSTANCE=", "NODE_APP_INSTANCE=", "GM2_INSTANCES=4"}, []string{"app"}, "4", nil},
		{"GM2_INSTANCE typo next to GM2_INSTANCES", []string{"GM2_INSTANCE=1", "NODE_APP_INSTANCE=2", "GM2_INSTANCES=4"}, []string{"app"}, "4",
			[]string{`GM2_INSTANCE="1" ignored: gm2-init sets it for its workers (their slot number), it is no option; did you mean GM2_INSTANCES?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env(t)
			for _, kv := range tt.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			cfg := mustParse(t, tt.args...)
			if got := cfg.App.Instances.String(); got != tt.instances {
				t.Errorf("instances %s, want %s", got, tt.instances)
			}
			if !slices.Equal(cfg.Warnings, tt.warnings) {
				t.Errorf("warnings\n%q\nwant\n%q", cfg.Warnings, tt.warnings)
			}
		})
	}
}

// The rules a file and the command line share are one validator each
// (appspec): app names for --only, the cap on --max-restarts, listen lists.
func TestSharedRules(t *testing.T) {
	env(t)
	file := filepath.Join(t.TempDir(), "eco.json")
	os.WriteFile(file, []byte(`{"apps": []}`), 0o644)
	// A name a process file may give (api:v2, worker@eu) can be named in
	// --only; it was refused.
	c := mustParse(t, "--config", file, "--only", "api:v2, worker@eu,web.1")
	if !slices.Equal(c.Only, []string{"api:v2", "worker@eu", "web.1"}) {
		t.Errorf("--only: %q", c.Only)
	}
	for _, bad := range []string{"a b", `a"b`, "a\\b", strings.Repeat("x", 101)} {
		parseErr(t, []string{"--config", file, "--only", bad}, "--only: invalid value", "accepted: app names separated by commas (1 to 100 characters without blanks, commas, quotes, backslashes or control characters)")
	}
	parseErr(t, []string{"--max-restarts", "1000001", "app"}, `--max-restarts: invalid value "1000001": accepted: a whole number from 0 to 1000000`)
	parseErr(t, []string{"--kill-timeout", "0", "app"}, `--kill-timeout: invalid value "0": accepted: a duration from 1ms to 24h`)
}
