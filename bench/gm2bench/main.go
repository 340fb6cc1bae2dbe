// Command gm2bench runs gm2-init's benchmark suite (issue 8) and writes
// BENCHMARKS.md. It is started by bench/run, which installs the tools and
// builds the binaries it expects in -tools; run that, not this.
//
// Every benchmark runs gm2-init next to its alternatives in the same run,
// interleaved (A B A B … over several rounds), and reports medians, the
// spread (min–max) and ratios. All load goes to 127.0.0.1, every load tool
// runs for a fixed duration or count, and every process the driver starts is
// stopped by its pid.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Params are the sizes of one run.
type Params struct {
	Quick bool `json:"quick"`

	IdleRounds int     `json:"idle_rounds"`
	IdleSettle float64 `json:"idle_settle_s"`
	IdleWindow float64 `json:"idle_window_s"`

	DataRounds int     `json:"data_rounds"`
	DataDur    float64 `json:"data_duration_s"`
	DataWarm   float64 `json:"data_warmup_s"`
	DataKAConn int     `json:"data_keepalive_connections"`
	DataNCConn int     `json:"data_newconn_connections"`
	// The paired rounds that decide the data-path target: gm2-init, ideal
	// and ideal-2 in short slices.
	PairRounds int     `json:"pair_rounds"`
	PairDur    float64 `json:"pair_duration_s"`

	StartRounds int `json:"start_rounds"`

	ReapRounds int `json:"reap_rounds"`
	ReapTotal  int `json:"reap_orphans"`
	ReapBatch  int `json:"reap_batch"`

	ScaleRounds int   `json:"scale_rounds"`
	ScaleNs     []int `json:"scale_ns"`

	ReloadRounds  int `json:"reload_rounds"`
	ReloadCount   int `json:"reloads"`
	ReloadClients int `json:"reload_clients"`

	ScrapeRounds  int   `json:"scrape_rounds"`
	ScrapeWorkers int   `json:"scrape_workers"`
	ScrapeCold    int   `json:"scrape_cold"`  // cold scrapes of each endpoint per round
	ScrapeBurst   int   `json:"scrape_burst"` // back-to-back scrapes per round
	ScrapeReads   int   `json:"scrape_reads"` // in-process reads of every tree per round
	PSSSizesMB    []int `json:"pss_sizes_mb"`
	// Health bursts: rounds, and beside the idle connections, how many
	// kubelets probe and how many probes each makes.
	HealthRounds   int `json:"health_rounds"`
	HealthKubelets int `json:"health_kubelets"`
	HealthProbes   int `json:"health_probes_per_kubelet"`
	// Benchmark 10: rounds of both builds, probes and cold scrapes in each,
	// and the workers (small process trees) scraped.
	InlineRounds  int `json:"inline_rounds"`
	InlineProbes  int `json:"inline_probes"`
	InlineCold    int `json:"inline_cold_scrapes"`
	InlineWorkers int `json:"inline_workers"`
}

func params(quick bool) Params {
	p := Params{
		Quick:      quick,
		IdleRounds: 3, IdleSettle: 12, IdleWindow: 60,
		DataRounds: 6, DataDur: 5, DataWarm: 5, DataKAConn: 64, DataNCConn: 32,
		PairRounds: 40, PairDur: 1,
		StartRounds: 20,
		ReapRounds:  3, ReapTotal: 100000, ReapBatch: 10000,
		ScaleRounds: 3, ScaleNs: []int{1, 8, 64},
		ReloadRounds: 1, ReloadCount: 20, ReloadClients: 20,
		ScrapeRounds: 3, ScrapeWorkers: 64, ScrapeCold: 20, ScrapeBurst: 1000, ScrapeReads: 200,
		PSSSizesMB:   []int{16, 128, 512},
		HealthRounds: 5, HealthKubelets: 10, HealthProbes: 50,
		InlineRounds: 10, InlineProbes: 2000, InlineCold: 5, InlineWorkers: 16,
	}
	if quick {
		p.IdleRounds, p.IdleWindow = 1, 15
		p.DataRounds, p.DataDur, p.DataWarm = 3, 2, 3
		p.PairRounds = 15
		p.StartRounds = 5
		p.ReapRounds = 1
		p.ScaleRounds = 1
		p.ReloadCount = 10
		p.ScrapeRounds, p.ScrapeCold, p.ScrapeReads = 1, 5, 50
		p.PSSSizesMB = []int{16, 256}
		p.HealthRounds, p.HealthProbes = 1, 20
		p.InlineRounds, p.InlineProbes, p.InlineCold = 2, 500, 3
	}
	return p
}

// Env is where everything is.
type Env struct {
	Root, Tools, Out, Logs, Tmp string

	GM2, Ideal, Trivial, Reap string
	GM2Inlined                string // the same source, default inlining (benchmark 10)
	MinReaper                 string
	Tini, DumbInit, Wrk       string
	Node, PM2Runtime, PM2     string
	Unshare                   string
	Hello, Cluster            string

	P Params
}

