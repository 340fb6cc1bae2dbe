// gm2-init is an init for containers: PID 1 duties (reaping, signal
// forwarding, no orphans left behind) plus PM2's cluster mode for any
// language — N workers sharing ports that gm2-init binds once and passes with
// the systemd socket-activation protocol, rolling reloads on SIGHUP, restarts
// with backoff, and health endpoints for Kubernetes.
//
// This file only wires the packages together, in the order things happen.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/control"
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/health"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/reaper"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/spawn"
)

// gcPercent replaces Go's default GOGC of 100, and a GOGC in the
// environment too: that one is meant for the app's workers (a Go app's
// GOGC=off with GOMEMLIMIT=2GiB would let PID 1 grow toward 2 GiB).
//
// gm2-init's live heap stays well under 1 MB, but the garbage of health
// probes and scrapes accumulates until the heap reaches the collector's
// floor, 4 MB × GOGC/100, before the first collection: after a few thousand
// probes the process holds 4 MB more than it needs (RSS 10.6 MB instead of
// 7.4 MB in bench/; BENCHMARKS.md). At 25 the floor is 1 MB. The cost is
// more frequent collections of a heap this small, a few tens of
// microseconds each, a few times per thousand requests.
const gcPercent = 25

func tightenGC() { debug.SetGCPercent(gcPercent) }

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// Exit statuses of gm2-init itself (a worker's status is passed through as
// described in the README).
const (
	exitRuntime = 1 // the system refused: a port in use, a socket that cannot be created
	exitUsage   = 2 // bad flag, variable or command: nothing was started
)

// handledSignals are delivered to the supervisor. The list is explicit: a
// bare signal.Notify would also deliver SIGURG, which the Go runtime uses
// for preemption and which must never be forwarded to workers. SIGPIPE is
// taken (and dropped) so that a closed log pipe cannot kill gm2-init.
var handledSignals = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGQUIT, unix.SIGHUP,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGTTIN, unix.SIGTTOU, unix.SIGPIPE,
}

func main() { os.Exit(run()) }

