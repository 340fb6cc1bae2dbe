package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gm2-init/gm2-init/internal/procfs"
)

// ScrapeRun is gm2-init with N workers, each a small process tree
// (`sh -c 'trivial; :'`: the shell stays as the worker, trivial below it, as
// under `npm start`), scraped through its health endpoints.
type ScrapeRun struct {
	Round     int `json:"round"`
	Workers   int `json:"workers"`
	Processes int `json:"processes"` // in every worker tree, summed, as /proc shows them

	// Cold: each request at least usageMaxAge (1 s) after the previous, so
	// that gm2-init reads every tree from /proc for it, as a Prometheus
	// scrape every 15 s does.
	ColdMetricsMs []float64 `json:"cold_metrics_ms"`
	ColdStatusMs  []float64 `json:"cold_status_ms"`
	// Burst: back-to-back requests, alternately /metrics and /status; all
	// but about one per second reuse the last read.
	BurstRequests int     `json:"burst_requests"`
	BurstMs       float64 `json:"burst_median_ms"`
	BurstSeconds  float64 `json:"burst_seconds"`
	MemBefore     Mem     `json:"mem_before"`
	MemAfterBurst Mem     `json:"mem_after_burst"`
	MemAfterCold  Mem     `json:"mem_after_cold"`

	// The /proc read alone, done by this driver with gm2-init's code
	// (procfs.ReadTrees over the N worker pids): what a cold scrape adds.
	ReadTreesMs []float64 `json:"read_trees_ms"`
	// The same trees with PSS instead: one smaps_rollup per process.
	ReadPSSMs []float64 `json:"read_pss_ms"`
}

// PSSCost compares reading one process's RSS (stat) with its PSS
// (smaps_rollup) for processes of growing resident size.
type PSSCost struct {
	ResidentMB int     `json:"resident_mb"` // the process's RSS when measured
	Target     int     `json:"target_mb"`   // what it was asked to allocate
	StatUs     float64 `json:"stat_median_us"`
	PSSUs      float64 `json:"smaps_rollup_median_us"`
}

// ScrapeResult is benchmark 8.
type ScrapeResult struct {
	Runs []ScrapeRun `json:"runs"`
	PSS  []PSSCost   `json:"pss_cost"`
}

func benchScrape(e *Env) (*ScrapeResult, error) {
	res := &ScrapeResult{}
	for r := 0; r < e.P.ScrapeRounds; r++ {
		run, err := e.scrapeOnce(e.P.ScrapeWorkers, r+1)
		if err != nil {
			return res, err
		}
		logf("  scrape N=%d (%d processes) r%d: cold /metrics %s ms, /status %s ms; read of every tree %s ms (PSS %s ms); %d burst requests %.2f ms each; RSS %d → %d kB after the burst, %d kB after the cold scrapes",
			run.Workers, run.Processes, run.Round, cell(summarize(run.ColdMetricsMs), 2), cell(summarize(run.ColdStatusMs), 2),
			cell(summarize(run.ReadTreesMs), 2), cell(summarize(run.ReadPSSMs), 2), run.BurstRequests, run.BurstMs,
			run.MemBefore.RSS, run.MemAfterBurst.RSS, run.MemAfterCold.RSS)
		res.Runs = append(res.Runs, run)
	}
	for _, mb := range e.P.PSSSizesMB {
		c, err := e.pssCost(mb)
		if err != nil {
			return res, err
		}
		logf("  RSS vs PSS, a %d MB process: stat %.1f µs, smaps_rollup %.1f µs", c.ResidentMB, c.StatUs, c.PSSUs)
		res.PSS = append(res.PSS, c)
	}
	return res, nil
}

// startTrees starts the gm2-init bin with n workers, each a small process
// tree (sh, trivial below it), on a port and a health address of their own,
// and returns once every worker is ready (its log line), with the health
// address.
func (e *Env) startTrees(name, bin string, n int, logName string) (*Proc, string, error) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort())
	health := "127.0.0.1:" + strconv.Itoa(freePort())
	argv := []string{bin, "-i", strconv.Itoa(n), "--listen", addr, "--health-addr", health, "--",
		"sh", "-c", `"$0"; :`, e.Trivial}
	p, err := start(name, argv, nil, e.Root, filepath.Join(e.Logs, logName))
	if err != nil {
		return nil, "", err
	}
	ready := func(s string) bool { return strings.Contains(s, `"message":"worker ready"`) }
	if _, err := p.WaitLines(0, ready, n, 2*time.Minute); err != nil {
		p.Stop(syscall.SIGTERM, 30*time.Second)
		return nil, "", err
	}
	return p, health, nil
}

