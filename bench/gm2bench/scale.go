package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ScaleRun is gm2-init with N trivial workers (bench/c/trivial: READY=1,
// then sleep).
type ScaleRun struct {
	N               int     `json:"n"`
	Round           int     `json:"round"`
	AllUpMs         float64 `json:"all_up_ms"` // exec → N "worker ready" lines
	Mem             Mem     `json:"mem"`       // idle, all up
	ReloadMs        float64 `json:"reload_ms"` // SIGHUP → "reload finished"
	ReloadLoggedMs  float64 `json:"reload_logged_ms"`
	ReloadResult    string  `json:"reload_result"`
	MemAfterReload  Mem     `json:"mem_after_reload"`
	WorkersReplaced int     `json:"workers_replaced"`
}

// ScaleResult is benchmark 6.
type ScaleResult struct {
	Runs []ScaleRun `json:"runs"`
}

func benchScale(e *Env) (*ScaleResult, error) {
	res := &ScaleResult{}
	for r := 0; r < e.P.ScaleRounds; r++ {
		ns := e.P.ScaleNs
		if r%2 == 1 { // interleave: 1 8 64, 64 8 1, …
			ns = append([]int(nil), ns...)
			for i, j := 0, len(ns)-1; i < j; i, j = i+1, j-1 {
				ns[i], ns[j] = ns[j], ns[i]
			}
		}
		for _, n := range ns {
			run, err := e.scaleOnce(n, r+1)
			if err != nil {
				return res, err
			}
			logf("  scale N=%-3d r%d: all up %.1f ms, RSS %d kB, PSS %d kB, fds %d, threads %d; reload %.1f ms (%s); after reload RSS %d kB, fds %d",
				n, r+1, run.AllUpMs, run.Mem.RSS, run.Mem.PSS, run.Mem.FDs, run.Mem.Threads, run.ReloadMs, run.ReloadResult,
				run.MemAfterReload.RSS, run.MemAfterReload.FDs)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

func (e *Env) scaleOnce(n, round int) (ScaleRun, error) {
	run := ScaleRun{N: n, Round: round}
	addr := "127.0.0.1:" + strconv.Itoa(freePort())
	health := "127.0.0.1:" + strconv.Itoa(freePort())
	argv := []string{e.GM2, "-i", strconv.Itoa(n), "--listen", addr, "--health-addr", health, "--", e.Trivial}
	p, err := start("gm2-init", argv, nil, e.Root, filepath.Join(e.Logs, fmt.Sprintf("scale-n%d-r%d.log", n, round)))
	if err != nil {
		return run, err
	}
	defer p.Stop(syscall.SIGTERM, 20*time.Second)
	ready := func(s string) bool { return strings.Contains(s, `"message":"worker ready"`) }
	l, err := p.WaitLines(0, ready, n, 60*time.Second)
	if err != nil {
		return run, err
	}
	run.AllUpMs = float64(l.At.Sub(p.Started)) / 1e6
	time.Sleep(time.Second)
	run.Mem = memOf(p.Pid)

	mark := p.Mark()
	t0 := time.Now()
	if err := p.Signal(syscall.SIGHUP); err != nil {
		return run, err
	}
	l, err = p.WaitLines(mark, func(s string) bool { return strings.Contains(s, `"message":"reload finished"`) }, 1, 5*time.Minute)
	if err != nil {
		return run, err
	}
	run.ReloadMs = float64(l.At.Sub(t0)) / 1e6
	var fin struct {
		Result   string  `json:"result"`
		Duration float64 `json:"duration"`
		Replaced int     `json:"replaced"`
	}
	json.Unmarshal([]byte(l.Text), &fin)
	run.ReloadResult, run.ReloadLoggedMs, run.WorkersReplaced = fin.Result, fin.Duration, fin.Replaced
	// The last old worker is stopped after "reload finished"; let it go.
	stopped := func(s string) bool { return strings.Contains(s, `"message":"worker exited"`) }
	if _, err := p.WaitLines(mark, stopped, n, 30*time.Second); err != nil {
		logf("warning: %v", err)
	}
	time.Sleep(time.Second)
	run.MemAfterReload = memOf(p.Pid)
	return run, nil
}