func run() int {
	// 1. A worker being started: set LISTEN_PID and exec the app.
	if len(os.Args) > 1 && os.Args[1] == spawn.ExecArg {
		return spawn.ExecMain(os.Args[2:])
	}
	// 2. `gm2-init healthcheck` for Docker HEALTHCHECK in images without curl.
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		return healthcheck(os.Args[2:])
	}
	// `gm2-init status|reload|scale` (docker exec, kubectl exec): ask the
	// gm2-init of this PID namespace over its control socket.
	if len(os.Args) > 1 && control.IsCommand(os.Args[1]) {
		return control.Main(os.Args[1:], os.Stdout, os.Stderr)
	}

	// A long-lived process with a small live heap: collect sooner.
	tightenGC()

	// 3. Configuration: flags over GM2_* variables over defaults.
	cfg, err := config.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gm2-init: "+err.Error())
		return exitUsage
	}
	if cfg.ShowHelp {
		config.Usage(os.Stdout, version)
		return 0
	}
	if cfg.ShowVersion {
		fmt.Println("gm2-init", version)
		return 0
	}
	log := newLogger(cfg)
	for _, w := range cfg.Warnings {
		log.Warn().Msg(w)
	}

	// 4. How many workers: the CPUs this container may really use.
	rounding := cpus.Floor
	if cfg.CPUCeil {
		rounding = cpus.Ceil
	}
	cpu := cpus.DetectSystem(cpus.Options{Override: cfg.CPUs, Rounding: rounding})
	for _, w := range cpu.Warnings {
		log.Warn().Str("component", "cpus").Msg(w)
	}
	instances, oversubscribed := cfg.Instances.Resolve(cpu.Max)
	log.Info().Int("cpus", cpu.Max).Str("source", cpu.Source).Str("instances_spec", cfg.Instances.String()).Int("instances", instances).Msg("worker count")
	if oversubscribed {
		log.Warn().Int("instances", instances).Int("cpus", cpu.Max).Msg("more workers than usable CPUs: they share the same CPU quota and add latency and memory")
	}
	if cfg.DryRun {
		return dryRun(cfg, cpu, instances)
	}

	// 5. Signals, before the first fork: a SIGCHLD must not arrive unheard.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, handledSignals...)
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	if !reaper.IsPID1() {
		if err := reaper.BecomeSubreaper(); err != nil {
			log.Warn().Err(err).Msg("cannot become a child subreaper; orphans will go to the real init")
		} else {
			log.Info().Msg("not PID 1: acting as child subreaper for the workers' descendants")
		}
	}

	// 6. Bind every listener before any worker exists: the ports accept
	// connections from now on; they wait in the backlog until a worker
	// accepts.
	listeners, err := sockets.Bind(cfg.Listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gm2-init: --listen: "+err.Error())
		var be *sockets.BindError
		if errors.As(err, &be) && be.Usage {
			return exitUsage
		}
		return exitRuntime
	}
	defer sockets.CloseAll(listeners)
	for _, l := range listeners {
		log.Info().Str("name", l.Spec.Name).Str("address", l.Bound).Str("network", string(l.Spec.Network)).Msg("listening")
	}

	// 7. The readiness channels workers may use.
	var notifySock *notify.Socket
	if s, err := notify.Listen(""); err != nil {
		log.Warn().Err(err).Msg("no NOTIFY_SOCKET for workers; READY=1 cannot be received")
	} else {
		notifySock = s
		defer notifySock.Close()
	}
	// The Node preload: how this node can load it (a data: URL needs no
	// file; Node < 18.18 gets a --require file, or nothing and a reason).
	// Choose waits for its probe, so it runs before the reaper starts.
	var preloadEnv []string
	if cfg.NodePreload == "on" || (cfg.NodePreload == "auto" && len(listeners) > 0) {
		ch := preload.Choose(context.Background(), os.Getenv("NODE_OPTIONS"), cfg.Command, preload.DefaultDirs())
		defer ch.Cleanup()
		ev := log.Info()
		if ch.Mode == preload.ModeOff {
			ev = log.Warn()
		}
		ev.Str("mode", ch.Mode).Str("node", ch.Node).Str("node_version", ch.Version).Str("file", ch.File).Str("reason", ch.Reason).Msg("node preload")
		preloadEnv = ch.WorkerEnv()
	}

	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gm2-init: cannot find its own executable: "+err.Error())
		return exitRuntime
	}
	sup := spawn.New(spawn.Options{
		Path: cfg.Path, Args: cfg.Command, Env: os.Environ(), Self: self,
		Instances:        instances,
		Listeners:        sockets.Files(listeners),
		ListenFDNames:    sockets.Names(listeners),
		ListenersDesc:    preload.ListenersEnv(preloadListeners(listeners)),
		PreloadEnv:       preloadEnv,
		PreloadListeners: preloadCapable(listeners),
		Notify:           notifySock,
		Foreground:       instances == 1 && isTerminal(os.Stdin),
		StopSignal:       cfg.StopSignal,
		KillTimeout:      cfg.KillTimeout,
		MinUptime:        cfg.MinUptime,
		ListenTimeout:    cfg.ListenTimeout,
		ShutdownDelay:    cfg.ShutdownDelay,
		Restart:          cfg.Restart,
		MaxRestarts:      cfg.MaxRestarts,
		WaitReady:        cfg.WaitReady,
		ReloadBatch:      cfg.ReloadBatch,
		MinReady:         cfg.MinReady,
		Version:          version,
		Log:              log,
	})

	// 8. Health endpoints, answered from the supervisor's snapshots.
	if cfg.HealthAddr != "" {
		hs, err := health.Listen(cfg.HealthAddr, sup, log.With().Str("component", "health").Logger())
		if err != nil {
			fmt.Fprintln(os.Stderr, "gm2-init: --health-addr: "+err.Error())
			return exitRuntime
		}
		go func() {
			if err := hs.Serve(); err != nil {
				log.Error().Err(err).Msg("health endpoints stopped")
			}
		}()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			hs.Shutdown(ctx)
		}()
		log.Info().Str("address", hs.Addr().String()).Msg("health endpoints")
	}
	log.Info().Dur("shutdown_delay", cfg.ShutdownDelay).Dur("kill_timeout", cfg.KillTimeout).
		Dur("worst_case_stop", cfg.ShutdownDelay+cfg.KillTimeout+2*time.Second).
		Msg("stop budget: keep docker stop -t / terminationGracePeriodSeconds above worst_case_stop")

	// 9. Reap and supervise until the end.
	stopReaper := make(chan struct{})
	defer close(stopReaper)
	exits := make(chan []reaper.Exit, 16)
	go reaper.Run(stopReaper, sigchld, reaper.SafetyInterval, exits)
	return sup.Run(sigs, exits)
}

