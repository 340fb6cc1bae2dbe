package main

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StartRun is one start of a variant with 2 workers; times in ms from the
// moment the driver forked to exec it.
type StartRun struct {
	Variant       string `json:"variant"`
	Round         int    `json:"round"`
	ExecMs        millis `json:"exec_ms"`           // fork+exec done (exec.Cmd.Start returned)
	AcceptMs      millis `json:"accept_ms"`         // first TCP connect to the port succeeded
	FirstResponse millis `json:"first_response_ms"` // first HTTP 200
	AllServingMs  millis `json:"all_serving_ms"`    // both workers have answered
	InitReadyMs   millis `json:"init_ready_ms"`     // the init says both are ready (gm2-init "worker ready", pm2 "online"); NaN = no such signal
}

// StartResult is benchmark 4.
type StartResult struct {
	Variants []string   `json:"variants"`
	Runs     []StartRun `json:"runs"`
}

var startVariants = []string{"gm2-init", "gm2-init/on-demand", "ideal", "pm2-runtime", "gm2-init/fd3"}

// fd3Rounds bounds the rounds of gm2-init/fd3, whose init-ready time can
// be the whole --listen-timeout (10 s).
const fd3Rounds = 3

// connects reports whether a TCP connection to 127.0.0.1:port is accepted,
// with a blocking connect(2) (see the prober in startOnce).
func connects(port int) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}) == nil
}

func benchStart(e *Env) (*StartResult, error) {
	res := &StartResult{Variants: startVariants}
	for r := 0; r < e.P.StartRounds; r++ {
		order := rotate(startVariants, r)
		for _, name := range order {
			if name == "gm2-init/fd3" && r >= fd3Rounds {
				continue
			}
			run, err := e.startOnce(name, r+1)
			if err != nil {
				return res, err
			}
			logf("  start %-12s r%d: exec %.2f ms, port accepts %.2f ms, first response %.1f ms, both serving %.1f ms, init-ready %.1f ms",
				name, r+1, run.ExecMs, run.AcceptMs, run.FirstResponse, run.AllServingMs, run.InitReadyMs)
			res.Runs = append(res.Runs, run)
			time.Sleep(300 * time.Millisecond)
		}
	}
	return res, nil
}

func (e *Env) startOnce(name string, round int) (StartRun, error) {
	run := StartRun{Variant: name, Round: round, InitReadyMs: millis(math.NaN())}
	v := e.nodeVariant(name, 2)
	var acceptAt time.Time
	var wg sync.WaitGroup
	stopProbe := make(chan struct{})
	accepting := make(chan struct{})
	wg.Add(1)
	// The prober starts before the fork. It tries to connect every 100 µs
	// for the first 10 ms, which resolves a port bound before the workers
	// start (--listen, the ideal launcher), then every 1 ms. It must cost
	// next to nothing while the port is refused: a launcher that binds late
	// (on demand, pm2-runtime) is measured while 2 Node processes start on
	// 2 cores, and every bit of CPU the prober takes is taken from them
	// (bench/analysis.md, "exec → both serving"). So each attempt is a raw
	// blocking connect on a thread of its own (on loopback it is answered
	// at once, a refusal included) and the wait between attempts a
	// nanosleep: no goroutine handoff, no poller, no timer, about 10 µs of
	// CPU per attempt instead of net.Dial's several times that.
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		began := time.Now()
		for {
			if connects(v.port) {
				acceptAt = time.Now()
				close(accepting)
				return
			}
			every := time.Millisecond
			if time.Since(began) < 10*time.Millisecond {
				every = 100 * time.Microsecond
			}
			select {
			case <-stopProbe:
				return
			default:
			}
			ts := unix.NsecToTimespec(every.Nanoseconds())
			_ = unix.Nanosleep(&ts, nil)
		}
	}()
	p, err := start(name, v.argv, v.env, e.Root, fmt.Sprintf("%s/start-%s-r%d.log", e.Logs, fileSafe(name), round))
	if err != nil {
		close(stopProbe)
		wg.Wait()
		return run, err
	}
	defer p.Stop(syscall.SIGTERM, 15*time.Second)
	ms := func(t time.Time) millis {
		if t.IsZero() {
			return millis(math.NaN())
		}
		return millis(float64(t.Sub(p.Started)) / 1e6)
	}
	run.ExecMs = ms(p.Execed)
	// HTTP requests only once the port accepts (until then the prober
	// alone polls), one per millisecond: a request every 200 µs, each on
	// a new connection, kept the first worker and the driver busy on a
	// core while the second worker was still starting, the longer the
	// later it listens.
	select {
	case <-accepting:
	case <-time.After(60 * time.Second):
		close(stopProbe)
		wg.Wait()
		return run, fmt.Errorf("start %s: %s never accepted a connection", name, v.addr)
	}
	at, err := waitServing(v.addr, 2, time.Millisecond, 60*time.Second)
	close(stopProbe)
	wg.Wait()
	if err != nil {
		return run, fmt.Errorf("start %s: %w", name, err)
	}
	run.AcceptMs = ms(acceptAt)
	run.FirstResponse = ms(at[0])
	run.AllServingMs = ms(at[len(at)-1])
	var match func(string) bool
	switch name {
	case "gm2-init", "gm2-init/fd3", "gm2-init/on-demand":
		match = func(s string) bool { return strings.Contains(s, `"message":"worker ready"`) }
	case "pm2-runtime":
		match = func(s string) bool { return strings.Contains(s, "] online") }
	}
	if match != nil {
		if l, err := p.WaitLines(0, match, 2, 30*time.Second); err == nil {
			run.InitReadyMs = ms(l.At)
		} else {
			logf("warning: %v", err)
		}
	}
	return run, nil
}