func (e *Env) scrapeOnce(n, round int) (ScrapeRun, error) {
	run := ScrapeRun{Round: round, Workers: n}
	p, health, err := e.startTrees("gm2-init", e.GM2, n, fmt.Sprintf("scrape-n%d-r%d.log", n, round))
	if err != nil {
		return run, err
	}
	defer p.Stop(syscall.SIGTERM, 30*time.Second)
	time.Sleep(time.Second)
	run.MemBefore = memOf(p.Pid)
	base := "http://" + health

	pids, err := workerPids(base)
	if err != nil {
		return run, err
	}
	if len(pids) != n {
		return run, fmt.Errorf("/status lists %d workers, want %d", len(pids), n)
	}

	get := func(path string) (float64, string, error) {
		t0 := time.Now()
		body, err := httpGet(base+path, 10*time.Second, false)
		return float64(time.Since(t0)) / 1e6, body, err
	}
	// Burst first, then the cold scrapes: the RSS after the burst is the
	// one after 1,000 scrapes.
	t0 := time.Now()
	var burst []float64
	for i := 0; i < e.P.ScrapeBurst; i++ {
		path := "/metrics"
		if i%2 == 1 {
			path = "/status"
		}
		ms, _, err := get(path)
		if err != nil {
			return run, fmt.Errorf("burst %s: %w", path, err)
		}
		burst = append(burst, ms)
	}
	run.BurstSeconds = time.Since(t0).Seconds()
	run.BurstRequests = len(burst)
	run.BurstMs = summarize(burst).Median
	time.Sleep(200 * time.Millisecond)
	run.MemAfterBurst = memOf(p.Pid)

	for i := 0; i < e.P.ScrapeCold; i++ {
		for _, path := range []string{"/metrics", "/status"} {
			time.Sleep(1100 * time.Millisecond) // past gm2-init's 1 s reuse of a read
			ms, body, err := get(path)
			if err != nil {
				return run, fmt.Errorf("cold %s: %w", path, err)
			}
			if path == "/metrics" {
				run.ColdMetricsMs = append(run.ColdMetricsMs, ms)
				if !strings.Contains(body, "gm2_worker_processes{") {
					return run, fmt.Errorf("/metrics has no gm2_worker_processes series")
				}
			} else {
				run.ColdStatusMs = append(run.ColdStatusMs, ms)
			}
		}
	}
	run.MemAfterCold = memOf(p.Pid)

	// The read alone, in this process, with gm2-init's code.
	for i := 0; i < e.P.ScrapeReads; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		t := time.Now()
		trees := procfs.ReadTrees(ctx, "/proc", pids)
		run.ReadTreesMs = append(run.ReadTreesMs, float64(time.Since(t))/1e6)
		cancel()
		if i == 0 {
			for _, tr := range trees {
				if tr.Err != nil || tr.Stats.Partial {
					return run, fmt.Errorf("tree of %d: %v (partial %v)", tr.Pid, tr.Err, tr.Stats.Partial)
				}
				run.Processes += tr.Stats.Processes
			}
		}
	}
	all := descendantsOf(pids)
	for i := 0; i < e.P.ScrapeReads; i++ {
		t := time.Now()
		for _, pid := range all {
			if _, err := procfs.ReadPSS("/proc", pid); err != nil {
				return run, err
			}
		}
		run.ReadPSSMs = append(run.ReadPSSMs, float64(time.Since(t))/1e6)
	}
	return run, nil
}

// workerPids asks /status for the pid of every worker.
func workerPids(base string) ([]int, error) {
	body, err := httpGet(base+"/status", 10*time.Second, false)
	if err != nil {
		return nil, err
	}
	var st struct {
		Slots []struct {
			Workers []struct {
				Pid int `json:"pid"`
			} `json:"workers"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return nil, fmt.Errorf("/status: %w", err)
	}
	var pids []int
	for _, s := range st.Slots {
		for _, w := range s.Workers {
			pids = append(pids, w.Pid)
		}
	}
	return pids, nil
}

// descendantsOf lists the workers and everything below them.
func descendantsOf(pids []int) []int {
	var all []int
	for _, p := range pids {
		all = append(all, p)
		for _, d := range descendants(p) {
			all = append(all, d.pid)
		}
	}
	return all
}

// pssCost starts a Node process holding mb MB and times reading its RSS and
// its PSS, alternately.
func (e *Env) pssCost(mb int) (PSSCost, error) {
	c := PSSCost{Target: mb}
	script := fmt.Sprintf("const k=[];for(let i=0;i<%d;i++)k.push(Buffer.alloc(1<<20,1));console.log('ready');setInterval(()=>k.length,1e6)", mb)
	p, err := start("node-"+strconv.Itoa(mb), []string{e.Node, "-e", script}, nil, e.Root, filepath.Join(e.Logs, fmt.Sprintf("pss-%dmb.log", mb)))
	if err != nil {
		return c, err
	}
	defer p.Stop(syscall.SIGTERM, 10*time.Second)
	if _, err := p.WaitLines(0, func(s string) bool { return s == "ready" }, 1, time.Minute); err != nil {
		return c, err
	}
	c.ResidentMB = int(memOf(p.Pid).RSS / 1024)
	var st, pss []float64
	for i := 0; i < 200; i++ {
		t := time.Now()
		if _, err := procfs.TreeStats("/proc", p.Pid); err != nil {
			return c, err
		}
		st = append(st, float64(time.Since(t))/1e3)
		t = time.Now()
		if _, err := procfs.ReadPSS("/proc", p.Pid); err != nil {
			return c, err
		}
		pss = append(pss, float64(time.Since(t))/1e3)
	}
	c.StatUs, c.PSSUs = summarize(st).Median, summarize(pss).Median
	return c, nil
}
