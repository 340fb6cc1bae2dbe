package container

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/httpload"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// Every wait below is bounded; these bound one step (a container start,
// workers becoming ready, a reload) on 2 shared CPU cores.
const (
	stepTimeout = time.Minute
	stopTimeout = 10 // podman stop -t, Docker's default
)

// goArgs runs the Go example app (fd 3, READY=1, drains on TERM) under
// gm2-init with flags, as the go image's entrypoint arguments.
func goArgs(flags ...string) []string {
	return append(append(flags, "--listen", ":8080", "--wait-ready"), "--", "goapp")
}

// hostCPUs is how many CPUs this test process may use.
func hostCPUs(t *testing.T) int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	return set.Count()
}

// stopClean stops c with `podman stop -t 10` and wants exit status 0,
// within the timeout (podman would SIGKILL at its end and report 137).
func stopClean(t *testing.T, c *Container) time.Duration {
	t.Helper()
	took, code := c.Stop(stopTimeout)
	if code != 0 {
		t.Fatalf("podman stop -t %d: exit status %d after %v, want 0", stopTimeout, code, took)
	}
	if took >= stopTimeout*time.Second {
		t.Fatalf("podman stop -t %d took %v: the engine's SIGKILL, not gm2-init, ended the container", stopTimeout, took)
	}
	return took
}

// TestInstancesMaxFollowsTheEngine: `-i max` under podman's --cpus and
// --cpuset-cpus: the count gm2-init logs, the slots /status shows, and
// requests through the published port reaching that many workers.
func TestInstancesMaxFollowsTheEngine(t *testing.T) {
	t.Parallel()
	img := needImage(t, "go", buildGoImage)
	for _, tc := range []struct {
		name  string
		flags []string
		want  int
	}{
		{"cpus 1.5", []string{"--cpus", "1.5"}, 1},
		{"cpus 2", []string{"--cpus", "2"}, min(2, hostCPUs(t))},
		{"cpuset-cpus 0", []string{"--cpuset-cpus", "0"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Run(t, RunOpts{Image: img, Flags: tc.flags, Publish: []int{8080, 9000}, Args: goArgs("-i", "max")})
			l, _ := c.WaitLog(stepTimeout, 0, "worker count", nil)
			t.Logf("podman run %s: gm2-init logs %d worker(s), from %s", strings.Join(tc.flags, " "), int(l.Num("instances")), l.Str("source"))
			if got := int(l.Num("instances")); got != tc.want {
				t.Fatalf("-i max under %s: %d workers logged, want %d (%s)", strings.Join(tc.flags, " "), got, tc.want, l.Str("source"))
			}
			c.WaitCount(stepTimeout, "worker ready", tc.want)
			st := getStatus(t, c.Addr(9000))
			if st.Instances != tc.want || len(st.Slots) != tc.want || st.ReadyWorkers != tc.want {
				t.Fatalf("/status: instances %d, %d slots, %d ready; want %d", st.Instances, len(st.Slots), st.ReadyWorkers, tc.want)
			}
			distinctBodies(t, c.Addr(8080), tc.want, 400)
			stopClean(t, c)
		})
	}
	// --cpu-rounding ceil counts the half CPU, and --dry-run shows the
	// same count without starting anything.
	t.Run("cpus 1.5, cpu-rounding ceil, dry run", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := RunToExit(t, RunOpts{Image: img, Flags: []string{"--cpus", "1.5"},
			Args: []string{"-i", "max", "--cpu-rounding", "ceil", "--dry-run", "--", "goapp"}}, stepTimeout)
		var dry struct {
			Instances int    `json:"instances"`
			Source    string `json:"instances_source"`
		}
		if code != 0 || json.Unmarshal([]byte(stdout), &dry) != nil {
			t.Fatalf("--dry-run: exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		if want := min(2, hostCPUs(t)); dry.Instances != want {
			t.Fatalf("--dry-run under --cpus 1.5 with ceil: %d instances (%s), want %d", dry.Instances, dry.Source, want)
		}
	})
}

// TestBadFlagInAContainer: a bad flag is one line naming it and exit
// status 2, which podman passes on: the container ends at once instead of
// restarting a broken command.
func TestBadFlagInAContainer(t *testing.T) {
	t.Parallel()
	img := needImage(t, "go", buildGoImage)
	stdout, stderr, code := RunToExit(t, RunOpts{Image: img, Args: []string{"-i", "abc", "--", "goapp"}}, stepTimeout)
	if code != 2 || !strings.Contains(stderr, "-i") || stdout != "" {
		t.Fatalf("-i abc: exit %d, stdout %q, stderr %q; want 2 and a line naming -i", code, stdout, stderr)
	}
}

