package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// ReloadRun is R rolling reloads of 2 Node workers under load.
type ReloadRun struct {
	Variant   string     `json:"variant"`
	Mode      string     `json:"mode"` // keepalive | newconn
	Round     int        `json:"round"`
	Reloads   int        `json:"reloads"`
	Failed    int        `json:"reloads_failed"`
	Durations []float64  `json:"reload_ms"`
	Load      LoadResult `json:"load"`
}

// ReloadResult is benchmark 7.
type ReloadResult struct {
	Runs []ReloadRun `json:"runs"`
}

var reloadVariants = []string{"gm2-init", "pm2-runtime"}

func benchReload(e *Env) (*ReloadResult, error) {
	res := &ReloadResult{}
	for r := 0; r < e.P.ReloadRounds; r++ {
		for _, mode := range []string{"keepalive", "newconn"} {
			for _, name := range rotate(reloadVariants, r) {
				run, err := e.reloadOnce(name, mode, r+1)
				if err != nil {
					return res, err
				}
				s := summarize(run.Durations)
				logf("  reload %-11s %-9s r%d: %d reloads (%d failed), median %.0f ms, max %.0f ms; requests ok %d, failed %d, hung %d %v",
					name, mode, r+1, run.Reloads, run.Failed, s.Median, s.Max, run.Load.OK, run.Load.Failed, run.Load.Hung, run.Load.Errors)
				res.Runs = append(res.Runs, run)
			}
		}
	}
	return res, nil
}

func (e *Env) reloadOnce(name, mode string, round int) (ReloadRun, error) {
	run := ReloadRun{Variant: name, Mode: mode, Round: round}
	v := e.nodeVariant(name, 2)
	p, err := e.launch(v, 2, fmt.Sprintf("reload-%s-%s-r%d", name, mode, round))
	if err != nil {
		return run, err
	}
	defer p.Stop(syscall.SIGTERM, 20*time.Second)
	load := startLoad("http://"+v.addr+"/", e.P.ReloadClients, mode == "newconn", 10*time.Second)
	time.Sleep(time.Second)
	for i := 0; i < e.P.ReloadCount; i++ {
		ms, ok, err := e.reloadOne(v, p)
		if err != nil {
			load.Stop()
			return run, err
		}
		run.Reloads++
		if !ok {
			run.Failed++
		}
		run.Durations = append(run.Durations, ms)
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(time.Second)
	run.Load = load.Stop()
	return run, nil
}

// reloadOne does one rolling reload and returns its duration as the
// operator sees it: SIGHUP until gm2-init logs "reload finished", or the
// run time of `pm2 reload`.
func (e *Env) reloadOne(v variant, p *Proc) (float64, bool, error) {
	switch v.name {
	case "gm2-init":
		mark := p.Mark()
		t0 := time.Now()
		if err := p.Signal(syscall.SIGHUP); err != nil {
			return 0, false, err
		}
		l, err := p.WaitLines(mark, func(s string) bool { return strings.Contains(s, `"message":"reload finished"`) }, 1, 2*time.Minute)
		if err != nil {
			return 0, false, err
		}
		var fin struct {
			Result string `json:"result"`
		}
		json.Unmarshal([]byte(l.Text), &fin)
		return float64(l.At.Sub(t0)) / 1e6, fin.Result == "ok", nil
	case "pm2-runtime":
		out, d, err := runTool(2*time.Minute, []string{"PM2_HOME=" + v.pm2Home}, e.PM2, "reload", "hello")
		if err != nil {
			logf("warning: pm2 reload: %v: %s", err, strings.TrimSpace(out))
		}
		return float64(d) / 1e6, err == nil, nil
	}
	return 0, false, fmt.Errorf("no reload for %s", v.name)
}
