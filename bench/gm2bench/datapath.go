package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
//
// Runs compare every launcher in slices of DataDur. Pairs decide the
// targets: gm2-init and the ideal launcher in slices of PairDur, many
// rounds, next to ideal-2, a second ideal launcher identical to the first,
// whose ratio to it can only be the machine's noise; and gm2-init with the
// port shared on demand next to gm2-init with --listen (issue 14: the same
// data path, within that noise). On a shared machine the
// throughput of one slice differs from the next by ±10 % or more whatever
// runs; short slices close together and many rounds make the median ratio
// precise, and the control says how precise.
//
// With two CPUs or more, wrk runs on the first one with one thread and the
// launchers on the others: a load generator and servers that compete for
// the same CPUs make each slice's throughput depend on how the scheduler
// happened to place them. Each launcher is warmed up for DataWarm, long
// enough for V8 to optimize the app, before any slice counts.
type DataPathResult struct {
	Pinning      string    `json:"pinning"`
	Variants     []string  `json:"variants"`
	Runs         []DataRun `json:"runs"`
	PairVariants []string  `json:"pair_variants"`
	Pairs        []DataRun `json:"pairs"`
}

func benchDataPath(e *Env) (*DataPathResult, error) {
	res := &DataPathResult{
		Variants:     []string{"gm2-init", "gm2-init/on-demand", "ideal", "pm2-runtime", "node-cluster"},
		PairVariants: []string{"gm2-init", "gm2-init/on-demand", "ideal", "ideal-2"},
	}
	serverCPUs, loadCPU, threads := cpuSplit()
	wrk, pin := []string{e.Wrk}, []string(nil)
	if ts, err := exec.LookPath("taskset"); err == nil && serverCPUs != "" {
		wrk, pin = []string{ts, "-c", loadCPU, e.Wrk}, []string{ts, "-c", serverCPUs}
		res.Pinning = fmt.Sprintf("wrk on CPU %s with 1 thread, the launchers and their workers on CPU %s", loadCPU, serverCPUs)
	} else {
		threads = 2
	}

	// phase runs rounds of the launchers names, all started at once and
	// warmed up, their workers idle while another one is measured: the
	// rounds are then short slices A B C, A B C, … close together in time,
	// so that the noise of a shared machine hits all alike, and no round
	// pays for a start. Only the launchers of the phase run: pm2-runtime's
	// master, idle, still wakes 16 times a second.
	phase := func(names []string, rounds int, dur time.Duration, kind string) ([]DataRun, error) {
		procs := map[string]*Proc{}
		vars := map[string]variant{}
		defer func() {
			for _, p := range procs {
				p.Stop(syscall.SIGTERM, 15*time.Second)
			}
		}()
		for _, name := range names {
			v := e.nodeVariant(name, 2)
			v.argv = append(append([]string{}, pin...), v.argv...)
			p, err := e.launch(v, 2, "datapath-"+kind+"-"+fileSafe(name))
			if err != nil {
				return nil, err
			}
			procs[name], vars[name] = p, v
		}
		warm := seconds(e.P.DataWarm)
		for _, name := range names {
			url := "http://" + vars[name].addr + "/"
			if _, err := runWrk(wrk, url, threads, e.P.DataKAConn, warm, false, ""); err != nil {
				return nil, fmt.Errorf("%s: warm-up: %w", name, err)
			}
			if _, err := runWrk(wrk, url, threads, e.P.DataNCConn, warm, true, ""); err != nil {
				return nil, fmt.Errorf("%s: warm-up: %w", name, err)
			}
		}
		var runs []DataRun
		for r := 0; r < rounds; r++ {
			order := rotate(names, r)
			logf("data path %s round %d/%d: %v", kind, r+1, rounds, order)
			for _, name := range order {
				if !procs[name].Alive() {
					return runs, fmt.Errorf("%s exited", name)
				}
				url := "http://" + vars[name].addr + "/"
				tag := fmt.Sprintf("datapath-%s-%s%d", fileSafe(name), kind, r+1)
				raw := func(s string) string { return filepath.Join(e.Out, "raw", tag+"-"+s+".txt") }
				run := DataRun{Variant: name, Round: r + 1}
				var err error
				if run.KeepAlive, err = runWrk(wrk, url, threads, e.P.DataKAConn, dur, false, raw("keepalive")); err == nil {
					run.NewConn, err = runWrk(wrk, url, threads, e.P.DataNCConn, dur, true, raw("newconn"))
				}
				if err != nil {
					return runs, fmt.Errorf("%s: %w", name, err)
				}
				logf("  %-13s keep-alive %8.0f req/s p99 %6.2f ms | new conn %7.0f req/s p99 %6.2f ms | errors %d/%d",
					name, run.KeepAlive.RPS, run.KeepAlive.P99ms, run.NewConn.RPS, run.NewConn.P99ms,
					run.KeepAlive.SocketErrors+run.KeepAlive.Non2xx, run.NewConn.SocketErrors+run.NewConn.Non2xx)
				runs = append(runs, run)
			}
		}
		return runs, nil
	}
	var err error
	if res.Pairs, err = phase(res.PairVariants, e.P.PairRounds, seconds(e.P.PairDur), "pair"); err != nil {
		return res, err
	}
	res.Runs, err = phase(res.Variants, e.P.DataRounds, seconds(e.P.DataDur), "all")
	return res, err
}

// cpuSplit returns the CPUs of this process's affinity mask as two sets for
// taskset: the first CPU for the load generator, the others for the
// servers; "" when there are fewer than two. threads is wrk's thread count.
func cpuSplit() (servers, load string, threads int) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", "", 2
	}
	var cpus []string
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, strconv.Itoa(i))
		}
	}
	if len(cpus) < 2 {
		return "", "", 2
	}
	return strings.Join(cpus[1:], ","), cpus[0], 1
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// paired is one variant's measurement in one round, which ratios pairs
// with another variant's of the same round.
type paired interface {
	pair() (round int, variant string)
}

func (r DataRun) pair() (int, string) { return r.Round, r.Variant }

// ratios returns, round by round, metric(variant)/metric(base).
func ratios[R paired](runs []R, variant, base string, metric func(R) float64) []float64 {
	byRound := map[int]map[string]R{}
	for _, r := range runs {
		round, v := r.pair()
		if byRound[round] == nil {
			byRound[round] = map[string]R{}
		}
		byRound[round][v] = r
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

// values returns metric of every round of variant.
func values[R paired](runs []R, variant string, metric func(R) float64) []float64 {
	var out []float64
	for _, r := range runs {
		if _, v := r.pair(); v == variant {
			out = append(out, metric(r))
		}
	}
	return out
}
