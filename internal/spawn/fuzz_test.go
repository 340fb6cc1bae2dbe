package spawn

import (
	"slices"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/preload"
	"github.com/gm2-init/gm2-init/internal/status"
)

// FuzzInterleavings drives the supervisor with event sequences nobody
// wrote: exits with any status, readiness in any order, HUP, TTIN, TTOU,
// TERM, reload and scale commands, preload lines, memory over the limit and
// the clock jumping ahead, on one or two apps with the settings the input
// picks. The harness checks the package doc's invariants after every
// event; at the end a TERM and the workers' exits must finish gm2-init,
// with every `gm2-init reload` answered and nothing started after the
// shutdown began.
//
//	go test -run '^$' -fuzz FuzzInterleavings ./internal/spawn
func FuzzInterleavings(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{0x00, 3, 2, 2, 1, 1, 0, 5}, // readiness, exits, the clock
		{0x01, 3, 1, 0, 3, 2, 4, 1, 2, 2, 3, 0, 1, 2, 5},          // a reload with a crash in it
		{0x05, 2, 4, 5, 6, 2, 1, 2, 3, 7, 0, 2, 2, 6, 6},          // TTIN, TTOU, TERM
		{0x12, 3, 3, 0, 0, 9, 4, 8, 2, 2, 3, 2, 0, 1, 1, 2, 4},    // fork mode, scale, reload command
		{0x27, 1, 10, 1, 10, 2, 3, 3, 11, 2, 5, 11, 0, 2, 5},      // preload, memory
		{0x3f, 4, 2, 5, 0, 0, 0, 0, 2, 4, 0, 0, 2, 3, 6, 2, 6},    // crash loop to errored
		{0x40, 2, 3, 1, 1, 9, 2, 2, 1, 0, 2, 5, 6, 0, 0, 1, 2, 3}, // two apps
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		next := func() int {
			if len(in) == 0 {
				return 0
			}
			b := int(in[0])
			in = in[1:]
			return b
		}
		cfg := next()
		apps := []App{fuzzApp("web", cfg, next())}
		if cfg&0x40 != 0 {
			apps = append(apps, fuzzApp("api", cfg>>1, next()))
		}
		h := newHarness(t, Options{Apps: apps, ShutdownDelay: time.Duration(cfg>>7) * time.Second})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("log:\n%s", h.logs.String())
			}
		})
		var waiters []chan error
		// reload is `gm2-init reload NAMES…` as the control socket's server
		// runs it in the loop; its answer is checked at the end.
		reload := func(names []string) {
			done := make(chan error, 1)
			h.event(func() {
				if err := h.s.reloadCommand(names, done); err != nil {
					done <- err
				}
			})
			waiters = append(waiters, done)
		}
		live := func() []int {
			pids := make([]int, 0, len(h.s.byPid))
			for pid := range h.s.byPid {
				pids = append(pids, pid)
			}
			slices.Sort(pids)
			return pids
		}
		pick := func() (int, bool) {
			pids := live()
			if len(pids) == 0 {
				return 0, false
			}
			return pids[next()%len(pids)], true
		}
		for steps := 0; len(in) > 0 && steps < 200 && !h.s.finished; steps++ {
			switch op := next() % 16; op {
			case 0: // an exit: 0, 1, or killed
				if pid, ok := pick(); ok {
					h.exit([]int{0, 1, -9}[next()%3], pid)
				}
			case 1:
				if pid, ok := pick(); ok {
					h.ready(pid)
				}
			case 2:
				h.advance([]time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second, 5 * time.Second, 11 * time.Second, 31 * time.Second}[next()%6])
			case 3:
				h.signal(sigHUP)
			case 4:
				h.signal(sigTTIN)
			case 5:
				h.signal(sigTTOU)
			case 6:
				h.signal(sigTERM)
			case 7: // gm2-init reload [web]
				reload([][]string{nil, {"web"}}[next()%2])
			case 8: // gm2-init scale web N
				n := 1 + next()%4
				h.event(func() { h.s.scaleCommand("web", n, false) })
			case 9:
				if pid, ok := pick(); ok {
					h.nodeReady(pid)
				}
			case 10: // the preload: hello, a passed socket, a shared one
				if pid, ok := pick(); ok {
					w := h.worker(pid)
					ev := []preload.Event{{Kind: preload.KindHello}, {Kind: preload.KindListening, FD: 3}, {Kind: preload.KindShared, ID: 1 + next()%2}}[next()%3]
					ev.Pid = pid
					h.event(func() { h.s.onPreload(w, ev) })
				}
			case 11: // a worker's tree over --max-memory-restart, seen at the next check
				if pid, ok := pick(); ok {
					h.sys.procs[pid].memory = 1 << 30
				}
			case 12: // the next starts fail (fork: EAGAIN)
				h.sys.failStarts = 1 + next()%3
			case 13: // a worker's tree will outlive it (a daemon it left)
				if pid, ok := pick(); ok {
					h.sys.procs[pid].remains = true
				}
			case 14: // a worker exited, its exit not reaped yet
				if pid, ok := pick(); ok {
					h.sys.procs[pid].exited = true
				}
			case 15: // gm2-init reload api (an unknown app with one app)
				reload([]string{"api"})
			}
		}

		// Liveness: with the faults gone, workers that start become ready
		// and those told to stop exit; then every slot serves (or was given
		// up on), no pass is left under way, and every gm2-init reload has
		// its answer — unless the sequence already began the shutdown.
		h.sys.failStarts = 0
		var unreaped []int
		for pid, p := range h.sys.procs {
			p.remains, p.memory = false, 0
			if p.exited && h.s.byPid[pid] != nil {
				unreaped = append(unreaped, pid)
			}
		}
		if len(unreaped) > 0 {
			slices.Sort(unreaped)
			h.exit(1, unreaped...)
		}
		busy := func() bool {
			for _, w := range h.s.byPid {
				if w.state != status.Ready {
					return true
				}
			}
			for _, a := range h.s.apps {
				if a.reload.inProgress {
					return true
				}
				for _, sl := range a.slots {
					if sl.restart != nil || sl.replaceRetry != nil {
						return true
					}
				}
			}
			return false
		}
		for round := 0; busy() && round < 500; round++ {
			for _, pid := range live() {
				switch w := h.s.byPid[pid]; {
				case w == nil:
				case w.state == status.Starting:
					h.ready(pid)
				case w.state == status.Draining:
					h.exit(0, pid)
				}
			}
			h.advance(31 * time.Second)
		}
		if !h.s.down.active {
			for _, a := range h.s.apps {
				if a.reload.inProgress || a.reload.pending {
					t.Errorf("%s: a reload pass still under way once every worker was ready", a.name)
				}
				ends := a.spec.Restart != appspec.Always || len(a.spec.StopExitCodes) > 0
				for _, sl := range a.slots {
					serving := sl.current != nil && sl.current.state == status.Ready
					given := sl.state == status.Errored || ends && sl.state == status.Stopped
					if sl.retiring || sl.candidate != nil || (!serving && !given) {
						t.Errorf("%s[%d] has not settled: state %s, current %v, candidate %v, retiring %v", a.name, sl.index, sl.state, sl.current != nil, sl.candidate != nil, sl.retiring)
					}
				}
			}
			for i, done := range waiters {
				select {
				case err := <-done:
					done <- err // for the check after the shutdown
				default:
					t.Errorf("gm2-init reload number %d not answered once every worker was ready", i+1)
				}
			}
		}

		// The end: TERM (unless every slot ended by itself: --restart
		// never), the workers exit when told, the clock runs out.
		if !h.s.finished {
			h.signal(sigTERM)
		}
		started := len(h.started())
		for round := 0; !h.s.finished; round++ {
			if round == 50 {
				t.Fatalf("not finished 50 rounds after TERM; live %v\n%s", live(), h.logs.String())
			}
			for _, p := range h.sys.procs {
				p.remains = false // what the trees left behind ends too
			}
			h.sys.failStarts = 0
			if pids := live(); len(pids) > 0 {
				h.exit(0, pids...)
			}
			h.advance(10 * time.Second)
		}
		if n := len(h.started()); n != started {
			t.Errorf("%d workers started after the final TERM", n-started)
		}
		for i, done := range waiters {
			select {
			case <-done:
			default:
				t.Errorf("gm2-init reload number %d never answered", i+1)
			}
		}
		for _, a := range h.s.apps {
			for _, sl := range a.slots {
				if sl.state != status.Stopped && sl.state != status.Errored {
					t.Errorf("%s[%d] reads %s after gm2-init finished", a.name, sl.index, sl.state)
				}
			}
		}
		if code := h.s.exitCode(); code != 0 && code != 1 && code != 137 {
			t.Errorf("exit code %d", code)
		}
	})
}

// fuzzApp is an app with the settings the bits of cfg and of more pick:
// more's low 2 bits are the worker count (1 to 4), the next ones the
// restart policy, stop exit codes and the kill timeout.
func fuzzApp(name string, cfg, more int) App {
	a := testApp(name, 1+more%4)
	a.Restart = []appspec.RestartPolicy{appspec.Always, appspec.OnFailure, appspec.Never, appspec.Always}[(more>>2)%4]
	if more&0x10 != 0 {
		a.StopExitCodes = []int{1}
	}
	a.KillTimeout = []time.Duration{8 * time.Second, 2 * time.Second, 30 * time.Second, 100 * time.Millisecond}[(more>>5)%4]
	a.WaitReady = cfg&1 != 0
	if cfg&2 != 0 {
		a.ExecMode, a.Count = appspec.Fork, 1 // fork runs exactly one
	}
	if cfg&4 != 0 {
		a.PreloadEnv = []string{"NODE_OPTIONS=--require x"}
	}
	if cfg&8 != 0 {
		a.MaxMemory = 100 << 20
	}
	a.MaxRestarts = (cfg >> 4) & 3
	a.ReloadBatch = 1 + (cfg>>5)&1
	return a
}
