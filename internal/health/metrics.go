package health

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/status"
)

// metricsContentType is the text exposition format 0.0.4. Prometheus 3 fails
// a scrape whose Content-Type is missing or unknown, so it must be exact.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// The exposition is written by hand: client_golang would add megabytes to a
// binary that must stay small, for a dozen metrics that change only when the
// snapshot does.

// label is one name="value" pair of a sample.
type label struct{ name, value string }

// exposition accumulates a text exposition. Each family is written whole
// (HELP, TYPE, then its samples) so that a family's samples are contiguous
// and its HELP and TYPE appear once, as the format requires.
type exposition struct{ buf bytes.Buffer }

func (e *exposition) family(name, typ, help string) {
	e.buf.WriteString("# HELP ")
	e.buf.WriteString(name)
	e.buf.WriteByte(' ')
	e.buf.WriteString(escapeHelp(help))
	e.buf.WriteString("\n# TYPE ")
	e.buf.WriteString(name)
	e.buf.WriteByte(' ')
	e.buf.WriteString(typ)
	e.buf.WriteByte('\n')
}

// sample writes one line; value is already formatted (see formatUint and
// formatFloat) so that integer counters stay exact.
func (e *exposition) sample(name, value string, labels ...label) {
	e.buf.WriteString(name)
	if len(labels) > 0 {
		e.buf.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			e.buf.WriteString(l.name)
			e.buf.WriteString(`="`)
			e.buf.WriteString(escapeLabelValue(l.value))
			e.buf.WriteByte('"')
		}
		e.buf.WriteByte('}')
	}
	e.buf.WriteByte(' ')
	e.buf.WriteString(value)
	e.buf.WriteByte('\n')
}

// gauge and counter write a family of a single unlabelled sample.
func (e *exposition) gauge(name, help, value string) {
	e.family(name, "gauge", help)
	e.sample(name, value)
}

func (e *exposition) counter(name, help, value string) {
	e.family(name, "counter", help)
	e.sample(name, value)
}

// escapeHelp escapes a HELP text: backslash and line feed only, as the
// format specifies (a '"' stays as is there). Invalid UTF-8 is replaced
// because Prometheus rejects the whole scrape for it.
func escapeHelp(s string) string {
	return escape(s, false)
}

// escapeLabelValue escapes a label value: backslash, double quote and line
// feed. Label values come from outside (the version string today), so they
// are the place where a hostile byte could break the exposition.
func escapeLabelValue(s string) string {
	return escape(s, true)
}

func escape(s string, quote bool) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\\\n\"") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
func formatInt(v int) string     { return strconv.Itoa(v) }

