package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/bytesize"
	"github.com/gm2-init/gm2-init/internal/cgroup"
	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/echo"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/procfile"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/spawn"
)

// plan is the apps gm2-init will run and their worker counts, decided
// before anything is bound or started.
type plan struct {
	apps   []appspec.App
	counts []appspec.Count
	// explain says how the CPUs were split between several apps ("" for
	// one app).
	explain  string
	warnings []string
}

// planApps decides the apps to run — the command's, or a process file's
// (--config; then a command after -- is one app more) — and their worker
// counts from the usable CPUs. A bad value or a bad file is one line (exit
// 2): a *config.UsageError or a *procfile.Error. The end of ctx ends the
// evaluation of a .js process file.
func planApps(ctx context.Context, cfg *config.Config, cpu cpus.Result) (*plan, error) {
	if cfg.ConfigFile == "" {
		n, err := cfg.Resolve(cpu.Max)
		if err != nil {
			return nil, err
		}
		return &plan{apps: []appspec.App{cfg.App}, counts: []appspec.Count{n}, warnings: config.ResolveWarnings(n, cpu.Max)}, nil
	}
	apps, warns, err := procfile.LoadContext(ctx, cfg.ConfigFile, cfg.App, procfile.Options{
		Env: cfg.Env, Only: cfg.Only,
		EnvFrom: cfg.Source("env"), OnlyFrom: cfg.Source("only"), ListenFrom: cfg.Source("listen"),
	})
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if l, clash := cfg.HealthClash(a.Listen); clash {
			return nil, &procfile.Error{File: cfg.ConfigFile, App: fmt.Sprintf("app %q", a.Name), Key: "listen",
				Msg: fmt.Sprintf("%s and %s %s bind the same address; give one of them another port (or --health-addr off)",
					echo.Quote(l.Raw), cfg.Source("health-addr"), echo.Quote(cfg.HealthAddr))}
		}
	}
	p := &plan{}
	for _, w := range warns {
		p.warnings = append(p.warnings, w.String())
	}
	if len(cfg.App.Command) > 0 {
		for _, a := range apps {
			if a.Name == cfg.App.Name {
				return nil, fmt.Errorf("%s: the command after -- is named %q, like an app of the file; run it from the file, or give the file app another name",
					cfg.Source("config"), a.Name)
			}
		}
		apps = append(apps, cfg.App)
	}
	counts, explain, over := appspec.Split(apps, cpu.Max)
	p.apps, p.explain = apps, explain
	for i, a := range apps {
		if a.MinReady > counts[i] {
			// The file has no min_ready key: the value is --min-ready's
			// (GM2_MIN_READY), every app's default.
			where := cfg.ConfigFile
			if len(cfg.App.Command) > 0 && i == len(apps)-1 {
				where = "the command after --"
			}
			return nil, fmt.Errorf("%s: %w", where, &appspec.MinReadyError{
				App: a.Name, MinReady: a.MinReady, Workers: counts[i], Instances: a.Instances, Source: cfg.Source("min-ready")})
		}
		p.counts = append(p.counts, appspec.Count{N: counts[i]})
	}
	if err := appspec.CheckTotal(counts); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.ConfigFile, err)
	}
	if over {
		p.warnings = append(p.warnings, fmt.Sprintf("%d workers on %d usable CPUs: they share the same CPU quota and add latency and memory", p.total(), cpu.Max))
	}
	return p, nil
}

// specs returns the sockets to bind before any worker starts: every app's
// listen addresses, once each (two apps that name the very same address
// share its socket, as two PM2 cluster apps share a port); at[i][k] is the
// index in it of app i's k-th address.
func (p *plan) specs() (out []sockets.Spec, at [][]int) {
	at = make([][]int, len(p.apps))
	for i, a := range p.apps {
	next:
		for _, s := range a.Listen {
			for j, o := range out {
				if sockets.Same(o, s) {
					at[i] = append(at[i], j)
					continue next
				}
			}
			at[i] = append(at[i], len(out))
			out = append(out, s)
		}
	}
	return out, at
}

// bindError names where a listener that failed to bind was asked for:
// --listen (or GM2_LISTEN), or the listen key of the process file's app
// that names it (the first one, for a socket two apps share).
func (p *plan) bindError(cfg *config.Config, err error) string {
	var be *sockets.BindError
	if cfg.ConfigFile != "" && errors.As(err, &be) {
		for _, a := range p.apps {
			if slices.Contains(a.Listen, be.Spec) {
				return (&procfile.Error{File: cfg.ConfigFile, App: fmt.Sprintf("app %q", a.Name), Key: "listen", Msg: err.Error()}).Error()
			}
		}
	}
	return cfg.Source("listen") + ": " + err.Error()
}

