// gm2-init is an init for containers: PID 1 duties (reaping, signal
// forwarding, no orphans left behind) plus PM2's cluster mode for any
// language — N workers sharing ports that gm2-init binds once and passes with
// the systemd socket-activation protocol, or binds on a Node worker's first
// listen(), rolling reloads on SIGHUP, restarts with backoff, and health
// endpoints for Kubernetes.
//
// This file only wires the packages together, in the order things happen.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/cgroup"
	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/control"
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/health"
	"github.com/gm2-init/gm2-init/internal/notify"
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

// maxOwnProcs bounds gm2-init's own GOMAXPROCS, and a GOMAXPROCS in the
// environment does not apply to it: that one is meant for the app's
// workers, like GOGC. Go's default is the node's CPU count when the
// container has no CPU limit (64 on a 64-core node), and each P costs an
// idle init memory and threads it never uses: its mcache's spans, a GC
// worker, the threads to run them (RSS after 8000 probes and scrapes, in
// kB: 8,196 with 2 Ps, 9,072 with 8, on the benchmark machine). Two keep
// the supervisor loop and the health endpoints running side by side, and
// are what every benchmark figure was measured with.
const maxOwnProcs = 2

// version is set at build time with -ldflags "-X main.version=…"; a binary
// built by `go install …@vX` says the module version instead (buildVersion).
var version = "dev"

// buildVersion is version, or the module version recorded in the binary
// when none was set at build time.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// Exit statuses of gm2-init itself (a worker's status is passed through as
// described in the README).
const (
	exitRuntime = 1 // the system refused: a port in use, a socket that cannot be created
	exitUsage   = 2 // bad flag, variable, command or process file: nothing was started
)

// handledSignals are delivered to the supervisor. The list is explicit: a
// bare signal.Notify would also deliver SIGURG, which the Go runtime uses
// for preemption and which must never be forwarded to workers. SIGPIPE is
// taken (and dropped) so that a closed log pipe cannot kill gm2-init.
var handledSignals = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGQUIT, unix.SIGHUP,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGTTIN, unix.SIGTTOU, unix.SIGPIPE,
}

// stopRequests are the signals that ask gm2-init to stop (see the
// README's Signals): before any worker started, they end it with status 0.
var stopRequests = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGQUIT}

func main() { os.Exit(run()) }

// stoppedWhileStarting ends a start that a stop request interrupted
// (starting ended): no worker was started, so there is nothing to stop,
// and the exit is a clean one — status 0, as for a requested shutdown in
// which every worker exited on its own.
func stoppedWhileStarting(log zerolog.Logger, starting context.Context) int {
	log.Info().Str("cause", context.Cause(starting).Error()).Msg("stopped by a signal before any worker started")
	return 0
}