// formatFloat writes the shortest representation that parses back to v;
// Go's "+Inf", "-Inf" and "NaN" are the spellings the format uses.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func formatBool(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// writeMetrics renders snap, the usage of the workers' process trees (trees,
// keyed by pid; nil when none was read) and gm2-init's own process usage.
func writeMetrics(e *exposition, snap *status.Snapshot, trees map[int]procfs.TreeResult, u procfs.Usage, procStart float64) {
	e.family("gm2_info", "gauge", "Always 1; the version label tells which gm2-init runs.")
	e.sample("gm2_info", "1", label{"version", snap.Version})

	e.gauge("gm2_instances_wanted", "Number of worker instances gm2-init keeps running (-i).", formatInt(snap.Instances))
	e.gauge("gm2_min_ready_workers", "Ready workers required for /readyz to pass: the sum of the apps' own, which /readyz checks app by app (gm2_app_min_ready_workers).", formatInt(snap.MinReady))
	e.gauge("gm2_ready_workers", "Worker processes ready to serve, across slots (a slot has two during a reload).", formatInt(snap.ReadyWorkers()))
	writeAppFigures(e, snap)

	// Slots by state, every known state included at 0 so that a
	// dashboard's series do not appear and vanish; a state the supervisor
	// added later is still reported.
	counts := make(map[status.State]int, len(status.AllStates))
	for _, sl := range snap.Slots {
		counts[sl.State]++
	}
	states := append([]status.State(nil), status.AllStates...)
	var extra []status.State
	for st := range counts {
		if !slices.Contains(status.AllStates, st) {
			extra = append(extra, st)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	states = append(states, extra...)
	e.family("gm2_workers", "gauge", "Worker slots by state (not processes: a slot's old workers draining after its reload are not counted); the values sum to the number of instances, plus the slots a scale-down removes while their workers drain.")
	for _, st := range states {
		e.sample("gm2_workers", formatInt(counts[st]), label{"state", string(st)})
	}

	e.gauge("gm2_shutting_down", "1 once gm2-init has begun shutting down (/readyz fails from then on).", formatBool(snap.ShuttingDown))
	e.gauge("gm2_reload_in_progress", "1 while a rolling reload runs.", formatBool(snap.Reload.InProgress))
	e.gauge("gm2_reload_generation", "Rolling reload passes so far, the apps' added up (0 before the first; gm2_app_reload_generation per app).", formatUint(snap.Reload.Generation))

	e.counter("gm2_restarts_total", "Worker restarts after an exit, since gm2-init started.", formatUint(snap.Counters.Restarts))
	e.family("gm2_reloads_total", "counter", "Rolling reloads by result.")
	for _, res := range reloadResults(snap.Counters.Reloads) {
		e.sample("gm2_reloads_total", formatUint(snap.Counters.Reloads[res]), label{"result", res})
	}
	e.counter("gm2_orphans_reaped_total", "Orphaned processes (not workers) reaped by gm2-init as PID 1.", formatUint(snap.Counters.OrphansReaped))
	e.counter("gm2_workers_started_total", "Worker processes started, first starts, restarts and reloads included.", formatUint(snap.Counters.WorkersStarted))
	e.counter("gm2_memory_restarts_total", "Workers replaced for using more memory than --max-memory-restart (new worker first, then the old one stops).", formatUint(snap.Counters.MemoryRestarts))

	writeWorkerUsage(e, snap, trees)

	// The standard process_* families, for gm2-init itself (the workers
	// are in the gm2_worker_* families above).
	if u.StatErr == nil {
		e.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", formatFloat(u.CPUSeconds))
		e.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", formatUint(u.ResidentBytes))
		e.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", formatUint(u.VirtualBytes))
	}
	if u.FDErr == nil {
		e.gauge("process_open_fds", "Number of open file descriptors.", formatInt(u.OpenFDs))
	}
	if procStart > 0 {
		e.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", formatFloat(procStart))
	}
}

// writeAppFigures writes the figures above per app (a process file's
// several apps; one series for a single command): /readyz holds each app
// to its own min_ready, and a dashboard must see which one is short.
func writeAppFigures(e *exposition, snap *status.Snapshot) {
	if len(snap.Apps) == 0 {
		return
	}
	for _, f := range []struct {
		name, help string
		value      func(status.App) string
	}{
		{"gm2_app_instances_wanted", "Number of worker instances gm2-init keeps running for the app.", func(a status.App) string { return formatInt(a.Instances) }},
		{"gm2_app_min_ready_workers", "Ready workers of the app required for /readyz to pass.", func(a status.App) string { return formatInt(a.MinReady) }},
		{"gm2_app_ready_workers", "Worker processes of the app ready to serve.", func(a status.App) string { return formatInt(a.Ready) }},
		{"gm2_app_reload_generation", "Generation of the app's last rolling reload pass (0 before the first).", func(a status.App) string { return formatUint(a.Reload.Generation) }},
	} {
		e.family(f.name, "gauge", f.help)
		for _, a := range snap.Apps {
			e.sample(f.name, f.value(a), label{"app", a.Name})
		}
	}
}

// writeWorkerUsage writes the gm2_worker_* families: one series per slot,
// labelled app and instance, summing the slot's workers and all their
// descendants (see slotUsage).
//
// The labels are deliberately not the pid nor the reload generation: both
// change at every restart and reload, so each would start a new series every
// time, and a crash-looping worker would leave hundreds behind in
// Prometheus (cardinality, and dashboards of short-lived lines). With app and
// instance, a restart shows as what it is, one series whose counter resets,
// which rate() and increase() handle; the pid is in /status.
func writeWorkerUsage(e *exposition, snap *status.Snapshot, trees map[int]procfs.TreeResult) {
	type row struct {
		labels []label
		st     procfs.Stats
	}
	var rows []row
	partial := 0
	for _, sl := range snap.Slots {
		st, ok := slotUsage(sl, trees)
		if st.Partial {
			partial++
		}
		if ok {
			rows = append(rows, row{[]label{{"app", sl.App}, {"instance", formatInt(sl.Index)}}, st})
		}
	}
	families := []struct {
		name, typ, help string
		value           func(procfs.Stats) string
	}{
		{"gm2_worker_memory_bytes", "gauge", "Resident set size (RSS) of the slot's worker and all its descendants, summed, in bytes; during a reload the old and the new worker both count.",
			func(s procfs.Stats) string { return formatUint(s.RSSBytes) }},
		{"gm2_worker_cpu_seconds_total", "counter", "User and system CPU time of the slot's worker and all its descendants (with the children they waited for), in seconds; resets when the worker is replaced.",
			func(s procfs.Stats) string { return formatFloat(s.CPUSeconds()) }},
		{"gm2_worker_threads", "gauge", "Threads of the slot's worker and all its descendants.",
			func(s procfs.Stats) string { return formatInt(s.Threads) }},
		{"gm2_worker_processes", "gauge", "Processes in the slot's worker tree, the worker included.",
			func(s procfs.Stats) string { return formatInt(s.Processes) }},
		{"gm2_worker_open_fds", "gauge", "Open file descriptors of the slot's worker and all its descendants, summed.",
			func(s procfs.Stats) string { return formatInt(s.FDs) }},
	}
	if len(rows) > 0 {
		for _, f := range families {
			e.family(f.name, f.typ, f.help)
			for _, r := range rows {
				e.sample(f.name, f.value(r.st), r.labels...)
			}
		}
	}
	e.gauge("gm2_worker_usage_partial_slots", "Slots whose worker trees this scrape could read only in part or not at all (deadline, permissions): their gm2_worker_* figures are a lower bound or missing.", formatInt(partial))
}

func (s *Server) handleMetrics(ctx context.Context) reply {
	u := procfs.ReadSelf(s.opts.procRoot)
	for what, err := range map[string]error{"stat": u.StatErr, "fd": u.FDErr} {
		if err != nil {
			s.log.Debug().Err(err).Str("proc", what).Msg("process metric unavailable")
		}
	}
	snap := s.snapshot()
	trees := s.status.usage.read(ctx, snap)
	var e exposition
	writeMetrics(&e, snap, trees, u, s.procStart)
	if s.queues != nil {
		s.queues.writeQueueMetrics(&e)
	}
	return bodyReply(statusOK, metricsContentType, e.buf.Bytes())
}
