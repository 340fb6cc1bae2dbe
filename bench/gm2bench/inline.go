package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
	"time"
)

// InlineRun is one round of one build in benchmark 10: gm2-init as shipped
// (compiled without inlining, -gcflags=all=-l, for its size) next to the
// same source built with the compiler's default inlining. gm2-init is not
// on the data path (workers accept on the sockets themselves), so what its
// own code's speed decides is the work it does between requests: starting,
// answering probes, reading /proc for a scrape.
type InlineRun struct {
	Build string `json:"build"` // shipped | inlined
	Round int    `json:"round"`
	// StartMs: exec of gm2-init → every worker ready (its log line).
	StartMs float64 `json:"start_ms"`
	// ProbeCPUUs: gm2-init's CPU time (all threads, schedstat) per /readyz
	// probe of a burst, each on a new connection as the kubelet's;
	// ProbeP50Ms the probes' median wall time.
	ProbeCPUUs float64 `json:"probe_cpu_us"`
	ProbeP50Ms float64 `json:"probe_p50_ms"`
	// ScrapeCPUMs: CPU time per cold /metrics (every worker tree read from
	// /proc, as a Prometheus scrape every 15 s finds it).
	ScrapeCPUMs float64 `json:"scrape_cpu_ms"`
	RSSIdleKB   int64   `json:"rss_idle_kb"`
	RSSAfterKB  int64   `json:"rss_after_kb"` // after the probes and scrapes
}

// InlineResult is benchmark 10.
type InlineResult struct {
	Sizes map[string]int64 `json:"sizes"`
	Runs  []InlineRun      `json:"runs"`
}

// inlineBuilds are the two binaries, by build name.
func (e *Env) inlineBuilds() map[string]string {
	return map[string]string{"shipped": e.GM2, "inlined": e.GM2Inlined}
}

func benchInline(e *Env) (*InlineResult, error) {
	res := &InlineResult{Sizes: map[string]int64{}}
	builds := e.inlineBuilds()
	for name, bin := range builds {
		st, err := os.Stat(bin)
		if err != nil {
			return res, err
		}
		res.Sizes[name] = st.Size()
	}
	order := []string{"shipped", "inlined"}
	for r := 0; r < e.P.InlineRounds; r++ {
		for i := range order {
			name := order[(i+r)%len(order)]
			run, err := e.inlineOnce(name, builds[name], r+1)
			if err != nil {
				return res, fmt.Errorf("%s round %d: %w", name, r+1, err)
			}
			logf("  inline %-7s r%d: start %.0f ms; %.1f µs CPU per probe (p50 %.2f ms); %.2f ms CPU per cold scrape of %d workers; RSS %d → %d kB",
				name, r+1, run.StartMs, run.ProbeCPUUs, run.ProbeP50Ms, run.ScrapeCPUMs, e.P.InlineWorkers, run.RSSIdleKB, run.RSSAfterKB)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

func (e *Env) inlineOnce(name, bin string, round int) (InlineRun, error) {
	run := InlineRun{Build: name, Round: round}
	n := e.P.InlineWorkers
	// Each worker a small tree (sh, trivial below it), as in benchmark 8 (scrape).
	t0 := time.Now()
	p, health, err := e.startTrees("gm2-init/"+name, bin, n, fmt.Sprintf("inline-%s-r%d.log", name, round))
	if err != nil {
		return run, err
	}
	defer p.Stop(syscall.SIGTERM, 30*time.Second)
	run.StartMs = float64(time.Since(t0)) / 1e6
	time.Sleep(time.Second) // the start's garbage collected and returned
	run.RSSIdleKB = memOf(p.Pid).RSS

	before := activityOf(p.Pid)
	var walls []float64
	for i := 0; i < e.P.InlineProbes; i++ {
		code, d, err := probeHealth(health, "/readyz", 10*time.Second)
		if err != nil || code != 200 {
			return run, fmt.Errorf("probe %d: %d %v", i+1, code, err)
		}
		walls = append(walls, float64(d)/1e6)
	}
	after := activityOf(p.Pid)
	run.ProbeCPUUs = float64(after.CPUNs-before.CPUNs) / 1e3 / float64(e.P.InlineProbes)
	run.ProbeP50Ms = summarize(walls).Median

	var cpu int64
	for i := 0; i < e.P.InlineCold; i++ {
		// Past the usage cache's second: every scrape reads /proc.
		time.Sleep(1100 * time.Millisecond)
		a := activityOf(p.Pid)
		if _, err := httpGet("http://"+health+"/metrics", 10*time.Second, false); err != nil {
			return run, fmt.Errorf("scrape %d: %w", i+1, err)
		}
		cpu += activityOf(p.Pid).CPUNs - a.CPUNs
	}
	run.ScrapeCPUMs = float64(cpu) / 1e6 / float64(e.P.InlineCold)
	run.RSSAfterKB = memOf(p.Pid).RSS
	if !p.Alive() {
		return run, fmt.Errorf("gm2-init exited")
	}
	return run, nil
}

func (r InlineRun) pair() (int, string) { return r.Round, r.Build }

func inlineSection(b *strings.Builder, s *InlineResult) []target {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## 10. Built without inlining (as shipped) next to the default build\n\n")
	w("gm2-init is built with `-gcflags=all=-l` for its size (issue 13). It is not on the data path, so\n")
	w("this measures the work it does itself: the start, the CPU time of a `/readyz` probe and of a cold\n")
	w("`/metrics` scrape (every worker tree read from /proc), and its memory. Shipped ÷ inlined is computed\n")
	w("round by round.\n\n")
	w("| | shipped (`-l`) | inlined (default) | shipped ÷ inlined | geometric mean | rounds shipped higher |\n|---|---|---|---|---|---|\n")
	w("| binary | %s | %s | %.3f | | |\n", bytesStr(s.Sizes["shipped"]), bytesStr(s.Sizes["inlined"]), float64(s.Sizes["shipped"])/float64(s.Sizes["inlined"]))
	row := func(what string, prec int, metric func(InlineRun) float64) {
		of := func(build string) Summary { return summarize(values(s.Runs, build, metric)) }
		rs := ratios(s.Runs, "shipped", "inlined", metric)
		higher := 0
		for _, r := range rs {
			if r > 1 {
				higher++
			}
		}
		w("| %s | %s | %s | %s | %.3f | %d of %d |\n", what, cell(of("shipped"), prec), cell(of("inlined"), prec), ratioCell(summarize(rs)), geomean(rs), higher, len(rs))
	}
	row("start → every worker ready (ms)", 0, func(x InlineRun) float64 { return x.StartMs })
	row("CPU per `/readyz` probe (µs)", 1, func(x InlineRun) float64 { return x.ProbeCPUUs })
	row("probe wall time, median (ms)", 2, func(x InlineRun) float64 { return x.ProbeP50Ms })
	row("CPU per cold `/metrics` scrape (ms)", 2, func(x InlineRun) float64 { return x.ScrapeCPUMs })
	row("RSS idle (kB)", 0, func(x InlineRun) float64 { return float64(x.RSSIdleKB) })
	row("RSS after the probes and scrapes (kB)", 0, func(x InlineRun) float64 { return float64(x.RSSAfterKB) })
	w("\n")
	return nil
}

// geomean is the geometric mean of ratios: unlike their median, it weighs
// every round.
func geomean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += math.Log(x)
	}
	return math.Exp(sum / float64(len(xs)))
}
