package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/bytesize"
	"github.com/gm2-init/gm2-init/internal/cpus"
)

// options declares every option of gm2-init, once. From each entry come:
//
//   - the flag: --long (and -short), parsed by scan;
//   - the variable GM2_LONG_NAME, read by envconfig (see readEnv);
//   - the help line (Usage) and the README's table (TestReadmeTable);
//   - the field of --dry-run's JSON: long_name, the value shown by show;
//   - the validated value: set parses and checks the text and writes the
//     typed value into Config (the app's settings into Config.App).
//
// Adding an option is adding an entry here (and a row in the README).
var options = []*option{
	{
		long: "instances", short: "i", arg: "N", def: "1", scope: appScope,
		help: "workers: max or 0 (every usable CPU), -N (that minus N, at least 1) or N (at most 1024)",
		set: func(c *Config, v string) (err error) {
			c.App.Instances, err = appspec.ParseInstances(v)
			return err
		},
		// "instances" itself is the resolved count (see WriteDryRun).
		field: "instances_spec",
		show:  func(_ *Config, a *appspec.App) any { return a.Instances.String() },
	},
	{
		long: "cpus", arg: "N", def: "0", scope: globalScope,
		help: "override the usable CPU count that max is computed from (0 = detect)",
		set: func(c *Config, v string) (err error) {
			c.CPUs, err = parseInt(v, 0, appspec.MaxWorkers,
				fmt.Sprintf("accepted: 0 (detect) or a whole number of CPUs from 1 to %d (gm2-init's cap on workers)", appspec.MaxWorkers))
			return err
		},
		// "cpus" is the detection's result (see WriteDryRun).
		field: "cpus_override",
		show:  func(c *Config, _ *appspec.App) any { return c.CPUs },
	},
	{
		long: "cpu-rounding", arg: "floor|ceil", def: "floor", scope: globalScope,
		help: "how a fractional CPU quota is rounded",
		set: func(c *Config, v string) (err error) {
			if c.CPURounding, err = cpus.ParseRounding(v); err != nil {
				return errors.New("accepted: floor or ceil")
			}
			return nil
		},
		show: func(c *Config, _ *appspec.App) any { return c.CPURounding.String() },
	},
	{
		long: "listen", arg: "[NAME=]ADDR", kind: listKind, scope: appScope,
		help: "bind ADDR once and pass it to every worker (repeatable; the variable is comma-separated): :8080, 127.0.0.1:8080, [::1]:8080, tcp://…, udp://…, unix:///path, unixgram:///path",
		set:  setListen,
		show: func(_ *Config, a *appspec.App) any { return listenJSON(a.Listen) },
	},
	{
		long: "kill-timeout", arg: "DURATION", def: "8s", scope: appScope,
		help: "how long a worker may take to exit after the stop signal before SIGKILL",
		set:  func(c *Config, v string) error { return setDuration(&c.App.KillTimeout, v, time.Millisecond) },
		show: func(_ *Config, a *appspec.App) any { return a.KillTimeout.String() },
	},
	{
		long: "stop-signal", arg: "SIGNAL", def: "SIGTERM", scope: appScope,
		help: "signal that asks a worker to stop gracefully: TERM, INT (apps written for PM2), QUIT, HUP, USR1, USR2 or WINCH",
		set: func(c *Config, v string) (err error) {
			c.App.StopSignal, err = appspec.ParseStopSignal(v)
			return err
		},
		show: func(_ *Config, a *appspec.App) any { return unix.SignalName(a.StopSignal) },
	},
	{
		long: "restart", arg: "always|on-failure|never", def: "always", scope: appScope,
		help: "when an exited worker is started again",
		set: func(c *Config, v string) (err error) {
			if c.App.Restart, err = appspec.ParseRestartPolicy(v); err != nil {
				return errors.New("accepted: always, on-failure or never")
			}
			return nil
		},
		show: func(_ *Config, a *appspec.App) any { return string(a.Restart) },
	},
	{
		long: "min-uptime", arg: "DURATION", def: "1s", scope: appScope,
		help: "without --wait-ready, when a worker counts as ready; a worker must then stay ready for 30s (or this, if longer) for its exit not to count toward --max-restarts; 0 turns crash-loop detection off",
		set:  func(c *Config, v string) error { return setDuration(&c.App.MinUptime, v, 0) },
		show: func(_ *Config, a *appspec.App) any { return a.MinUptime.String() },
	},
	{
		long: "max-restarts", arg: "N", def: "16", scope: appScope,
		help: "failed starts in a row (an exit before ready, or before 30s of readiness) after which a slot is marked errored",
		set: func(c *Config, v string) (err error) {
			c.App.MaxRestarts, err = appspec.ParseMaxRestarts(v)
			return err
		},
		show: func(_ *Config, a *appspec.App) any { return a.MaxRestarts },
	},
	{
		long: "wait-ready", kind: switchKind, def: "false", scope: appScope,
		help: "a worker is ready only when it says so (READY=1 on NOTIFY_SOCKET, or process.send('ready') in Node)",
		set: func(c *Config, v string) (err error) {
			c.App.WaitReady, err = parseBool(v)
			return err
		},
		show: func(_ *Config, a *appspec.App) any { return a.WaitReady },
	},
	{
		long: "listen-timeout", arg: "DURATION", def: "10s", scope: appScope,
		help: "a worker alive but not ready after this is treated as ready, with a warning (not one that holds none of the passed sockets, nor a replacement that never said READY of a worker that did)",
		set:  func(c *Config, v string) error { return setDuration(&c.App.ListenTimeout, v, time.Millisecond) },
		show: func(_ *Config, a *appspec.App) any { return a.ListenTimeout.String() },
	},
	{
		long: "reload-batch", arg: "N", def: "1", scope: appScope,
		help: "slots replaced at a time during a rolling reload (SIGHUP)",
		set: func(c *Config, v string) (err error) {
			c.App.ReloadBatch, err = parseInt(v, 1, appspec.MaxWorkers, fmt.Sprintf("accepted: a whole number from 1 to %d", appspec.MaxWorkers))
			return err
		},
		show: func(_ *Config, a *appspec.App) any { return a.ReloadBatch },
	},
	{
		long: "max-memory-restart", arg: "SIZE|off", def: "off", scope: appScope,
		help: "replace a worker whose memory passes SIZE: bytes, or a number with K, M, G or T (300M, 1G; powers of 1024)",
		set: func(c *Config, v string) (err error) {
			if strings.EqualFold(strings.TrimSpace(v), "off") {
				c.App.MaxMemory = 0
				return nil
			}
			if c.App.MaxMemory, err = bytesize.Parse(v); err != nil {
				return errors.New("accepted: " + bytesize.Forms + ", or off")
			}
			return nil
		},
		// Bytes, 0 = off.
		show: func(_ *Config, a *appspec.App) any { return a.MaxMemory },
	},
	{
		long: "memory-check-interval", arg: "DURATION", def: "30s", scope: globalScope,
		help: "how often the workers' memory is read for --max-memory-restart",
		set:  func(c *Config, v string) error { return setDuration(&c.MemoryCheckInterval, v, time.Second) },
		show: func(c *Config, _ *appspec.App) any { return c.MemoryCheckInterval.String() },
	},
	{
		long: "health-addr", arg: "ADDR|off", def: ":9000", scope: globalScope,
		help: "address of the /livez, /readyz, /status and /metrics endpoints",
		set: func(c *Config, v string) (err error) {
			c.HealthAddr, err = parseHealthAddr(v)
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return c.HealthAddr },
	},
	{
		long: "min-ready", arg: "N|all", def: "1", scope: appScope,
		help: "ready workers needed for /readyz to answer 200 (at most the worker count)",
		set: func(c *Config, v string) (err error) {
			if strings.EqualFold(strings.TrimSpace(v), "all") {
				c.App.MinReady = 0
				return nil
			}
			c.App.MinReady, err = parseInt(v, 1, appspec.MaxWorkers, "accepted: a whole number from 1 to the worker count, or all")
			return err
		},
		show: func(_ *Config, a *appspec.App) any { return minReadyString(a.MinReady) },
	},
	{
		long: "queue-timeout", arg: "DURATION", def: "5s", scope: globalScope,
		help: "/readyz fails while a connection has waited longer than this in a listener's queue with no worker accepting (0 = off)",
		set: func(c *Config, v string) error {
			if err := setDuration(&c.QueueTimeout, v, 0); err != nil {
				return err
			}
			if c.QueueTimeout > 0 && c.QueueTimeout < minQueueTimeout {
				return errors.New("accepted: 0 (off) or a duration from 100ms to 24h")
			}
			return nil
		},
		show: func(c *Config, _ *appspec.App) any { return c.QueueTimeout.String() },
	},
	{
		long: "shutdown-delay", arg: "DURATION", def: "0s", scope: globalScope,
		help: "on SIGTERM, fail /readyz at once but keep serving this long before stopping workers",
		set:  func(c *Config, v string) error { return setDuration(&c.ShutdownDelay, v, 0) },
		show: func(c *Config, _ *appspec.App) any { return c.ShutdownDelay.String() },
	},
	{
		long: "node-preload", arg: "auto|on|off", def: "auto", scope: appScope,
		help: "add the Node preload to the workers' NODE_OPTIONS so that unmodified Node apps listen(PORT) on shared sockets: auto and on always (programs that are not Node ignore it), off never",
		set: func(c *Config, v string) (err error) {
			c.App.NodePreload, err = oneOf(v, "auto", "on", "off")
			return err
		},
		show: func(_ *Config, a *appspec.App) any { return a.NodePreload },
	},
	{
		long: "max-shared-ports", arg: "N", def: "64", scope: globalScope,
		help: "ports a Node app may open on demand and share between its workers, beyond --listen",
		set: func(c *Config, v string) (err error) {
			c.MaxSharedPorts, err = parseInt(v, 1, 1024, "accepted: a whole number from 1 to 1024")
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return c.MaxSharedPorts },
	},
	{
		long: "config", arg: "FILE", scope: globalScope,
		help: "run the apps of a PM2 process file (ecosystem file); the flags are every app's defaults and the command after -- is optional",
		set: func(c *Config, v string) (err error) {
			c.ConfigFile, err = checkFile(v)
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return c.ConfigFile },
	},
	{
		long: "only", arg: "NAMES", scope: globalScope,
		help: "run only these apps of --config (comma-separated names)",
		set: func(c *Config, v string) (err error) {
			c.Only, err = parseNames(v)
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return nonNil(c.Only) },
	},
	{
		long: "env", arg: "NAME", scope: globalScope,
		help: "apply the env_NAME block of each app of --config (PM2's --env)",
		set: func(c *Config, v string) (err error) {
			c.Env, err = parseEnvName(v)
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return c.Env },
	},
	{
		long: "log-level", arg: "LEVEL", def: "info", scope: globalScope,
		help: "debug, info, warn or error",
		set: func(c *Config, v string) error {
			name, err := oneOf(v, "debug", "info", "warn", "error")
			if err == nil {
				c.LogLevel, err = zerolog.ParseLevel(name)
			}
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return c.LogLevel.String() },
	},
	{
		long: "log-format", arg: "json|console", def: "json", scope: globalScope,
		help: "format of gm2-init's own log lines on stderr",
		set: func(c *Config, v string) (err error) {
			c.LogFormat, err = oneOf(v, "json", "console")
			return err
		},
		show: func(c *Config, _ *appspec.App) any { return c.LogFormat },
	},

	// Actions: command-line only.
	{
		long: "dry-run", kind: switchKind, def: "false", scope: actionScope,
		help: "print the resolved configuration as JSON and exit without starting anything",
		set: func(c *Config, v string) (err error) {
			c.DryRun, err = parseBool(v)
			return err
		},
	},
	{
		long: "help", short: "h", kind: switchKind, def: "false", scope: actionScope,
		help: "print this help and exit",
		set: func(c *Config, v string) (err error) {
			c.ShowHelp, err = parseBool(v)
			return err
		},
	},
	{
		long: "version", kind: switchKind, def: "false", scope: actionScope,
		help: "print the version and exit",
		set: func(c *Config, v string) (err error) {
			c.ShowVersion, err = parseBool(v)
			return err
		},
	},
}

