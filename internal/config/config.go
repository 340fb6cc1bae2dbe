// Package config turns the command line and the GM2_* environment into a
// validated Config: gm2-init's own settings (Global) and one app (App), the
// command after --, whose settings are also the defaults of every app of a
// process file (--config).
//
// Every option is declared once, in the options table (options.go); the
// flag, the variable, the help line, the --dry-run field and the parsing
// and validation of its value all come from that one entry. The variables
// are read by envconfig (prefix GM2, split words) into a struct built from
// the table, then only the flags actually given override them: flag >
// variable > default, the precedence users know from the docker CLI.
//
// Bad input is one line that names the flag or the variable it came from,
// the value (quoted, cut at 64 bytes) and the accepted forms, as a
// *UsageError: exit status 2, nothing started. Some checks need the usable
// CPU count (--min-ready against -i max): Resolve makes them once it is
// known, still before anything starts.
//
// config depends on nothing of the supervisor's: it produces values
// (appspec.App, Global) that main hands on.
package config

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/echo"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Prefix is the prefix of every environment variable gm2-init reads.
const Prefix = "GM2"

// UsageError is bad input: the process exits with status 2 before binding
// or starting anything. Msg is one line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Config is the validated configuration.
type Config struct {
	// App is the app of the command after --: its Command, Path and Name
	// are empty when --config is given without a command. Its settings
	// (instances, listen, timeouts, restart policy …) are the defaults of
	// every app of the process file too.
	App appspec.App
	Global

	DryRun      bool
	ShowVersion bool
	ShowHelp    bool
	Warnings    []string // one line each, to log once the logger exists

	// sources says where each option's value came from, by long name:
	// "-i/--instances", "GM2_INSTANCES" or "--instances default".
	sources map[string]string
}

// Global holds gm2-init's own settings, which no app overrides.
type Global struct {
	CPUs                int // --cpus override, 0 = detect
	CPURounding         cpus.Rounding
	HealthAddr          string // "" = off
	QueueTimeout        time.Duration
	ShutdownDelay       time.Duration
	MemoryCheckInterval time.Duration
	MaxSharedPorts      int
	ConfigFile          string   // --config; "" = none
	Only                []string // --only; nil = every app
	Env                 string   // --env; "" = none
	LogLevel            zerolog.Level
	LogFormat           string // json or console
}

// Source names where the option with this long name got its value, for
// messages about it: "-i/--instances", "GM2_INSTANCES" or "--instances
// default". main uses it for errors found later (a bind error).
func (c *Config) Source(long string) string {
	if s, ok := c.sources[long]; ok {
		return s
	}
	return byLong(long).spelling()
}

// Parse reads the environment and then args (without the program name).
// Every error is a *UsageError. With --help or --version nothing else is
// validated.
func Parse(args []string) (*Config, error) {
	cfg, err := parse(args)
	if err != nil {
		var ue *UsageError
		if !errors.As(err, &ue) {
			ue = &UsageError{Msg: err.Error()}
		}
		// The parts of a message quote what the user typed, but some come
		// from other packages (os/exec, sockets): the whole stays one line.
		return nil, &UsageError{Msg: echo.Line(ue.Msg)}
	}
	return cfg, nil
}

func parse(args []string) (*Config, error) {
	given, command, err := scan(args)
	if err != nil {
		return nil, err
	}
	cfg := &Config{sources: map[string]string{}}
	// Actions first: -h with a broken variable still prints the help.
	for _, o := range options {
		if o.scope != actionScope {
			continue
		}
		for _, v := range given[o] {
			if err := o.set(cfg, v); err != nil {
				return nil, invalid(o.spelling(), v, err)
			}
		}
	}
	if cfg.ShowHelp || cfg.ShowVersion {
		return cfg, nil
	}

	env, err := readEnv()
	if err != nil {
		return nil, err
	}
	environ := os.Environ()
	if w := outerInstances(env, environ, given); w != "" {
		cfg.Warnings = append(cfg.Warnings, w)
	}
	for _, o := range options {
		if o.scope == actionScope {
			continue
		}
		values, source := given[o], o.spelling()
		if len(values) == 0 {
			v, set := env[o]
			switch {
			case set && (v != "" || o.def != ""):
				values, source = []string{v}, o.env()
			case o.def != "":
				values, source = []string{o.def}, "--"+o.long+" default"
			default:
				// No value, or an empty variable of an option that
				// has no default: not set (an empty GM2_LISTEN is no
				// listener, as an unset one).
			}
		}
		cfg.sources[o.long] = source
		for _, v := range values {
			if err := o.set(cfg, v); err != nil {
				return nil, invalid(source, v, err)
			}
		}
	}
	if err := cfg.crossCheck(); err != nil {
		return nil, err
	}
	if err := cfg.setCommand(command); err != nil {
		return nil, err
	}
	cfg.Warnings = append(cfg.Warnings, unknownVars(environ)...)
	return cfg, nil
}

