package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/procfs/procfstest"
	"github.com/gm2-init/gm2-init/internal/procoracle"
	"github.com/gm2-init/gm2-init/internal/status"
)

func TestMain(m *testing.M) {
	procoracle.RunHelper()
	os.Exit(m.Run())
}

func near(got, want, frac, abs float64) bool {
	return math.Abs(got-want) <= max(frac*math.Abs(want), abs)
}

// TestWorkerUsageEndpoints: two slots, one a worker run through `sh -c` with
// two helpers below it (48 MiB each), one a helper sh exec'd into; /status and
// /metrics report each tree's figures within 10 % of an independent reading
// of /proc, and promtool accepts the exposition.
func TestWorkerUsageEndpoints(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skipf("no procfs: %v", err)
	}
	tree, _ := procoracle.StartTree(t, `"$0" & "$0" & wait`, "48 0 200 block", 2)
	single, _ := procoracle.StartTree(t, `exec "$0"`, "16 0 0 block", 1)

	snap := healthySnapshot()
	snap.Slots[0].App, snap.Slots[1].App = "web", "web"
	snap.Slots[0].Pid, snap.Slots[0].Workers[0].Pid = tree, tree
	snap.Slots[1].Pid, snap.Slots[1].Workers[0].Pid = single, single
	_, base, _ := startServer(t, newFakeSource(snap), testOptions())

	r := get(t, base+"/status")
	var v struct {
		Slots []struct {
			Workers []struct {
				Pid        int      `json:"pid"`
				RSS        *uint64  `json:"rss_bytes"`
				CPU        *float64 `json:"cpu_seconds"`
				Threads    *int     `json:"threads"`
				Processes  *int     `json:"processes"`
				FDs        *int     `json:"fds"`
				Partial    bool     `json:"usage_partial"`
				UsageError string   `json:"usage_error"`
			} `json:"workers"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("status: %v\n%s", err, r.body)
	}
	for i, root := range []int{tree, single} {
		w := v.Slots[i].Workers[0]
		if w.RSS == nil || w.CPU == nil || w.Threads == nil || w.Processes == nil || w.FDs == nil || w.Partial || w.UsageError != "" {
			t.Fatalf("slot %d: usage missing or partial: %s", i, r.body)
		}
		ind := procoracle.ReadOrFail(t, root)
		if *w.Processes != len(ind.PIDs) || !near(float64(*w.RSS), float64(ind.RSSBytes), 0.10, 0) || *w.Threads != ind.Threads ||
			!near(float64(*w.FDs), float64(ind.FDs), 0.10, 0) || !near(*w.CPU, ind.CPUSeconds(), 0.10, 0.03) {
			t.Errorf("slot %d: /status %d processes, %d B, %d threads, %d fds, %.2f s; /proc %+v",
				i, *w.Processes, *w.RSS, *w.Threads, *w.FDs, *w.CPU, ind)
		}
	}
	if w := v.Slots[0].Workers[0]; *w.Processes != 3 || *w.RSS < 96<<20 || *w.CPU < 0.35 {
		t.Errorf("sh -c tree: %d processes, %d bytes, %.2f s; want 3, ≥ 96 MiB, ≥ 0.4 s", *w.Processes, *w.RSS, *w.CPU)
	}

	m := get(t, base+"/metrics")
	if err := checkExposition(m.body); err != nil {
		t.Fatalf("exposition invalid: %v\n%s", err, m.body)
	}
	runPromtool(t, m.body)
	for i, root := range []int{tree, single} {
		ind := procoracle.ReadOrFail(t, root)
		labels := fmt.Sprintf(`{app="web",instance="%d"}`, i)
		for _, c := range []struct {
			family     string
			want       float64
			frac, abs  float64
			exactCount bool
		}{
			{"gm2_worker_memory_bytes", float64(ind.RSSBytes), 0.10, 0, false},
			{"gm2_worker_cpu_seconds_total", ind.CPUSeconds(), 0.10, 0.03, false},
			{"gm2_worker_threads", float64(ind.Threads), 0, 0, true},
			{"gm2_worker_processes", float64(len(ind.PIDs)), 0, 0, true},
			{"gm2_worker_open_fds", float64(ind.FDs), 0.10, 0, false},
		} {
			got, ok := sampleValue(m.body, c.family+labels)
			if !ok || !near(got, c.want, c.frac, c.abs) {
				t.Errorf("%s%s = %v (found %v), /proc says %v", c.family, labels, got, ok, c.want)
			}
		}
	}
	if got, ok := sampleValue(m.body, "gm2_worker_usage_partial_slots"); !ok || got != 0 {
		t.Errorf("gm2_worker_usage_partial_slots = %v, %v", got, ok)
	}
}

// sampleValue finds the line "series value" in an exposition.
func sampleValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestWorkerUsageExposition: synthetic trees, exact lines. A slot being
// reloaded sums its two workers; a gone worker is left out; a worker not
// read marks its slot partial; slots without a readable worker have no
// series; hostile app names are escaped.
func TestWorkerUsageExposition(t *testing.T) {
	tick := float64(procfs.ClockTicks())
	snap := &status.Snapshot{Slots: []status.Slot{
		{App: "api", Index: 0, Workers: []status.Worker{{Pid: 10}, {Pid: 11}}}, // reload: both count
		{App: "api", Index: 1, Workers: []status.Worker{{Pid: 20}, {Pid: 21}}}, // 21 gone
		{App: "api", Index: 2, Workers: []status.Worker{{Pid: 30}}},            // deadline
		{App: "w\"e\\b\n", Index: 0, Workers: []status.Worker{{Pid: 40}}},      // partial tree
		{App: "api", Index: 3, State: status.Backoff},                          // no worker
	}}
	gone := fmt.Errorf("process tree of pid 21: %w", fs.ErrNotExist)
	trees := map[int]procfs.TreeResult{
		10: {Pid: 10, Stats: procfs.Stats{RSSBytes: 1000, CPUTicks: uint64(2 * tick), Threads: 3, Processes: 2, FDs: 10}},
		11: {Pid: 11, Stats: procfs.Stats{RSSBytes: 500, CPUTicks: uint64(tick / 2), Threads: 1, Processes: 1, FDs: 5}},
		20: {Pid: 20, Stats: procfs.Stats{RSSBytes: 7, CPUTicks: 0, Threads: 1, Processes: 1, FDs: 4}},
		21: {Pid: 21, Err: gone},
		30: {Pid: 30, Err: context.DeadlineExceeded},
		40: {Pid: 40, Stats: procfs.Stats{RSSBytes: 4096, CPUTicks: uint64(tick), Threads: 2, Processes: 1, FDs: 3, Partial: true}},
	}
	var e exposition
	writeWorkerUsage(&e, snap, trees)
	body := e.buf.String()
	if err := checkExposition(body); err != nil {
		t.Fatalf("exposition invalid: %v\n%s", err, body)
	}
	runPromtool(t, body)
	for _, w := range []string{
		`gm2_worker_memory_bytes{app="api",instance="0"} 1500`,
		`gm2_worker_cpu_seconds_total{app="api",instance="0"} 2.5`,
		`gm2_worker_threads{app="api",instance="0"} 4`,
		`gm2_worker_processes{app="api",instance="0"} 3`,
		`gm2_worker_open_fds{app="api",instance="0"} 15`,
		`gm2_worker_memory_bytes{app="api",instance="1"} 7`,
		`gm2_worker_processes{app="api",instance="1"} 1`,
		`gm2_worker_memory_bytes{app="w\"e\\b\n",instance="0"} 4096`,
		`gm2_worker_usage_partial_slots 2`,
	} {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("missing %q in\n%s", w, body)
		}
	}
	for _, absent := range []string{`instance="2"`, `instance="3"`} {
		if strings.Contains(body, absent) {
			t.Errorf("series for a slot without figures (%s):\n%s", absent, body)
		}
	}

	// No worker at all: only the partial gauge, at 0.
	e = exposition{}
	writeWorkerUsage(&e, &status.Snapshot{}, nil)
	if got := e.buf.String(); strings.Contains(got, "gm2_worker_memory") || !strings.Contains(got, "gm2_worker_usage_partial_slots 0\n") {
		t.Errorf("no workers:\n%s", got)
	}
}

func TestStatusUsageFields(t *testing.T) {
	snap := &status.Snapshot{Slots: []status.Slot{{Index: 0, Workers: []status.Worker{{Pid: 10}, {Pid: 11}, {Pid: 12}, {Pid: 13}}}}}
	trees := map[int]procfs.TreeResult{
		10: {Pid: 10, Stats: procfs.Stats{RSSBytes: 0, CPUTicks: 0, Threads: 1, Processes: 1}},
		11: {Pid: 11, Err: fmt.Errorf("x: %w", fs.ErrNotExist)},
		12: {Pid: 12, Err: context.DeadlineExceeded},
	}
	b, err := json.Marshal(buildStatusView(snap, time.Now(), trees))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Slots []struct {
			Workers []map[string]any `json:"workers"`
		} `json:"slots"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	ws := v.Slots[0].Workers
	// A zero figure is still written: it is a reading, not a gap.
	for _, k := range []string{"rss_bytes", "cpu_seconds", "threads", "processes", "fds"} {
		if _, ok := ws[0][k]; !ok {
			t.Errorf("worker 10 lacks %s: %v", k, ws[0])
		}
	}
	if _, ok := ws[0]["usage_partial"]; ok {
		t.Errorf("usage_partial written when false: %v", ws[0])
	}
	for i, want := range []string{"process gone", "not read within 500ms", "not read: another read of /proc was still running"} {
		w := ws[i+1]
		if w["usage_error"] != want || w["rss_bytes"] != nil {
			t.Errorf("worker %v: usage_error %q, want %q (%v)", w["pid"], w["usage_error"], want, w)
		}
	}
	// Without a read (no workers asked), no usage fields at all.
	b, _ = json.Marshal(buildStatusView(snap, time.Now(), nil))
	if strings.Contains(string(b), "usage_error") || strings.Contains(string(b), "rss_bytes") {
		t.Errorf("usage fields without a read: %s", b)
	}
}

// fakeStat writes a fake /proc/<pid> with a stat line and no children.
func fakeStat(t *testing.T, root string, pid int, rssPages int) {
	t.Helper()
	procfstest.Write(t, root, procfstest.Proc{Pid: pid, Comm: "w", UTime: 5, STime: 5, Threads: 1, RSSPages: rssPages})
}

// TestUsageReaderReuse: reads of the same workers within maxAge share one
// read of /proc; a later read, or another set of workers, reads anew.
func TestUsageReaderReuse(t *testing.T) {
	root := t.TempDir()
	fakeStat(t, root, 10, 1)
	fakeStat(t, root, 20, 1)
	now := time.Unix(1000, 0)
	u := newUsageReader(root, time.Second, time.Second)
	u.now = func() time.Time { return now }
	snap := &status.Snapshot{Slots: []status.Slot{{Workers: []status.Worker{{Pid: 10}}}}}

	rss := func(trees map[int]procfs.TreeResult, pid int) uint64 { return trees[pid].Stats.RSSBytes }
	page := uint64(os.Getpagesize())
	if got := rss(u.read(context.Background(), snap), 10); got != page {
		t.Fatalf("first read: %d", got)
	}
	fakeStat(t, root, 10, 5)
	now = now.Add(999 * time.Millisecond)
	if got := rss(u.read(context.Background(), snap), 10); got != page {
		t.Errorf("read within maxAge: %d, want the reused %d", got, page)
	}
	now = now.Add(2 * time.Millisecond)
	if got := rss(u.read(context.Background(), snap), 10); got != 5*page {
		t.Errorf("read after maxAge: %d, want %d", got, 5*page)
	}
	fakeStat(t, root, 10, 7)
	snap2 := &status.Snapshot{Slots: []status.Slot{{Workers: []status.Worker{{Pid: 10}, {Pid: 20}}}}}
	if trees := u.read(context.Background(), snap2); rss(trees, 10) != 7*page || rss(trees, 20) != page {
		t.Errorf("other workers: %+v", trees)
	}
	// The clock stepped back: never reuse a read "from the future".
	now = now.Add(-time.Hour)
	fakeStat(t, root, 10, 9)
	if got := rss(u.read(context.Background(), snap2), 10); got != 9*page {
		t.Errorf("after a clock step back: %d", got)
	}
	if u.read(context.Background(), &status.Snapshot{}) != nil {
		t.Error("a snapshot without workers read something")
	}
}

// TestUsageReaderBusy: a request that cannot get the reader within the bound
// gets "not read" for every worker instead of waiting.
func TestUsageReaderBusy(t *testing.T) {
	u := newUsageReader(t.TempDir(), 50*time.Millisecond, time.Second)
	u.sem <- struct{}{} // a read in progress that does not end
	snap := &status.Snapshot{Slots: []status.Slot{{Workers: []status.Worker{{Pid: 10}}}}}
	trees := u.read(context.Background(), snap)
	if trees == nil || len(trees) != 0 {
		t.Errorf("busy reader returned %v", trees)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if trees := u.read(ctx, snap); trees == nil || len(trees) != 0 {
		t.Errorf("cancelled request returned %v", trees)
	}
	<-u.sem
	if trees := u.read(context.Background(), snap); !errors.Is(trees[10].Err, fs.ErrNotExist) {
		t.Errorf("free reader: %+v", trees)
	}
	if !slices.Equal(workerPids(snap), []int{10}) {
		t.Errorf("workerPids = %v", workerPids(snap))
	}
}
