package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// treeUsage is a worker tree read from the host's /proc by this test alone:
// parents from every status file, figures from status, fd/ and stat.
type treeUsage struct {
	processes, threads, fds int
	rss, cpuSeconds         float64
}

func readTreeUsage(t *testing.T, root int) treeUsage {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	status := func(pid int, key string) (float64, bool) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, false
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == key {
				f := strings.Fields(v)
				n, err := strconv.ParseFloat(f[0], 64)
				if len(f) > 1 && f[1] == "kB" {
					n *= 1024
				}
				return n, err == nil
			}
		}
		return 0, false
	}
	parent := map[int]int{}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if pp, ok := status(pid, "PPid"); ok {
				parent[pid] = int(pp)
			}
		}
	}
	in := map[int]bool{root: true}
	for grew := true; grew; {
		grew = false
		for p, pp := range parent {
			if !in[p] && in[pp] {
				in[p], grew = true, true
			}
		}
	}
	var u treeUsage
	for p := range in {
		u.processes++
		rss, _ := status(p, "VmRSS")
		th, _ := status(p, "Threads")
		u.rss += rss
		u.threads += int(th)
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p)); err == nil {
			u.fds += len(fds)
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil {
			f := strings.Fields(string(b[strings.LastIndex(string(b), ")")+1:]))
			for _, n := range f[11:15] { // utime stime cutime cstime
				v, _ := strconv.ParseFloat(n, 64)
				u.cpuSeconds += v / 100 // USER_HZ
			}
		}
	}
	return u
}

func within(got, want, frac, abs float64) bool {
	return math.Abs(got-want) <= math.Max(frac*math.Abs(want), abs)
}

// TestWorkerUsageThroughShell: workers run through `sh -c` (the shell stays
// as the worker, the server below it, as under `npm start`) each holding
// 40 MiB; /status and /metrics report each tree — both processes — within
// 10 % of what /proc says.
func TestWorkerUsageThroughShell(t *testing.T) {
	t.Parallel()
	in := startInit(t, []string{"TW_ALLOC_MB=40"},
		baseArgs("-i", "2", "--wait-ready", "--", "sh", "-c", `"$0"; :`, bins.worker)...)
	health := in.HealthAddr()
	in.WaitReady(2, 20*time.Second)
	hostOf := map[int]int{}
	for _, h := range in.waitChildren(2, 10*time.Second) {
		hostOf[nsPid(t, h)] = h
	}

	code, body, err := httpGet(health, "/status")
	if code != 200 || err != nil {
		t.Fatalf("/status: %d %v", code, err)
	}
	var st struct {
		Slots []struct {
			Instance int `json:"instance"`
			Workers  []struct {
				Pid        int      `json:"pid"`
				RSS        *float64 `json:"rss_bytes"`
				CPU        *float64 `json:"cpu_seconds"`
				Threads    *int     `json:"threads"`
				Processes  *int     `json:"processes"`
				FDs        *int     `json:"fds"`
				UsageError string   `json:"usage_error"`
			} `json:"workers"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	trees := map[int]int{} // instance → host pid of its worker
	for _, sl := range st.Slots {
		if len(sl.Workers) != 1 {
			t.Fatalf("slot %d has %d workers: %s", sl.Instance, len(sl.Workers), body)
		}
		w := sl.Workers[0]
		host, ok := hostOf[w.Pid]
		if !ok || w.RSS == nil || w.CPU == nil || w.Threads == nil || w.Processes == nil || w.FDs == nil {
			t.Fatalf("slot %d: worker %d (host pids %v) without usage (%q): %s", sl.Instance, w.Pid, hostOf, w.UsageError, body)
		}
		trees[sl.Instance] = host
		u := readTreeUsage(t, host)
		if *w.Processes != 2 || u.processes != 2 || !within(*w.RSS, u.rss, 0.10, 0) || *w.RSS < 40<<20 ||
			!within(float64(*w.Threads), float64(u.threads), 0.10, 1) || !within(float64(*w.FDs), float64(u.fds), 0.10, 1) ||
			!within(*w.CPU, u.cpuSeconds, 0.10, 0.05) {
			t.Errorf("slot %d: /status %d processes, %.0f B, %d threads, %d fds, %.2f s; /proc %+v",
				sl.Instance, *w.Processes, *w.RSS, *w.Threads, *w.FDs, *w.CPU, u)
		}
	}

	code, metrics, err := httpGet(health, "/metrics")
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for inst, host := range trees {
		u := readTreeUsage(t, host)
		for _, c := range []struct {
			family    string
			want      float64
			frac, abs float64
		}{
			{"gm2_worker_memory_bytes", u.rss, 0.10, 0},
			{"gm2_worker_cpu_seconds_total", u.cpuSeconds, 0.10, 0.05},
			{"gm2_worker_threads", float64(u.threads), 0.10, 1},
			{"gm2_worker_processes", float64(u.processes), 0, 0},
			{"gm2_worker_open_fds", float64(u.fds), 0.10, 1},
		} {
			got, ok := seriesValue(metrics, c.family, fmt.Sprintf(`instance="%d"`, inst))
			if !ok || !within(got, c.want, c.frac, c.abs) {
				t.Errorf("%s{instance=\"%d\"} = %v (found %v), /proc says %v", c.family, inst, got, ok, c.want)
			}
		}
	}
	checkPromtool(t, metrics)
}

// seriesValue finds the sample of family whose labels contain label.
func seriesValue(exposition, family, label string) (float64, bool) {
	for _, l := range strings.Split(exposition, "\n") {
		labels, value, ok := strings.Cut(l, "} ")
		if !ok || !strings.HasPrefix(labels, family+"{") || !strings.Contains(labels, label) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		return v, err == nil
	}
	return 0, false
}