// Results is everything one run measured; summary.json is this.
type Results struct {
	Meta      Meta               `json:"meta"`
	Params    Params             `json:"params"`
	Footprint *FootprintResult   `json:"footprint_idle,omitempty"`
	DataPath  *DataPathResult    `json:"data_path,omitempty"`
	Start     *StartResult       `json:"start,omitempty"`
	Preload   *PreloadResult     `json:"preload,omitempty"`
	Reap      *ReapResult        `json:"reap,omitempty"`
	Scale     *ScaleResult       `json:"scale,omitempty"`
	Reload    *ReloadResult      `json:"reload,omitempty"`
	Scrape    *ScrapeResult      `json:"scrape,omitempty"`
	Health    *HealthBurstResult `json:"healthburst,omitempty"`
	Inline    *InlineResult      `json:"inline,omitempty"`
	Errors    []string           `json:"errors,omitempty"`
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func main() {
	root := flag.String("root", ".", "repository root")
	tools := flag.String("tools", "bench/.tools", "directory with the built binaries and pm2")
	quick := flag.Bool("quick", false, "short run (a few minutes)")
	only := flag.String("only", "", "comma-separated subset: footprint,datapath,start,preload,reap,scale,reload,scrape,healthburst,inline")
	out := flag.String("out", "", "results directory (default bench/results/DATE[-quick])")
	md := flag.String("md", "", "where to write the report (default ROOT/BENCHMARKS.md; \"-\" = only in the results directory)")
	from := flag.String("report", "", "measure nothing: render the report again from DIR/summary.json")
	flag.Parse()
	if *from != "" {
		rerender(*root, *from, *md)
		return
	}

	started := time.Now().UTC()
	e := &Env{P: params(*quick)}
	var err error
	if e.Root, err = filepath.Abs(*root); err != nil {
		fatal(err)
	}
	e.Tools = abs(e.Root, *tools)
	if *out == "" {
		name := started.Format("2006-01-02T1504Z")
		if *quick {
			name += "-quick"
		}
		*out = filepath.Join(e.Root, "bench", "results", name)
	}
	e.Out = abs(e.Root, *out)
	e.Logs = filepath.Join(e.Out, "logs")
	for _, d := range []string{e.Out, e.Logs, filepath.Join(e.Out, "raw")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fatal(err)
		}
	}
	e.GM2 = filepath.Join(e.Tools, "gm2-init")
	e.GM2Inlined = filepath.Join(e.Tools, "gm2-init-inlined")
	e.Ideal = filepath.Join(e.Tools, "ideal")
	e.Trivial = filepath.Join(e.Tools, "trivial")
	e.Reap = filepath.Join(e.Tools, "reap")
	e.MinReaper = filepath.Join(e.Tools, "minreaper")
	e.PM2Runtime = filepath.Join(e.Tools, "pm2", "node_modules", ".bin", "pm2-runtime")
	e.PM2 = filepath.Join(e.Tools, "pm2", "node_modules", ".bin", "pm2")
	e.Hello = filepath.Join(e.Root, "bench", "apps", "hello.js")
	e.Cluster = filepath.Join(e.Root, "bench", "apps", "cluster.js")
	e.Tini = lookPath("tini-static")
	e.DumbInit = lookPath("dumb-init")
	e.Wrk = lookPath("wrk")
	e.Node = lookPath("node")
	e.Unshare = lookPath("unshare")
	for _, f := range []string{e.GM2, e.GM2Inlined, e.Ideal, e.Trivial, e.Reap, e.MinReaper, e.PM2Runtime, e.PM2, e.Hello, e.Cluster} {
		if _, err := os.Stat(f); err != nil {
			fatal(fmt.Errorf("%s missing: run bench/run, which builds and installs everything", f))
		}
	}
	// Short: PM2's unix sockets live under PM2_HOME (sun_path ≤ 107 bytes).
	// Made after the checks above, whose fatal exits would leave it.
	if e.Tmp, err = os.MkdirTemp("", "gm2b"); err != nil {
		fatal(err)
	}
	defer os.RemoveAll(e.Tmp)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logf("%v: stopping every process started", s)
		stopAll()
		os.RemoveAll(e.Tmp)
		os.Exit(130)
	}()

	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	run := func(name string) bool { return len(want) == 0 || want[name] }

	res := &Results{Params: e.P}
	res.Meta = collectMeta(e, started)
	res.Meta.Only = *only
	logf("results in %s", e.Out)
	step := func(name string, f func() error) {
		if !run(name) {
			return
		}
		t := time.Now()
		logf("== %s", name)
		if err := f(); err != nil {
			logf("%s: ERROR %v", name, err)
			res.Errors = append(res.Errors, name+": "+err.Error())
		}
		stopAll()
		logf("== %s done in %s", name, time.Since(t).Round(time.Second))
	}
	step("footprint", func() (err error) { res.Footprint, err = benchFootprint(e); return })
	step("datapath", func() (err error) { res.DataPath, err = benchDataPath(e); return })
	step("start", func() (err error) { res.Start, err = benchStart(e); return })
	step("preload", func() (err error) { res.Preload, err = benchPreload(e); return })
	step("reap", func() (err error) { res.Reap, err = benchReap(e); return })
	step("scale", func() (err error) { res.Scale, err = benchScale(e); return })
	step("reload", func() (err error) { res.Reload, err = benchReload(e); return })
	step("scrape", func() (err error) { res.Scrape, err = benchScrape(e); return })
	step("healthburst", func() (err error) { res.Health, err = benchHealthBurst(e); return })
	step("inline", func() (err error) { res.Inline, err = benchInline(e); return })
	res.Meta.Finished = time.Now().UTC().Format(time.RFC3339)
	res.Meta.Duration = time.Since(started).Round(time.Second).String()
	res.Meta.LoadAvgEnd = loadAvg()

	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		// Keep the report: it is what the run was for.
		logf("summary.json: %v", err)
	} else if err := os.WriteFile(filepath.Join(e.Out, "summary.json"), append(b, '\n'), 0o644); err != nil {
		fatal(err)
	}
	writeReport(e, res, *md)
	logf("done in %s; raw results in %s", res.Meta.Duration, e.Out)
	if len(res.Errors) > 0 {
		os.RemoveAll(e.Tmp) // os.Exit runs no deferred call
		os.Exit(1)
	}
}