// listenersOf returns app i's sockets among ls, bound from specs() in that
// order and followed by the sockets the parent passed that no address asked
// for: those go to the first app that is not in fork mode.
func (p *plan) listenersOf(i int, ls []*sockets.Listener) []*sockets.Listener {
	specs, at := p.specs()
	var out []*sockets.Listener
	for k, j := range at[i] {
		l := ls[j]
		if name := p.apps[i].Listen[k].Name; name != l.Spec.Name {
			// A socket another app named first: this app's workers see
			// it under this app's own name (LISTEN_FDNAMES, /status).
			c := *l
			c.Spec.Name = name
			l = &c
		}
		out = append(out, l)
	}
	for j := range p.apps {
		if p.apps[j].ExecMode != appspec.Fork {
			if j == i && len(ls) > len(specs) {
				out = append(out, ls[len(specs):]...)
			}
			break
		}
	}
	return out
}

func (p *plan) total() int {
	n := 0
	for _, c := range p.counts {
		n += c.N
	}
	return n
}

func (p *plan) maxKillTimeout() time.Duration {
	var d time.Duration
	for _, a := range p.apps {
		d = max(d, a.KillTimeout)
	}
	return d
}

func (p *plan) runApps() []config.RunApp {
	out := make([]config.RunApp, len(p.apps))
	for i := range p.apps {
		out[i] = config.RunApp{App: p.apps[i], Workers: p.counts[i]}
	}
	return out
}

// warning is one line a start logs about the configuration, with the
// fields that locate it in the log.
type warning struct {
	msg       string
	component string // "" for none
	cpus      bool   // log the usable CPU count next to it
}

// startWarnings are what the configuration, the CPU count and the process file
// warn about, in the order a start logs them (logWarnings): cfg.Warnings,
// then planWarnings.
func (p *plan) startWarnings(cfg *config.Config, cpu cpus.Result) []warning {
	var out []warning
	for _, w := range cfg.Warnings {
		out = append(out, warning{msg: w})
	}
	return append(out, p.planWarnings(cpu)...)
}

// planWarnings are the CPU detection's and the process file's warnings:
// what a start logs besides cfg.Warnings (which --dry-run lists itself).
func (p *plan) planWarnings(cpu cpus.Result) []warning {
	var out []warning
	for _, w := range cpu.Warnings {
		out = append(out, warning{msg: w, component: "cpus"})
	}
	for _, w := range p.warnings {
		out = append(out, warning{msg: w, cpus: true})
	}
	return out
}

// logWarnings logs the warnings, once the logger exists.
func logWarnings(log zerolog.Logger, ws []warning, cpu cpus.Result) {
	for _, w := range ws {
		ev := log.Warn()
		if w.component != "" {
			ev = ev.Str("component", w.component)
		}
		if w.cpus {
			ev = ev.Int("cpus", cpu.Max)
		}
		ev.Msg(w.msg)
	}
}

// dryRunPlan is the plan as --dry-run shows it, with every warning a start
// would log about the configuration besides cfg.Warnings, which config
// adds itself: planWarnings, then the memory limit's.
func (p *plan) dryRunPlan(cpu cpus.Result, lim cgroup.MemoryLimit, inherited []*sockets.Listener) config.Plan {
	out := config.Plan{Apps: p.runApps(), Inherited: inherited, Split: p.explain}
	for _, w := range append(p.planWarnings(cpu), p.memoryWarnings(lim)...) {
		out.Warnings = append(out.Warnings, w.msg)
	}
	return out
}

func (p *plan) logCounts(log zerolog.Logger, cfg *config.Config, cpu cpus.Result) {
	ev := log.Info().Int("cpus", cpu.Max).Str("source", cpu.Source).Int("instances", p.total()).
		Str("instances_source", cfg.InstancesSource(cpu, p.runApps(), p.explain)).Int("gm2_init_procs", runtime.GOMAXPROCS(0))
	if len(p.apps) == 1 {
		ev = ev.Str("instances_spec", p.apps[0].Instances.String())
	} else {
		ev = ev.Str("split", p.explain)
	}
	ev.Msg("worker count")
}

