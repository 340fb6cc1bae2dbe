package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"time"
)

// DataRun is one variant in one round: wrk with keep-alive, then wrk with a
// new connection per request, against the same running workers.
type DataRun struct {
	Variant   string    `json:"variant"`
	Round     int       `json:"round"`
	KeepAlive WrkResult `json:"keepalive"`
	NewConn   WrkResult `json:"new_connection"`
}

// DataPathResult is benchmark 3.
type DataPathResult struct {
	Variants []string  `json:"variants"`
	Runs     []DataRun `json:"runs"`
}

func dataVariants(quick bool) []string {
	return []string{"gm2-init", "ideal", "pm2-runtime", "node-cluster"}
}

func benchDataPath(e *Env) (*DataPathResult, error) {
	res := &DataPathResult{Variants: dataVariants(e.P.Quick)}
	dur := time.Duration(e.P.DataDur * float64(time.Second))
	warm := time.Duration(e.P.DataWarm * float64(time.Second))
	// Every launcher runs for the whole benchmark, its workers idle while
	// another one is measured: the rounds are then short slices A B C D,
	// A B C D, … close together in time, so that the noise of a shared
	// machine hits all alike, and no round pays for a start.
	procs := map[string]*Proc{}
	vars := map[string]variant{}
	defer func() {
		for _, p := range procs {
			p.Stop(syscall.SIGTERM, 15*time.Second)
		}
	}()
	for _, name := range res.Variants {
		v := e.nodeVariant(name, 2)
		p, err := e.launch(v, 2, "datapath-"+name)
		if err != nil {
			return res, err
		}
		procs[name], vars[name] = p, v
	}
	for _, name := range res.Variants {
		url := "http://" + vars[name].addr + "/"
		if _, err := runWrk(e.Wrk, url, 2, e.P.DataKAConn, warm, false, ""); err != nil {
			return res, fmt.Errorf("%s: warm-up: %w", name, err)
		}
		if _, err := runWrk(e.Wrk, url, 2, e.P.DataNCConn, warm, true, ""); err != nil {
			return res, fmt.Errorf("%s: warm-up: %w", name, err)
		}
	}
	for r := 0; r < e.P.DataRounds; r++ {
		order := rotate(res.Variants, r)
		logf("data path round %d/%d: %v", r+1, e.P.DataRounds, order)
		for _, name := range order {
			if !procs[name].Alive() {
				return res, fmt.Errorf("%s exited", name)
			}
			url := "http://" + vars[name].addr + "/"
			tag := fmt.Sprintf("datapath-%s-r%d", name, r+1)
			raw := func(s string) string { return filepath.Join(e.Out, "raw", tag+"-"+s+".txt") }
			run := DataRun{Variant: name, Round: r + 1}
			var err error
			if run.KeepAlive, err = runWrk(e.Wrk, url, 2, e.P.DataKAConn, dur, false, raw("keepalive")); err == nil {
				run.NewConn, err = runWrk(e.Wrk, url, 2, e.P.DataNCConn, dur, true, raw("newconn"))
			}
			if err != nil {
				return res, fmt.Errorf("%s: %w", name, err)
			}
			logf("  %-13s keep-alive %8.0f req/s p99 %6.2f ms | new conn %7.0f req/s p99 %6.2f ms | errors %d/%d",
				name, run.KeepAlive.RPS, run.KeepAlive.P99ms, run.NewConn.RPS, run.NewConn.P99ms,
				run.KeepAlive.SocketErrors+run.KeepAlive.Non2xx, run.NewConn.SocketErrors+run.NewConn.Non2xx)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

// ratios returns, round by round, metric(variant)/metric(base).
func (d *DataPathResult) ratios(variant, base string, metric func(DataRun) float64) []float64 {
	byRound := map[int]map[string]DataRun{}
	for _, r := range d.Runs {
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]DataRun{}
		}
		byRound[r.Round][r.Variant] = r
	}
	var out []float64
	for _, m := range byRound {
		a, ok1 := m[variant]
		b, ok2 := m[base]
		if ok1 && ok2 && metric(b) > 0 {
			out = append(out, metric(a)/metric(b))
		}
	}
	return out
}

func (d *DataPathResult) values(variant string, metric func(DataRun) float64) []float64 {
	var out []float64
	for _, r := range d.Runs {
		if r.Variant == variant {
			out = append(out, metric(r))
		}
	}
	return out
}