// writeReport writes the report into the results directory and to md
// (default ROOT/BENCHMARKS.md; "-" = nowhere else).
func writeReport(e *Env, res *Results, md string) {
	report := renderReport(e, res)
	if err := os.WriteFile(filepath.Join(e.Out, "BENCHMARKS.md"), []byte(report), 0o644); err != nil {
		fatal(err)
	}
	if md == "" {
		md = filepath.Join(e.Root, "BENCHMARKS.md")
	}
	if md != "-" {
		if err := os.WriteFile(abs(e.Root, md), []byte(report), 0o644); err != nil {
			fatal(err)
		}
		logf("wrote %s", abs(e.Root, md))
	}
}

// rerender renders the report of an earlier run from its summary.json: for
// a change to the report's text, without measuring again.
func rerender(root, dir, md string) {
	e := &Env{}
	var err error
	if e.Root, err = filepath.Abs(root); err != nil {
		fatal(err)
	}
	e.Out = abs(e.Root, dir)
	b, err := os.ReadFile(filepath.Join(e.Out, "summary.json"))
	if err != nil {
		fatal(err)
	}
	res := &Results{}
	if err := json.Unmarshal(b, res); err != nil {
		fatal(fmt.Errorf("%s: %w", filepath.Join(e.Out, "summary.json"), err))
	}
	e.P = res.Params
	writeReport(e, res, md)
}

func abs(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

func lookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		fatal(fmt.Errorf("%s not found in PATH: run bench/run, which installs it", name))
	}
	return p
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gm2bench:", err)
	stopAll()
	os.Exit(2)
}

// Meta describes the machine and the versions.
type Meta struct {
	Date        string            `json:"date"`
	Finished    string            `json:"finished"`
	Duration    string            `json:"duration"`
	CPU         string            `json:"cpu"`
	Cores       int               `json:"cores"`
	Kernel      string            `json:"kernel"`
	MemTotalKB  int64             `json:"mem_total_kb"`
	Versions    map[string]string `json:"versions"`
	LoadAvg     string            `json:"loadavg_start"`
	LoadAvgEnd  string            `json:"loadavg_end"`
	Root        bool              `json:"root"`
	GM2Size     int64             `json:"gm2_init_bytes"`
	BuildFlags  string            `json:"gm2_init_build"`
	GitRevision string            `json:"git_revision"`
	// Only is -only: the benchmarks this run was limited to ("" for all).
	Only string `json:"only,omitempty"`
}

func collectMeta(e *Env, started time.Time) Meta {
	m := Meta{Date: started.Format(time.RFC3339), Cores: runtime.NumCPU(), Root: os.Geteuid() == 0}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.MemTotalKB = kbField("/proc/meminfo", "MemTotal")
	m.LoadAvg = loadAvg()
	if fi, err := os.Stat(e.GM2); err == nil {
		m.GM2Size = fi.Size()
	}
	m.BuildFlags = "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -gcflags=all=-l"
	ver := func(argv ...string) string {
		out, _, _ := runTool(20*time.Second, nil, argv...)
		return strings.TrimSpace(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0])
	}
	m.GitRevision = ver("git", "-C", e.Root, "describe", "--always", "--dirty")
	m.Versions = map[string]string{
		"gm2-init":  ver(e.GM2, "--version"),
		"go":        ver("go", "version"),
		"node":      ver(e.Node, "--version"),
		"pm2":       ver(e.Node, "-p", "require('"+filepath.Join(e.Tools, "pm2", "node_modules", "pm2", "package.json")+"').version"),
		"tini":      ver(e.Tini, "--version"),
		"dumb-init": ver(e.DumbInit, "--version"),
		"wrk":       ver(e.Wrk, "-v"),
		"unshare":   ver(e.Unshare, "--version"),
	}
	return m
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}