// TestReloadByPodmanKillUnderLoad: 10 × `podman kill -s HUP` while
// clients on 127.0.0.1 send requests through the published port, half on a
// new connection per request, half on kept-alive connections: no request
// fails, and every reload replaces every worker.
func TestReloadByPodmanKillUnderLoad(t *testing.T) {
	t.Parallel()
	img := needImage(t, "go", buildGoImage)
	const n, reloads = 2, 10
	c := Run(t, RunOpts{Image: img, Publish: []int{8080, 9000}, Args: goArgs("-i", "2", "--kill-timeout", "5s")})
	c.WaitCount(stepTimeout, "worker ready", n)
	health, addr := c.Addr(9000), c.Addr(8080)
	prev := slotPids(t, health)

	ld := httpload.Start(addr, httpload.Options{Clients: 8, Limit: 5 * time.Minute})
	defer ld.Stop()
	if !ld.WaitRequests(20, 30*time.Second) {
		t.Fatal("the load gets no answers through the published port")
	}
	pos := 0
	for i := 0; i < reloads; i++ {
		c.Kill("HUP")
		var l logLine
		l, pos = c.WaitLog(stepTimeout, pos, "reload finished", nil)
		if l.Str("result") != "ok" || int(l.Num("replaced")) != n {
			t.Fatalf("reload %d: %v", i+1, l)
		}
		pids := slotPids(t, health)
		for _, p := range pids {
			if slices.Contains(prev, p) {
				t.Fatalf("reload %d: worker %d was not replaced (before %v, after %v)", i+1, p, prev, pids)
			}
		}
		prev = pids
		if !ld.WaitRequests(10, 30*time.Second) {
			t.Fatalf("no traffic after reload %d", i+1)
		}
	}
	r := ld.Stop()
	t.Logf("%d reloads by podman kill -s HUP: %d requests on new connections, %d on kept-alive ones; %d and %d failed",
		reloads, r.OK[httpload.NewConnection], r.OK[httpload.KeepAlive], r.Failed[httpload.NewConnection], r.Failed[httpload.KeepAlive])
	if _, failed, errs := r.Sums(); failed != 0 {
		t.Fatalf("%d requests failed during the reloads: %v", failed, errs)
	}
	stopClean(t, c)
}

// TestPodmanStop: `podman stop -t 10` with gm2-init as PID 1 and under
// `podman run --init` (catatonit is PID 1, gm2-init its child and a
// subreaper). Each worker leaves a double-forked daemon (an orphan in a
// session of its own) and worker 0 leaves 20 orphan zombies. The zombies
// are reaped while the container runs; on stop, the daemons get SIGTERM
// from gm2-init (they write "term"; the kernel's SIGKILL at the end of a
// container would leave "up"), and the exit status is gm2-init's: 0, or
// 137 when a worker ignored TERM and had to be killed after
// --kill-timeout, still inside podman's -t.
func TestPodmanStop(t *testing.T) {
	t.Parallel()
	img := needImage(t, "go", buildGoImage)
	for _, tc := range []struct {
		name        string
		flags       []string
		killTimeout time.Duration
		wantCode    int
	}{
		{"gm2-init is PID 1", nil, 5 * time.Second, 0},
		{"worker ignores TERM", []string{"-e", "TW_IGNORE_TERM=1"}, 2 * time.Second, 137},
		{"podman run --init", []string{"--init"}, 5 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if slices.Contains(tc.flags, "--init") {
				testtool.Require(t, "catatonit", "Debian package catatonit: podman run --init runs it")
			}
			t.Parallel()
			const orphans = 20
			dir := t.TempDir()
			flags := append([]string{"-v", dir + ":/data", "-e", "TW_DAEMON=/data/daemon-{instance}",
				"-e", fmt.Sprintf("TW_ORPHANS=%d", orphans)}, tc.flags...)
			c := Run(t, RunOpts{Image: img, Flags: flags, Publish: []int{9000},
				Args: []string{"-i", "2", "--listen", ":8080", "--wait-ready", "--kill-timeout", tc.killTimeout.String(), "--", "testworker"}})
			c.WaitCount(stepTimeout, "worker ready", 2)
			health := c.Addr(9000)
			waitMetric(t, health, "gm2_orphans_reaped_total", orphans, stepTimeout)

			underInit := slices.Contains(tc.flags, "--init")
			var daemons int
			var gm2Pid string
			for _, p := range c.Processes() {
				if strings.Contains(p[2], "grandchild") {
					daemons++
				}
				if strings.HasPrefix(p[2], "gm2-init ") {
					gm2Pid = p[0]
				}
			}
			if daemons != 2 {
				t.Fatalf("podman top shows %d daemons, want 2: %v", daemons, c.Processes())
			}
			if underInit {
				if gm2Pid == "1" || gm2Pid == "" {
					t.Fatalf("under --init gm2-init has pid %q, want a child of catatonit: %v", gm2Pid, c.Processes())
				}
				c.WaitLog(stepTimeout, 0, "not PID 1: acting as child subreaper for the workers' descendants", nil)
			} else if gm2Pid != "1" {
				t.Fatalf("gm2-init has pid %q, want 1: %v", gm2Pid, c.Processes())
			}

			took, code := c.Stop(stopTimeout)
			t.Logf("podman stop -t %d: %v, exit status %d", stopTimeout, took.Round(time.Millisecond), code)
			if code != tc.wantCode {
				t.Fatalf("exit status %d, want %d", code, tc.wantCode)
			}
			if took >= stopTimeout*time.Second {
				t.Fatalf("podman stop -t %d took %v: the engine's SIGKILL, not gm2-init, ended the container", stopTimeout, took)
			}
			if tc.wantCode == 137 && took < tc.killTimeout {
				t.Fatalf("exit 137 after %v, before --kill-timeout %v", took, tc.killTimeout)
			}
			// The status is gm2-init's own decision, not the engine's KILL.
			if l, _ := c.WaitLog(stepTimeout, 0, "gm2-init exiting", nil); int(l.Num("exit_code")) != tc.wantCode {
				t.Fatalf("gm2-init logged exit code %v, want %d", l["exit_code"], tc.wantCode)
			}
			for i := range 2 {
				b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("daemon-%d", i)))
				if err != nil || string(b) != "term" {
					t.Errorf("the daemon of worker %d: %q %v; want \"term\" (stopped by gm2-init, not by the kernel's final SIGKILL)", i, b, err)
				}
			}
		})
	}
}

