package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// HealthBurstRun is one scenario of benchmark 8 (issue 12): kubelet-style
// probes of gm2-init's health endpoints under bursts.
type HealthBurstRun struct {
	Scenario string `json:"scenario"` // burst-N | idle-N
	Round    int    `json:"round"`
	Probes   int    `json:"probes"`
	// Lost: the connection ended (closed, reset) without an answer.
	Lost int `json:"lost"`
	// TimedOut: no answer within the client's 10 s.
	TimedOut int `json:"timed_out"`
	// Over1s: answered, but after the kubelet's default 1 s timeout.
	Over1s int            `json:"over_1s"`
	P50ms  float64        `json:"p50_ms"`
	P99ms  float64        `json:"p99_ms"`
	MaxMs  float64        `json:"max_ms"`
	Errors map[string]int `json:"errors,omitempty"`
	// Idle scenarios: the idle connections opened in all (each one the
	// server closed was reopened at once).
	IdleOpened int `json:"idle_opened,omitempty"`
	// gm2-init's own memory right after the scenario.
	RSSAfterKB int64 `json:"rss_after_kb"`
	FDsAfter   int   `json:"fds_after"`
}

// HealthBurstResult is benchmark 8.
type HealthBurstResult struct {
	Runs []HealthBurstRun `json:"runs"`
}

// healthProbeTimeout is the client's patience: long enough that a probe
// that waits is told from one that is lost.
const healthProbeTimeout = 10 * time.Second

func benchHealthBurst(e *Env) (*HealthBurstResult, error) {
	res := &HealthBurstResult{}
	for r := 0; r < e.P.HealthRounds; r++ {
		health := "127.0.0.1:" + strconv.Itoa(freePort())
		argv := []string{e.GM2, "-i", "1", "--health-addr", health, "--", e.Trivial}
		p, err := start("gm2-init", argv, nil, e.Root, fmt.Sprintf("%s/healthburst-r%d.log", e.Logs, r+1))
		if err != nil {
			return res, err
		}
		if err := waitLivez(health, 30*time.Second); err != nil {
			p.Stop(syscall.SIGTERM, 15*time.Second)
			return res, err
		}
		scenarios := []func() HealthBurstRun{
			func() HealthBurstRun { return probeBurst(health, 100) },
			func() HealthBurstRun { return probeBurst(health, 1000) },
			func() HealthBurstRun { return probesBesideIdle(health, 200, e.P.HealthKubelets, e.P.HealthProbes) },
		}
		for i := range scenarios {
			run := scenarios[(i+r)%len(scenarios)]()
			run.Round = r + 1
			m := memOf(p.Pid)
			run.RSSAfterKB, run.FDsAfter = m.RSS, m.FDs
			logf("  health %-9s r%d: %d probes, lost %d, timed out %d, over 1 s %d; p50 %.1f ms, p99 %.1f ms, max %.1f ms; RSS %d kB, fds %d %v",
				run.Scenario, r+1, run.Probes, run.Lost, run.TimedOut, run.Over1s, run.P50ms, run.P99ms, run.MaxMs, run.RSSAfterKB, run.FDsAfter, run.Errors)
			res.Runs = append(res.Runs, run)
			if !p.Alive() {
				return res, fmt.Errorf("gm2-init exited during %s", run.Scenario)
			}
		}
		p.Stop(syscall.SIGTERM, 15*time.Second)
	}
	return res, nil
}

func waitLivez(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := probeHealth(addr, "/livez", 2*time.Second)
		if err == nil && code == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("health endpoints at %s not answering 200 within %s (%d, %v)", addr, timeout, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probeHealth is one probe as the kubelet makes it: a new connection, the
// request at once, the answer, close. It returns the status and the time
// from the dial to the answer.
func probeHealth(addr, path string, timeout time.Duration) (int, time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, time.Since(t0), err
	}
	defer c.Close()
	_ = c.SetDeadline(t0.Add(timeout))
	if _, err := c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\nConnection: close\r\n\r\n")); err != nil {
		return 0, time.Since(t0), err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil {
		return 0, time.Since(t0), err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(t0), nil
}

// probeTally collects probe outcomes from many goroutines.
type probeTally struct {
	mu  sync.Mutex
	run HealthBurstRun
	lat []float64
}

func (t *probeTally) add(code int, d time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.run.Probes++
	switch {
	case err == nil && code == 200:
		ms := float64(d) / 1e6
		t.lat = append(t.lat, ms)
		if ms > 1000 {
			t.run.Over1s++
		}
		return
	case err != nil && isTimeout(err):
		t.run.TimedOut++
	default:
		t.run.Lost++
	}
	if t.run.Errors == nil {
		t.run.Errors = map[string]int{}
	}
	if err == nil {
		err = fmt.Errorf("status %d", code)
	}
	t.run.Errors[errKind(err)]++
}

func (t *probeTally) finish() HealthBurstRun {
	sort.Float64s(t.lat)
	pct := func(p float64) float64 {
		if len(t.lat) == 0 {
			return math.NaN()
		}
		return t.lat[int(math.Min(float64(len(t.lat)-1), math.Ceil(p*float64(len(t.lat)))-1))]
	}
	t.run.P50ms, t.run.P99ms = pct(0.50), pct(0.99)
	if n := len(t.lat); n > 0 {
		t.run.MaxMs = t.lat[n-1]
	}
	return t.run
}

// probeBurst releases n probes at once, each on its own connection.
func probeBurst(addr string, n int) HealthBurstRun {
	t := &probeTally{run: HealthBurstRun{Scenario: "burst-" + strconv.Itoa(n)}}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t.add(probeHealth(addr, "/livez", healthProbeTimeout))
		}()
	}
	close(start)
	wg.Wait()
	return t.finish()
}

// probesBesideIdle keeps idle connections open (each one the server closes
// is reopened at once, as a misbehaving client would) while kubelets probe
// one after the other.
func probesBesideIdle(addr string, idle, kubelets, probes int) HealthBurstRun {
	t := &probeTally{run: HealthBurstRun{Scenario: "idle-" + strconv.Itoa(idle)}}
	stop := make(chan struct{})
	var opened sync.WaitGroup
	var mu sync.Mutex
	count := 0
	var iw sync.WaitGroup
	opened.Add(idle)
	for range idle {
		iw.Add(1)
		go func() {
			defer iw.Done()
			first := true
			for {
				c, err := net.DialTimeout("tcp", addr, healthProbeTimeout)
				if first {
					opened.Done()
					first = false
				}
				if err != nil {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				mu.Lock()
				count++
				mu.Unlock()
				done := make(chan struct{})
				go func() {
					_, _ = c.Read(make([]byte, 1))
					close(done)
				}()
				select {
				case <-done:
					c.Close()
				case <-stop:
					c.Close()
					<-done
					return
				}
			}
		}()
	}
	opened.Wait()
	var kw sync.WaitGroup
	for range kubelets {
		kw.Add(1)
		go func() {
			defer kw.Done()
			for range probes {
				t.add(probeHealth(addr, "/livez", healthProbeTimeout))
			}
		}()
	}
	kw.Wait()
	close(stop)
	iw.Wait()
	run := t.finish()
	run.IdleOpened = count
	return run
}
