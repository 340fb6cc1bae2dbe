package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/procoracle"
)

func within(got, want, frac, abs float64) bool {
	return math.Abs(got-want) <= math.Max(frac*math.Abs(want), abs)
}

// TestWorkerUsageThroughShell: workers run through `sh -c` (the shell stays
// as the worker, the server below it, as under `npm start`) each holding
// 40 MiB; /status and /metrics report each tree — both processes — within
// 10 % of what /proc says.
func TestWorkerUsageThroughShell(t *testing.T) {
	t.Parallel()
	// Each worker allocates 40 MiB and uses 300 ms of CPU before it is
	// ready: figures that a usage reader reporting nothing cannot match
	// (the CPU in /proc is in clock ticks, scaled: 0.2 s at least).
	in := startInit(t, []string{"TW_ALLOC_MB=40", "TW_BURN=300ms"},
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
		u := procoracle.ReadOrFail(t, host)
		if *w.Processes != 2 || len(u.PIDs) != 2 || !within(*w.RSS, float64(u.RSSBytes), 0.10, 0) || *w.RSS < 40<<20 || *w.CPU < 0.2 ||
			!within(float64(*w.Threads), float64(u.Threads), 0.10, 1) || !within(float64(*w.FDs), float64(u.FDs), 0.10, 1) ||
			!within(*w.CPU, u.CPUSeconds(), 0.10, 0.05) {
			t.Errorf("slot %d: /status %d processes, %.0f B, %d threads, %d fds, %.2f s; /proc %+v",
				sl.Instance, *w.Processes, *w.RSS, *w.Threads, *w.FDs, *w.CPU, u)
		}
	}

	code, metrics, err := httpGet(health, "/metrics")
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for inst, host := range trees {
		u := procoracle.ReadOrFail(t, host)
		for _, c := range []struct {
			family    string
			want      float64
			frac, abs float64
		}{
			{"gm2_worker_memory_bytes", float64(u.RSSBytes), 0.10, 0},
			{"gm2_worker_cpu_seconds_total", u.CPUSeconds(), 0.10, 0.05},
			{"gm2_worker_threads", float64(u.Threads), 0.10, 1},
			{"gm2_worker_processes", float64(len(u.PIDs)), 0, 0},
			{"gm2_worker_open_fds", float64(u.FDs), 0.10, 1},
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