// isTerminal tells whether f is a terminal (docker run -it).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// preloadCapable counts the listeners a Node app can take over: all but
// unixgram sockets, which Node has no API for.
func preloadCapable(ls []*sockets.Listener) int {
	n := 0
	for _, l := range ls {
		if l.Spec.Network != "unixgram" {
			n++
		}
	}
	return n
}

func preloadListeners(ls []*sockets.Listener) []preload.Listener {
	out := make([]preload.Listener, len(ls))
	for i, l := range ls {
		out[i] = preload.Listener{FD: 3 + i, Proto: string(l.Spec.Network), Addr: l.Bound}
	}
	return out
}

func newLogger(cfg *config.Config) zerolog.Logger {
	var l zerolog.Logger
	if cfg.LogFormat == "console" {
		l = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	} else {
		l = zerolog.New(os.Stderr)
	}
	return l.Level(cfg.LogLevel).With().Timestamp().Str("logger", "gm2-init").Logger()
}

// dryRun prints the resolved configuration as one JSON object.
func dryRun(cfg *config.Config, cpu cpus.Result, instances int) int {
	listen := make([]map[string]string, 0, len(cfg.Listen))
	for _, l := range cfg.Listen {
		listen = append(listen, map[string]string{"name": l.Name, "network": string(l.Network), "address": l.Addr, "spec": l.String()})
	}
	out := map[string]any{
		"version":          version,
		"instances":        instances,
		"instances_spec":   cfg.Instances.String(),
		"instances_source": cpu.Source,
		"cpus":             map[string]any{"max": cpu.Max, "affinity": cpu.Affinity, "source": cpu.Source, "warnings": cpu.Warnings},
		"listen":           listen,
		"kill_timeout":     cfg.KillTimeout.String(),
		"stop_signal":      unix.SignalName(cfg.StopSignal),
		"restart":          string(cfg.Restart),
		"min_uptime":       cfg.MinUptime.String(),
		"max_restarts":     cfg.MaxRestarts,
		"wait_ready":       cfg.WaitReady,
		"listen_timeout":   cfg.ListenTimeout.String(),
		"reload_batch":     cfg.ReloadBatch,
		"health_addr":      cfg.HealthAddr,
		"min_ready":        minReadyString(cfg.MinReady),
		"shutdown_delay":   cfg.ShutdownDelay.String(),
		"node_preload":     cfg.NodePreload,
		"log_level":        cfg.LogLevel.String(),
		"log_format":       cfg.LogFormat,
		"command":          cfg.Command,
		"path":             cfg.Path,
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "gm2-init: --dry-run: "+err.Error())
		return exitRuntime
	}
	return 0
}

func minReadyString(n int) string {
	if n == 0 {
		return "all"
	}
	return fmt.Sprint(n)
}

// healthcheck probes gm2-init's own health endpoint: `gm2-init healthcheck
// [PATH [ADDR]]` (default /readyz) against ADDR, else GM2_HEALTH_ADDR, else
// :9000. Exit 0 when healthy, 1 otherwise: what Docker's HEALTHCHECK
// expects. (An image that sets --health-addr as a flag passes ADDR.)
func healthcheck(args []string) int {
	path := "/readyz"
	if len(args) > 0 {
		path = args[0]
	}
	if len(args) > 2 {
		fmt.Fprintln(os.Stderr, "gm2-init healthcheck: usage: gm2-init healthcheck [PATH [ADDR]]")
		return exitUsage
	}
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintln(os.Stderr, "gm2-init healthcheck: PATH must start with / (e.g. /livez or /readyz)")
		return exitUsage
	}
	addr := os.Getenv("GM2_HEALTH_ADDR")
	if len(args) > 1 {
		addr = args[1]
	}
	if addr == "" {
		addr = ":9000"
	}
	if strings.EqualFold(addr, "off") {
		fmt.Fprintln(os.Stderr, "gm2-init healthcheck: GM2_HEALTH_ADDR is off")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := health.Check(ctx, addr, path, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "gm2-init healthcheck: "+err.Error())
		return 1
	}
	return 0
}
