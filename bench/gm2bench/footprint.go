package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// FootprintSample is one init process, idle with 2 workers.
type FootprintSample struct {
	Variant string `json:"variant"`
	Round   int    `json:"round"`
	Mem     Mem    `json:"mem_idle"`
	// After the health endpoints were asked (gm2-init only).
	MemAfterProbes *Mem `json:"mem_after_probes,omitempty"`

	WindowS        float64 `json:"window_s"`
	Switches       int64   `json:"switches"`
	SwitchesPerSec float64 `json:"switches_per_s"`
	CPUNs          int64   `json:"cpu_ns"`
	CPUPercent     float64 `json:"cpu_percent"`
	Threads        int     `json:"threads"`
}

// FootprintResult covers benchmarks 1 (footprint) and 2 (idle cost): the
// inits run side by side, so the idle window is the same for all.
type FootprintResult struct {
	Sizes   map[string]int64  `json:"sizes_bytes"`
	Samples []FootprintSample `json:"samples"`
}

// gm2-init/max-memory is gm2-init with --max-memory-restart set (far above
// what the workers use) and the default --memory-check-interval of 30 s: its
// idle wakeups, next to the plain one's, are the cost of the flag at rest
// (issue 19).
var footprintVariants = []string{"gm2-init", "gm2-init/max-memory", "tini", "dumb-init", "pm2-runtime"}

func benchFootprint(e *Env) (*FootprintResult, error) {
	res := &FootprintResult{Sizes: map[string]int64{}}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	res.Sizes["gm2-init"] = size(e.GM2)
	res.Sizes["tini-static"] = size(e.Tini)
	res.Sizes["dumb-init"] = size(e.DumbInit)
	res.Sizes["node"] = size(e.Node)
	res.Sizes["pm2 (node_modules)"] = dirSize(filepath.Join(e.Tools, "pm2", "node_modules"))

	for r := 0; r < e.P.IdleRounds; r++ {
		order := rotate(footprintVariants, r)
		logf("footprint+idle round %d/%d: %v side by side, 2 idle workers each", r+1, e.P.IdleRounds, order)
		procs := map[string]*Proc{}
		vars := map[string]variant{}
		stop := func() {
			for _, p := range procs {
				p.Stop(syscall.SIGTERM, 15*time.Second)
			}
		}
		first := time.Now()
		for _, name := range order {
			v := e.nodeVariant(name, 2)
			p, err := e.launch(v, 2, fmt.Sprintf("footprint-%s-r%d", name, r+1))
			if err != nil {
				stop()
				return res, err
			}
			procs[name], vars[name] = p, v
		}
		// One-shot timers (gm2-init's --listen-timeout, 10 s after a
		// worker starts) and start-up work are over after the settle time.
		if d := time.Until(first.Add(time.Duration(e.P.IdleSettle * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		samples := map[string]*FootprintSample{}
		a0 := map[string]Activity{}
		for _, name := range order {
			pid := procs[name].Pid
			samples[name] = &FootprintSample{Variant: name, Round: r + 1, Mem: memOf(pid)}
			a0[name] = activityOf(pid)
		}
		t0 := time.Now()
		time.Sleep(time.Duration(e.P.IdleWindow * float64(time.Second)))
		win := time.Since(t0).Seconds()
		for _, name := range order {
			a1 := activityOf(procs[name].Pid)
			s := samples[name]
			s.WindowS = win
			s.Switches = a1.Switches - a0[name].Switches
			s.SwitchesPerSec = float64(s.Switches) / win
			s.CPUNs = a1.CPUNs - a0[name].CPUNs
			s.CPUPercent = float64(s.CPUNs) / (win * 1e9) * 100
			s.Threads = a1.Threads
			if !procs[name].Alive() {
				stop()
				return res, fmt.Errorf("%s exited during the idle window", name)
			}
		}
		// What a probed gm2-init costs after hours of kubelet probes and
		// Prometheus scrapes: their garbage, not a few requests, is what
		// decides the steady-state heap.
		if v := vars["gm2-init"]; v.health != "" {
			for i := 0; i < probeRounds; i++ {
				for _, path := range []string{"/livez", "/readyz", "/status", "/metrics"} {
					if _, err := httpGet("http://"+v.health+path, 2*time.Second, false); err != nil {
						logf("warning: gm2-init %s: %v", path, err)
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
			m := memOf(procs["gm2-init"].Pid)
			samples["gm2-init"].MemAfterProbes = &m
		}
		for _, name := range footprintVariants {
			res.Samples = append(res.Samples, *samples[name])
			s := samples[name]
			logf("  %-19s RSS %6d kB  PSS %6d kB  threads %2d  %.2f switches/s  CPU %.4f%%",
				name, s.Mem.RSS, s.Mem.PSS, s.Threads, s.SwitchesPerSec, s.CPUPercent)
		}
		stop()
	}
	return res, nil
}

// probeRounds is how many times the footprint benchmark asks each health
// endpoint: 4 × 2000 requests are about 5 hours of a liveness and a
// readiness probe every 10 s plus a scrape every 15 s.
const probeRounds = 2000

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