// spawnApps gives every app its listeners (the sockets of its --listen
// addresses, and those the parent passed) and its Node preload. The
// returned function removes the preload's file, if one was written. The
// end of ctx (a stop request while gm2-init starts) ends node's probe.
func (p *plan) spawnApps(ctx context.Context, log zerolog.Logger, listeners []*sockets.Listener) ([]spawn.App, func()) {
	var cleanups []func()
	// Apps run by the same node share its choice: one probe, one file.
	chosen := map[string]preload.Choice{}
	out := make([]spawn.App, len(p.apps))
	for i, a := range p.apps {
		out[i] = spawn.App{App: a, Count: p.counts[i].N, Listeners: p.listenersOf(i, listeners)}
		if a.NodePreload == "off" {
			continue
		}
		// How this app's node loads the preload: --require of a file
		// written for it; a data: URL when no directory takes the file; or
		// nothing, and a reason.
		node := preload.FindNode(a.Command)
		ch, ok := chosen[node]
		if !ok {
			ch = preload.Choose(ctx, os.Getenv("NODE_OPTIONS"), a.Command, preload.DefaultDirs())
			chosen[node] = ch
			cleanups = append(cleanups, ch.Cleanup)
		}
		// The preload goes after the NODE_OPTIONS the app's workers would
		// have had without it: its process file's env if it sets one.
		ch = ch.For(nodeOptions(a.Env, os.Getenv("NODE_OPTIONS")))
		ev := log.Info()
		switch {
		case ch.Mode == preload.ModeOff:
			ev = log.Warn()
		case ch.Node == "":
			ev = log.Debug() // no node in the image: nothing to say
		}
		ev.Str("app", a.Name).Str("mode", ch.Mode).Str("node", ch.Node).Str("node_version", ch.Version).
			Str("file", ch.File).Str("reason", ch.Reason).Msg("node preload")
		out[i].PreloadEnv = ch.WorkerEnv()
	}
	return out, func() {
		for _, c := range cleanups {
			c()
		}
	}
}

// nodeOptions is the NODE_OPTIONS an app's workers get before the
// preload is added: the last one of the app's own env, else inherited.
func nodeOptions(appEnv []string, inherited string) string {
	v := inherited
	for _, kv := range appEnv {
		if rest, ok := strings.CutPrefix(kv, "NODE_OPTIONS="); ok {
			v = rest
		}
	}
	return v
}

// logMemoryBudget logs the container's memory limit next to the worker
// count, and warns when the workers' --max-memory-restart limits add up to
// more than it (memoryWarnings).
func logMemoryBudget(log zerolog.Logger, p *plan, lim cgroup.MemoryLimit) {
	ws := p.memoryWarnings(lim)
	for _, w := range ws {
		if w.component != "" { // the limit's reading's
			log.Warn().Str("component", w.component).Msg(w.msg)
		}
	}
	sum := p.memoryLimitSum()
	ev := log.Info().Str("source", lim.Source).Int("instances", p.total())
	if lim.Limited {
		ev = ev.Str("limit", bytesize.Format(int64(min(lim.Bytes, 1<<62))))
	}
	if sum > 0 {
		ev = ev.Str("workers_limit_sum", bytesize.Format(int64(min(sum, 1<<62))))
	}
	ev.Msg("memory limit")
	for _, w := range ws {
		if w.component != "" {
			continue
		}
		log.Warn().Str("workers_limit_sum", bytesize.Format(int64(min(sum, 1<<62)))).Str("container_limit", bytesize.Format(int64(min(lim.Bytes, 1<<62)))).
			Msg(w.msg)
	}
}

// memoryWarnings are the warnings about the container's memory limit: its
// reading's (lim.Warnings), then one when the workers' --max-memory-restart
// limits add up to more than it — users set the limit per process and
// forget that N of them share one cgroup.
func (p *plan) memoryWarnings(lim cgroup.MemoryLimit) []warning {
	var out []warning
	for _, w := range lim.Warnings {
		out = append(out, warning{msg: w, component: "cgroup"})
	}
	if lim.Limited && p.memoryLimitSum() > lim.Bytes {
		out = append(out, warning{msg: "the workers' --max-memory-restart limits add up to more than the container's memory limit: the kernel's OOM killer may act before gm2-init replaces a worker"})
	}
	return out
}

// memoryLimitSum adds up the workers' --max-memory-restart limits (0 for
// none), saturating at the largest uint64 instead of wrapping around: a
// limit may be up to 2^63-1 bytes, and 1,024 workers of it overflow.
func (p *plan) memoryLimitSum() uint64 {
	var sum uint64
	for i, a := range p.apps {
		hi, each := bits.Mul64(uint64(max(a.MaxMemory, 0)), uint64(max(p.counts[i].N, 0)))
		var carry uint64
		sum, carry = bits.Add64(sum, each, 0)
		if hi != 0 || carry != 0 {
			return math.MaxUint64
		}
	}
	return sum
}