// TestHealthcheck: Dockerfile.example's HEALTHCHECK, `gm2-init
// healthcheck` in an image with no curl and no shell, as `podman
// healthcheck run` executes it: healthy while the workers serve, unhealthy
// while they crash-loop.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	img := exampleImage(t)
	hc := mustPodman(t, stepTimeout, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", img)
	if !strings.Contains(hc, `["CMD","gm2-init","healthcheck"]`) {
		t.Fatalf("the image's healthcheck is %s: not Dockerfile.example's", hc)
	}
	t.Run("serving", func(t *testing.T) {
		t.Parallel()
		c := Run(t, RunOpts{Image: img, Flags: []string{"--cpus", "1"}})
		c.WaitCount(stepTimeout, "worker ready", 1)
		if out, code := c.Healthcheck(); code != 0 {
			t.Fatalf("podman healthcheck run while serving: exit %d, %q", code, out)
		}
		stopClean(t, c)
	})
	t.Run("crash-looping", func(t *testing.T) {
		t.Parallel()
		c := Run(t, RunOpts{Image: img, Flags: []string{"--cpus", "1"}, Args: []string{"node", "-e", "process.exit(3)"}})
		c.WaitCount(stepTimeout, "worker exited", 3)
		out, code := c.Healthcheck()
		if code != 1 || !strings.Contains(out, "unhealthy") {
			t.Fatalf("podman healthcheck run while crash-looping: exit %d, %q; want 1, unhealthy", code, out)
		}
	})
}

// TestReadOnlyRootNonRootNode: Dockerfile.example's image (an unmodified
// Node app that calls listen(PORT)) with a read-only root and no tmpfs but
// /dev/shm (--read-only --read-only-tmpfs=false) and --user 1000:1000: the
// preload is loaded from its file in /dev/shm, both workers serve the
// shared port, a reload works, every process runs as 1000, and the stop is
// clean. (TestShortestNodeForm runs one with no writable directory at all.)
func TestReadOnlyRootNonRootNode(t *testing.T) {
	t.Parallel()
	img := exampleImage(t)
	n := min(2, hostCPUs(t))
	c := Run(t, RunOpts{Image: img, Publish: []int{8080, 9000},
		Flags: []string{"--read-only", "--read-only-tmpfs=false", "--user", "1000:1000", "--cpus", "2"}})
	// The root and /tmp are read-only; /dev/shm is the tmpfs every container
	// engine mounts, where the preload file goes.
	if l, _ := c.WaitLog(stepTimeout, 0, "node preload", nil); l.Str("mode") != "require" || !strings.HasPrefix(l.Str("file"), "/dev/shm/") {
		t.Fatalf("node preload: %v; want mode require, its file in /dev/shm", l)
	}
	c.WaitCount(stepTimeout, "worker ready", n)
	distinctBodies(t, c.Addr(8080), n, 400)
	for _, p := range c.Processes() {
		if p[1] != "1000" && p[1] != "node" {
			t.Errorf("process %s (%s) runs as %s, want 1000", p[0], p[2], p[1])
		}
	}
	c.Kill("HUP")
	if l, _ := c.WaitLog(stepTimeout, 0, "reload finished", nil); l.Str("result") != "ok" {
		t.Fatalf("reload on a read-only root: %v", l)
	}
	distinctBodies(t, c.Addr(8080), n, 400)
	stopClean(t, c)
}

