package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ReapRun is one run of bench/c/reap under an init that is PID 1 of a new
// PID namespace.
type ReapRun struct {
	Variant        string  `json:"variant"`
	Round          int     `json:"round"`
	Orphans        int64   `json:"orphans"`
	Batches        int     `json:"batches"`
	BatchSize      int     `json:"batch_size"`
	ReapSeconds    float64 `json:"reap_seconds"`
	OrphansPerSec  float64 `json:"orphans_per_second"`
	SlowestBatchMs float64 `json:"slowest_batch_ms"`
	CreateSeconds  float64 `json:"create_seconds"`
	ZombiesLeft    int64   `json:"zombies_left"`
	TimedOut       bool    `json:"timed_out"`
	InitExitCode   int     `json:"init_exit_code"`
	WallSeconds    float64 `json:"wall_seconds"`
}

// ReapResult is benchmark 5.
type ReapResult struct {
	Variants []string  `json:"variants"`
	Runs     []ReapRun `json:"runs"`
}

// reapVariants: minreaper (bench/minreaper) is the smallest Go init that
// reaps, the floor for an init written in Go.
var reapVariants = []string{"gm2-init", "tini", "dumb-init", "minreaper"}

func benchReap(e *Env) (*ReapResult, error) {
	res := &ReapResult{Variants: reapVariants}
	ns := []string{e.Unshare, "--pid", "--fork", "--mount-proc"}
	if os.Geteuid() != 0 {
		ns = []string{e.Unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"}
	}
	worker := []string{e.Reap, strconv.Itoa(e.P.ReapTotal), strconv.Itoa(e.P.ReapBatch)}
	for r := 0; r < e.P.ReapRounds; r++ {
		for _, name := range rotate(reapVariants, r) {
			var init []string
			switch name {
			case "gm2-init":
				init = []string{e.GM2, "--health-addr", "off", "--restart", "never", "-i", "1", "--"}
			case "tini":
				init = []string{e.Tini, "--"}
			case "dumb-init":
				init = []string{e.DumbInit}
			case "minreaper":
				init = []string{e.MinReaper}
			}
			argv := append(append(append([]string{}, ns...), init...), worker...)
			tag := fmt.Sprintf("reap-%s-r%d", name, r+1)
			p, err := start(name, argv, nil, e.Root, filepath.Join(e.Logs, tag+".log"))
			if err != nil {
				return res, err
			}
			if !p.Wait(5 * time.Minute) {
				p.Stop(syscall.SIGTERM, 10*time.Second)
				return res, fmt.Errorf("reap under %s did not finish in 5 minutes", name)
			}
			select {
			case <-p.readDone:
			case <-time.After(2 * time.Second):
			}
			run := ReapRun{Variant: name, Round: r + 1, WallSeconds: p.Exited.Sub(p.Started).Seconds()}
			if p.cmd.ProcessState != nil {
				run.InitExitCode = p.cmd.ProcessState.ExitCode()
			}
			found := false
			for _, l := range p.Lines(0) {
				if strings.HasPrefix(l.Text, `{"orphans":`) {
					if err := json.Unmarshal([]byte(l.Text), &run); err != nil {
						return res, fmt.Errorf("reap under %s: %v: %s", name, err, l.Text)
					}
					os.WriteFile(filepath.Join(e.Out, "raw", tag+".json"), []byte(l.Text+"\n"), 0o644)
					found = true
				}
			}
			run.Variant, run.Round = name, r+1
			if !found {
				return res, fmt.Errorf("reap under %s printed no result (exit %d); see %s", name, run.InitExitCode, tag+".log")
			}
			logf("  reap %-10s r%d: %d orphans reaped in %.3f s = %.0f/s, slowest batch %.1f ms, %d zombies left, init exit %d",
				name, r+1, run.Orphans, run.ReapSeconds, run.OrphansPerSec, run.SlowestBatchMs, run.ZombiesLeft, run.InitExitCode)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}