// invalid is the message for a value that set refused.
func invalid(source, v string, err error) error {
	var d *detailed
	if errors.As(err, &d) {
		// The error names the value itself (a --listen address).
		return &UsageError{Msg: source + ": " + err.Error()}
	}
	return &UsageError{Msg: fmt.Sprintf("%s: invalid value %s: %v", source, echo.Quote(v), err)}
}

// detailed marks an error of set that already shows the value.
type detailed struct{ error }

func (d *detailed) Unwrap() error { return d.error }

// crossCheck validates what one option alone cannot.
func (c *Config) crossCheck() error {
	if err := sockets.CheckDistinct(c.App.Listen); err != nil {
		return &UsageError{Msg: c.Source("listen") + ": " + err.Error()}
	}
	if err := sockets.UniqueNames(c.App.Listen); err != nil {
		return &UsageError{Msg: c.Source("listen") + ": " + err.Error()}
	}
	if l, clash := c.HealthClash(c.App.Listen); clash {
		return &UsageError{Msg: fmt.Sprintf("%s %s and %s %s bind the same address; give one of them another port (or --health-addr off)",
			c.Source("health-addr"), echo.Quote(c.HealthAddr), c.Source("listen"), echo.Quote(l.Raw))}
	}
	if c.ConfigFile == "" {
		for _, name := range []string{"only", "env"} {
			if src := c.sources[name]; src != "" && (name == "only" && c.Only != nil || name == "env" && c.Env != "") {
				return &UsageError{Msg: fmt.Sprintf("%s selects from a process file: give --config FILE (or GM2_CONFIG) too", src)}
			}
		}
	}
	return nil
}

// HealthClash reports a listener that the health endpoint's address would
// collide with (--listen :9000 with the default --health-addr :9000), which
// would otherwise fail only after the workers started. It is the one rule
// for it: Parse applies it to --listen, and main (planApps) to the listen
// key of every app of a process file.
func (c *Config) HealthClash(listen []sockets.Spec) (sockets.Spec, bool) {
	if c.HealthAddr == "" {
		return sockets.Spec{}, false
	}
	// The health endpoints are bound with net.Listen("tcp", addr), whose
	// wildcards are all dual-stack: "[::]:P" also takes 0.0.0.0:P.
	h, err := sockets.StdlibTCP(c.HealthAddr)
	if err != nil {
		return sockets.Spec{}, false
	}
	for _, l := range listen {
		if sockets.Overlap(h, l) {
			return l, true
		}
	}
	return sockets.Spec{}, false
}

// Resolve computes the command's app worker count once the usable CPUs
// are known (cpus.Detect's Max), and checks what depends on it: --min-ready
// may not exceed the count. It runs before anything is bound or started; an
// error is a *UsageError. Without a command (--config alone) the app is
// only a template and nothing is checked.
func (c *Config) Resolve(maxCPUs int) (appspec.Count, error) {
	n, err := c.App.Workers(maxCPUs)
	var mr *appspec.MinReadyError
	if errors.As(err, &mr) && len(c.App.Command) > 0 {
		what := fmt.Sprintf("the %d workers of %s %s", mr.Workers, c.Source("instances"), c.App.Instances)
		if c.App.Instances.Relative {
			what += fmt.Sprintf(" on %d usable CPUs", maxCPUs)
		}
		return n, &UsageError{Msg: fmt.Sprintf("%s: %d is more than %s; accepted: a whole number from 1 to the worker count, or all",
			c.Source("min-ready"), mr.MinReady, what)}
	}
	return n, nil
}

// ResolveWarnings are the lines to log about a resolved count.
func ResolveWarnings(n appspec.Count, maxCPUs int) []string {
	var out []string
	if n.Capped {
		out = append(out, fmt.Sprintf("%d usable CPUs, but gm2-init runs at most %d workers: %d workers", maxCPUs, appspec.MaxWorkers, n.N))
	}
	if n.Oversubscribed {
		out = append(out, fmt.Sprintf("%d workers on %d usable CPUs: they share the same CPU quota and add latency and memory", n.N, maxCPUs))
	}
	return out
}