func run() int {
	// 1. A worker being started: set LISTEN_PID and exec the app.
	if len(os.Args) > 1 && os.Args[1] == spawn.ExecArg {
		return spawn.ExecMain(os.Args[2:])
	}
	// 2. A command as the first argument: healthcheck (Docker
	// HEALTHCHECK), status|ls|list|reload|scale (docker exec, kubectl
	// exec), help. Anything else is the supervisor's command line.
	if status, ran := runCommand(os.Args[1:], buildVersion(), os.Stdout, os.Stderr); ran {
		return status
	}

	// 3. Signals, before anything else: from here on, none may end
	// gm2-init the Go runtime's way (exit status 2 as PID 1, death by the
	// signal otherwise) while it parses, evaluates a .js process file (up
	// to 10 s) or probes node. The channel holds them for the supervisor;
	// a stop request (TERM, INT, QUIT) also ends starting, which ends what
	// start-up waits for, and gm2-init then exits cleanly before any
	// worker exists. (The exec shim above and the commands that only ask
	// or check keep the default: they are not gm2-init's PID 1.)
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, handledSignals...)
	starting, stopStarting := signal.NotifyContext(context.Background(), stopRequests...)
	defer stopStarting()

	// 4. What gm2-init's own parent passed, before anything else is opened.
	up, err := takeFromParent()
	if err != nil {
		return fail(exitUsage, err.Error())
	}
	debug.SetGCPercent(gcPercent)
	runtime.GOMAXPROCS(min(runtime.NumCPU(), maxOwnProcs))
	ver := buildVersion()

	// 5. Configuration: flags over GM2_* variables over defaults, then the
	// worker counts from the CPUs this container may really use. Bad input
	// is one line on stderr and exit status 2, before anything is logged.
	cfg, err := config.Parse(os.Args[1:])
	if err != nil {
		return fail(exitUsage, err.Error())
	}
	switch {
	case cfg.ShowHelp:
		config.Usage(os.Stdout, ver)
		return 0
	case cfg.ShowVersion:
		fmt.Println("gm2-init", ver)
		return 0
	}
	log, logs := newLogger(cfg)
	defer logs.Close(appspec.LogFlush)
	cpu := cpus.DetectSystem(cpus.Options{Override: cfg.CPUs, Rounding: cfg.CPURounding})
	plan, err := planApps(starting, cfg, cpu)
	if starting.Err() != nil {
		return stoppedWhileStarting(log, starting)
	}
	if err != nil {
		return failLogged(logs, exitUsage, err.Error())
	}
	warnings := plan.startWarnings(cfg, cpu)
	memLimit := cgroup.ReadMemoryLimitSystem()
	if cfg.DryRun {
		logWarnings(log, warnings, cpu)
		logs.Close(appspec.LogFlush) // the warnings come before the plan (a terminal shows both)
		if err := cfg.WriteDryRun(os.Stdout, ver, cpu, plan.dryRunPlan(cpu, memLimit, up.inherited)); err != nil {
			return fail(exitRuntime, "--dry-run: "+err.Error())
		}
		return 0
	}

	// 6. Bind every listener before any worker exists: the ports accept
	// connections from now on; they wait in the backlog until a worker
	// accepts. A --listen address that the parent passed already is not
	// bound again. A bad address found here is still one line.
	specs, _ := plan.specs()
	listeners, err := sockets.Open(specs, up.inherited)
	if err != nil {
		var be *sockets.BindError
		if errors.As(err, &be) && be.Usage {
			return failLogged(logs, exitUsage, plan.bindError(cfg, err))
		}
		return failLogged(logs, exitRuntime, plan.bindError(cfg, err))
	}
	defer sockets.CloseAll(listeners)
	up.log(log)
	logWarnings(log, warnings, cpu)
	plan.logCounts(log, cfg, cpu)
	for i, l := range listeners {
		log.Info().Str("name", l.Spec.Name).Str("address", l.Bound).Str("network", string(l.Spec.Network)).
			Int("fd", sockets.FirstFD+i).Bool("inherited", l.Inherited).Msg("listening")
	}
	logMemoryBudget(log, plan, memLimit)

	// 7. SIGCHLD, before the first fork: it must not arrive unheard.
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	if !reaper.IsPID1() {
		if err := reaper.BecomeSubreaper(); err != nil {
			log.Warn().Err(err).Msg("cannot become a child subreaper; orphans will go to the real init")
		} else {
			log.Info().Msg("not PID 1: acting as child subreaper for the workers' descendants")
		}
	}

	// 8. The readiness channels workers may use, and the Node preload (its
	// probe of node waits for the process: before the reaper starts).
	notifySock := listenNotify(log)
	if notifySock != nil {
		defer notifySock.Close()
	}
	apps, cleanup := plan.spawnApps(starting, log, listeners)
	defer cleanup()

	// Ports a Node worker listens on with no --listen for them are bound
	// on its first request and shared with every worker of its app.
	shared := sockets.NewRegistry(cfg.MaxSharedPorts, listeners)
	defer shared.Close()
	opts := spawn.Options{
		Apps:                apps,
		Env:                 os.Environ(),
		Notify:              notifySock,
		Shared:              shared,
		Foreground:          plan.total() == 1 && isTerminal(os.Stdin),
		ShutdownDelay:       cfg.ShutdownDelay,
		MemoryCheckInterval: cfg.MemoryCheckInterval,
		Version:             ver,
		Log:                 log,
	}
	// What gm2-init tells its own supervisor (systemd Type=notify, podman
	// --sdnotify=container, another gm2-init): nil when nobody asked.
	parent, watchdog := dialParent(up.env, log.With().Str("component", "notify-parent").Logger())
	if parent != nil {
		defer parent.Close()
		opts.Lifecycle = parent
	}
	opts.Lifecycle = returnMemory{next: opts.Lifecycle}
	sup := spawn.New(opts)
	stopHooks := startTestHooks(sup, log)
	defer stopHooks()
	// `gm2-init status|reload|scale` from inside the container reach the
	// supervisor over a unix socket of this PID namespace; its status is
	// the document GET /status serves, this very one.
	statusDoc := health.NewStatusDocument(sup.Snapshot, "/proc")
	if srv, err := control.Listen(control.Options{Supervisor: sup, Status: statusDoc.Body, Log: log.With().Str("component", "control").Logger()}); err != nil {
		log.Warn().Err(err).Msg("no control socket: gm2-init status|reload|scale will not reach this gm2-init")
	} else {
		go func() {
			if err := srv.Serve(); err != nil {
				log.Error().Err(err).Msg("control socket stopped")
			}
		}()
		defer srv.Close()
	}

	// 9. Health endpoints, answered from the supervisor's snapshots.
	if cfg.HealthAddr != "" {
		hs, err := health.Listen(cfg.HealthAddr, sup, log.With().Str("component", "health").Logger(), health.Config{
			Listeners: health.ListenersOf(listeners, shared), QueueTimeout: cfg.QueueTimeout, Status: statusDoc,
		})
		if err != nil {
			return failLogged(logs, exitRuntime, cfg.Source("health-addr")+": "+err.Error())
		}
		go func() {
			if err := hs.Serve(); err != nil {
				log.Error().Err(err).Msg("health endpoints stopped")
			}
		}()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), appspec.CloseGrace)
			defer cancel()
			hs.Shutdown(ctx)
		}()
		log.Info().Str("address", hs.Addr().String()).Msg("health endpoints")
		if own, err := sockets.StdlibTCP(hs.Addr().String()); err == nil {
			shared.NoteOwnPort(own, "gm2-init's own health endpoints (--health-addr)")
		}
	}
	log.Info().Str("shutdown_delay", cfg.ShutdownDelay.String()).Str("kill_timeout", plan.maxKillTimeout().String()).
		Str("worst_case_stop", appspec.WorstCaseStop(cfg.ShutdownDelay, plan.apps...).String()).
		Msg("stop budget: keep docker stop -t / terminationGracePeriodSeconds above worst_case_stop")

	// 10. Reap and supervise until the end. The watchdog pings only while
	// the loop answers a round trip, the check behind /livez.
	if parent != nil && watchdog > 0 {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go parent.Watchdog(ctx, watchdog, sup.Ping)
		log.Info().Str("interval", watchdog.String()).Msg("watchdog: WATCHDOG=1 to gm2-init's own supervisor while the supervisor loop answers")
	}
	// A stop request that came while gm2-init started: nothing to stop.
	// From here on, the supervisor handles TERM, INT and QUIT.
	if starting.Err() != nil {
		return stoppedWhileStarting(log, starting)
	}
	stopStarting()
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

// listenNotify opens the NOTIFY_SOCKET workers send READY=1 to; nil when it
// cannot (READY=1 then cannot be received, which the log says).
func listenNotify(log zerolog.Logger) *notify.Socket {
	nlog := log.With().Str("component", "notify").Logger()
	s, err := notify.Config{OnDrop: func(d notify.Drop) {
		nlog.Warn().Err(d.Err).Int("sender_pid", d.Pid).Uint64("count", d.Count).Msg("notify datagrams dropped")
	}}.Listen()
	if err != nil {
		log.Warn().Err(err).Msg("no NOTIFY_SOCKET for workers; READY=1 cannot be received")
		return nil
	}
	logNotifyFallback(log, s)
	return s
}
