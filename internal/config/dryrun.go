package config

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/cpus"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// RunApp is an app as it would run: its settings and its worker count.
type RunApp struct {
	App     appspec.App
	Workers appspec.Count
}

// Plan is what main decided before it would bind or start anything, for
// WriteDryRun.
type Plan struct {
	Apps []RunApp
	// Inherited are the sockets gm2-init's parent passed (LISTEN_FDS).
	Inherited []*sockets.Listener
	// Warnings are the lines a start would log about the configuration
	// besides c.Warnings (the CPU detection's, the process file's, the
	// worker count's, the memory budget's), in the order it logs them.
	Warnings []string
	// Split says how the CPUs were split between several apps (appspec.
	// Split's explanation); "" for the command alone.
	Split string
}

// WriteDryRun writes the resolved configuration as one JSON object (--dry-run).
//
// Every option has a field, named after its long flag (kill-timeout →
// "kill_timeout"): gm2-init's own settings, and the command's app's. With
// --config these app fields are the flags' values, which are the defaults
// of the process file's apps (an app's "instances_spec" may differ from the
// top-level one: its file key wins); each app's own values are under
// "apps". Next to them: "instances" (the workers that would run, all apps
// together), "instances_spec" (-i as given), "instances_source" (where
// the count came from: InstancesSource), "cpus" (how the usable CPUs were
// found), "name", "command" and "path" of the command, "warnings" (every
// warning a start would log about the configuration), "worst_case_stop"
// (the longest a shutdown may take, logged at start too), and "apps": each
// app that would run, with its own fields. These names are stable: scripts
// and tests read them.
//
// plan.Inherited are listed under "inherited" with the --listen value each
// one serves, if any ("listen"), and a --listen entry served by one shows
// its "inherited_fd".
func (c *Config) WriteDryRun(w io.Writer, version string, cpu cpus.Result, plan Plan) error {
	apps, inherited := plan.Apps, plan.Inherited
	out := map[string]any{
		"version":          version,
		"instances_source": c.InstancesSource(cpu, apps, plan.Split),
		"cpus":             map[string]any{"max": cpu.Max, "affinity": cpu.Affinity, "source": cpu.Source, "warnings": nonNil(cpu.Warnings)},
		"warnings":         nonNil(append(slices.Clip(c.Warnings), plan.Warnings...)),
	}
	for _, o := range options {
		if o.show != nil && o.scope == globalScope {
			out[o.jsonField()] = o.show(c, nil)
		}
	}
	for k, v := range c.appJSON(&c.App) {
		out[k] = v
	}
	total := 0
	list := make([]map[string]any, 0, len(apps))
	for i := range apps {
		a := c.appJSON(&apps[i].App)
		a["instances"] = apps[i].Workers.N
		list = append(list, a)
		total += apps[i].Workers.N
	}
	out["instances"] = total
	out["apps"] = list
	runApps := make([]appspec.App, len(apps))
	for i := range apps {
		runApps[i] = apps[i].App
	}
	out["worst_case_stop"] = appspec.WorstCaseStop(c.ShutdownDelay, runApps...).String()
	listen := listenJSON(c.App.Listen)
	takenBy := make([]string, len(inherited))
	for j, i := range sockets.Matches(c.App.Listen, inherited) {
		if i >= 0 {
			takenBy[i] = c.App.Listen[j].Raw
			listen[j]["inherited_fd"] = strconv.Itoa(sockets.FirstFD + i)
		}
	}
	out["listen"] = listen
	inh := make([]map[string]any, 0, len(inherited))
	for i, l := range inherited {
		inh = append(inh, map[string]any{"fd": sockets.FirstFD + i, "name": l.Spec.Name, "network": string(l.Spec.Network),
			"address": l.Bound, "listen": takenBy[i]})
	}
	out["inherited"] = inh
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

// appJSON is one app's part of WriteDryRun: every app option's field.
func (c *Config) appJSON(a *appspec.App) map[string]any {
	out := map[string]any{
		"name":    a.Name,
		"command": nonNil(a.Command),
		"path":    a.Path,
	}
	for _, o := range options {
		if o.show != nil && o.scope == appScope {
			out[o.jsonField()] = o.show(c, a)
		}
	}
	return out
}

// InstancesSource says where the worker count came from, for --dry-run's
// "instances_source" and the start's "worker count" line: for the command
// alone, the flag or variable of a fixed count ("-i/--instances 3",
// "GM2_INSTANCES 3", "--instances default 1"), or how the usable CPUs
// were found for max and -N ("affinity mask (2 CPUs), no cgroup CPU
// limit"); with a process file, the usable CPUs and split, the way each
// app got its count.
func (c *Config) InstancesSource(cpu cpus.Result, apps []RunApp, split string) string {
	if c.ConfigFile != "" && split != "" {
		return cpu.Source + "; " + split
	}
	if len(apps) != 1 || apps[0].App.Instances.Relative {
		return cpu.Source
	}
	return fmt.Sprintf("%s %s", c.Source("instances"), apps[0].App.Instances)
}