// minQueueTimeout: the queue is sampled, and a connection routinely waits
// a few milliseconds for a busy worker; a shorter timeout would only make
// /readyz flap.
const minQueueTimeout = 100 * time.Millisecond

// option is one declaration of the table above.
type option struct {
	long  string // the flag: --long; the variable: GM2_LONG; the JSON field: long
	short string // one letter: -short
	arg   string // placeholder in the help; "" for a switch
	def   string // default, as a user would write it; "" = none
	help  string
	kind  kind
	scope scope
	// set parses and validates v and writes the result into c. Its error
	// says what is accepted (the caller adds where v came from and v).
	set func(c *Config, v string) error
	// show gives the value for --dry-run: from c for a global option, from
	// a (one app) for an app option.
	show  func(c *Config, a *appspec.App) any
	field string // the --dry-run field when not derived from long
}

type kind int

const (
	valueKind  kind = iota // --flag VALUE, --flag=VALUE
	switchKind             // --flag, --flag=false (never --flag false)
	listKind               // a valueKind that may repeat; the variable is comma-separated
)

type scope int

const (
	appScope    scope = iota // a setting of the app (Config.App): a default for every app of a process file
	globalScope              // a setting of gm2-init itself
	actionScope              // --dry-run, --help, --version: no variable, no JSON field
)

// env is the option's variable; "" for actions.
func (o *option) env() string {
	if o.scope == actionScope {
		return ""
	}
	return Prefix + "_" + fieldName(o.long)
}

// jsonField is the option's field in --dry-run's output.
func (o *option) jsonField() string {
	if o.field != "" {
		return o.field
	}
	return strings.ReplaceAll(o.long, "-", "_")
}

// spelling names the flag the way the help does: -i/--instances.
func (o *option) spelling() string {
	if o.short != "" {
		return "-" + o.short + "/--" + o.long
	}
	return "--" + o.long
}

func lookup(name string) *option {
	for _, o := range options {
		if name == o.long || (o.short != "" && name == o.short) {
			return o
		}
	}
	return nil
}

func byLong(long string) *option {
	for _, o := range options {
		if o.long == long {
			return o
		}
	}
	return &option{long: long} // a typo in this package: TestSourceNames catches it
}