// shortNodeImage is the shortest Node image: the app is
// examples/node/http-server.js as app.js, unchanged (it listens on PORT,
// else 3000), and entrypoint is the ENTRYPOINT's JSON.
func shortNodeImage(t *testing.T, key, entrypoint string) string {
	t.Helper()
	base := nodeBaseImage(t)
	return needImage(t, key, func(name string) error {
		dir := filepath.Join(suite.tmp, "ctx-"+key)
		if err := copyFile(suite.gm2init, filepath.Join(dir, "gm2-init"), 0o755); err != nil {
			return err
		}
		if err := copyFile(filepath.Join(suite.root, "examples", "node", "http-server.js"), filepath.Join(dir, "app.js"), 0o644); err != nil {
			return err
		}
		return podmanBuild(name, dir, fmt.Sprintf(`FROM %s
COPY gm2-init /usr/local/bin/gm2-init
COPY app.js /app/app.js
WORKDIR /app
ENTRYPOINT %s
CMD ["node", "app.js"]
`, base, entrypoint))
	})
}

// TestShortestNodeForm: ENTRYPOINT ["gm2-init", "-i", "max", "--"] and
// CMD ["node", "app.js"], nothing else — no --listen: gm2-init binds the
// port the app's listen() asks for, once, and every worker of --cpus 2
// serves it through the published port; the stop is clean. The same as a
// non-root user with a read-only root and no tmpfs at all, and with
// --listen :3000, which binds the port before the first worker.
func TestShortestNodeForm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, key, entrypoint string
		zeroConfig            bool
		flags                 []string
		mode                  string // how the preload is loaded
	}{
		{"with --listen", "node-short-listen", `["gm2-init", "-i", "max", "--listen", ":3000", "--"]`, false, nil, "require"},
		{"zero-config", "node-short", `["gm2-init", "-i", "max", "--"]`, true, nil, "require"},
		// No writable directory at all (--ipc=none: no /dev/shm either):
		// the data: URL.
		{"zero-config read-only non-root", "node-short", `["gm2-init", "-i", "max", "--"]`, true,
			[]string{"--read-only", "--read-only-tmpfs=false", "--ipc=none", "--user", "1000:1000"}, "import"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := shortNodeImage(t, tc.key, tc.entrypoint)
			n := min(2, hostCPUs(t))
			c := Run(t, RunOpts{Image: img, Flags: append([]string{"--cpus", "2"}, tc.flags...), Publish: []int{3000, 9000}})
			if l, _ := c.WaitLog(stepTimeout, 0, "node preload", nil); l.Str("mode") != tc.mode {
				t.Fatalf("node preload: %v; want mode %s", l, tc.mode)
			}
			c.WaitCount(stepTimeout, "worker ready", n)
			distinctBodies(t, c.Addr(3000), n, 400)
			st := getStatus(t, c.Addr(9000))
			if st.ReadyWorkers != n {
				t.Fatalf("/status: %d ready workers, want %d", st.ReadyWorkers, n)
			}
			if len(st.Listeners) != 1 || st.Listeners[0].Address != "[::]:3000" || st.Listeners[0].OnDemand != tc.zeroConfig {
				t.Errorf("/status listeners %+v, want [::]:3000 with on_demand %v", st.Listeners, tc.zeroConfig)
			}
			shared := 0
			for _, l := range c.Lines() {
				if l.Msg() == "port shared on demand" {
					shared++
				}
			}
			if tc.zeroConfig && shared != 1 || !tc.zeroConfig && shared != 0 {
				t.Errorf("%d 'port shared on demand' lines", shared)
			}
			stopClean(t, c)
		})
	}
}
