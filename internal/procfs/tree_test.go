package procfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gm2-init/gm2-init/internal/procoracle"
)

// ---- fake trees ----------------------------------------------------------

// fakeProcess is one process of a fake proc tree.
type fakeProcess struct {
	pid, ppid int
	state     byte          // 'S' if zero
	tids      []int         // threads; [pid] if nil
	children  map[int][]int // tid → children listed in task/<tid>/children
	noKidFile bool          // task/<tid>/ without a children file (no CONFIG_PROC_CHILDREN)
	fds       int
	utime     uint64
	cutime    uint64
	rssPages  uint64
	rawStat   string // replaces the stat line when set
}

func writeFakeTree(t *testing.T, procs ...fakeProcess) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, data string) {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		tids := p.tids
		if tids == nil {
			tids = []int{p.pid}
		}
		state := p.state
		if state == 0 {
			state = 'S'
		}
		mk(filepath.Join(dir, "fd"))
		stat := statLine(p.pid, "fake "+strconv.Itoa(p.pid), state, p.ppid, p.utime, 1, p.cutime, 0, len(tids), 10, 1<<20, p.rssPages)
		if p.rawStat != "" {
			stat = p.rawStat
		}
		write(filepath.Join(dir, "stat"), stat)
		for i := range p.fds {
			write(filepath.Join(dir, "fd", strconv.Itoa(i)), "")
		}
		for _, tid := range tids {
			td := filepath.Join(dir, "task", strconv.Itoa(tid))
			mk(td)
			if p.noKidFile {
				continue
			}
			var b strings.Builder
			for _, k := range p.children[tid] {
				fmt.Fprintf(&b, "%d ", k)
			}
			write(filepath.Join(td, "children"), b.String())
		}
	}
	return root
}

func TestTreeStatsFakeTree(t *testing.T) {
	page := pageSize()
	procs := []fakeProcess{
		// 10 is the worker: two threads, each with a child; 11 is
		// also listed by both threads (a child re-parented between two
		// reads must count once), 10 lists itself (a cycle).
		{pid: 10, ppid: 1, tids: []int{10, 15}, children: map[int][]int{10: {11, 12}, 15: {11, 13, 10, 14, 16}},
			fds: 4, utime: 100, cutime: 50, rssPages: 1000},
		{pid: 11, ppid: 10, children: map[int][]int{11: {20}}, fds: 3, utime: 10, rssPages: 100},
		{pid: 12, ppid: 10, state: 'Z', utime: 7},                    // zombie: counted, no fd dir needed
		{pid: 13, ppid: 99, fds: 50, utime: 1000, rssPages: 1 << 20}, // pid reused by another parent's child
		// 14 is listed but gone.
		{pid: 16, ppid: 10, rawStat: "16 (broken"},            // unreadable: partial
		{pid: 20, ppid: 11, fds: 1, utime: 1, rssPages: 10},   // grandchild
		{pid: 30, ppid: 1, fds: 2, utime: 5, rssPages: 5},     // unrelated
		{pid: 40, ppid: 1, noKidFile: true, fds: 1, utime: 1}, // see the fallback test
	}
	root := writeFakeTree(t, procs...)

	s, err := TreeStats(root, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		RSSBytes:  (1000 + 100 + 10) * page,
		CPUTicks:  (100 + 1 + 50) + (10 + 1) + (7 + 1) + (1 + 1),
		Threads:   2 + 1 + 1 + 1,
		Processes: 4, // 10, 11, 12, 20
		FDs:       4 + 3 + 1,
		Partial:   true, // 16
	}
	if s != want {
		t.Errorf("TreeStats(10) =\n%+v, want\n%+v", s, want)
	}
	if s.CPUSeconds() != float64(want.CPUTicks)/float64(ClockTicks()) {
		t.Errorf("CPUSeconds() = %v", s.CPUSeconds())
	}

	s, err = TreeStats(root, 30)
	if err != nil || s != (Stats{RSSBytes: 5 * page, CPUTicks: 6, Threads: 1, Processes: 1, FDs: 2}) {
		t.Errorf("TreeStats(30) = %+v, %v", s, err)
	}
	if _, err := TreeStats(root, 14); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "pid 14") {
		t.Errorf("TreeStats(gone) error %v", err)
	}
	if _, err := TreeStats(root, 16); !errors.Is(err, errBadStat) {
		t.Errorf("TreeStats(broken) error %v", err)
	}
	if _, err := TreeStats(root, 0); err == nil {
		t.Error("TreeStats(0) succeeded")
	}
}

// TestTreeStatsNoChildrenFiles: on a kernel without CONFIG_PROC_CHILDREN the
// task directories exist without children files; the tree is then found by
// scanning every stat line for its parent.
func TestTreeStatsNoChildrenFiles(t *testing.T) {
	page := pageSize()
	root := writeFakeTree(t,
		fakeProcess{pid: 10, ppid: 1, noKidFile: true, tids: []int{10, 11}, rssPages: 1},
		fakeProcess{pid: 20, ppid: 10, noKidFile: true, rssPages: 2},
		fakeProcess{pid: 21, ppid: 20, noKidFile: true, rssPages: 4},
		fakeProcess{pid: 30, ppid: 1, noKidFile: true, rssPages: 8},
	)
	s, err := TreeStats(root, 10)
	if err != nil || s.Processes != 3 || s.RSSBytes != 7*page || s.Partial {
		t.Errorf("TreeStats = %+v, %v; want 3 processes, %d bytes", s, err, 7*page)
	}
}

func TestTreeStatsBounded(t *testing.T) {
	kids := make([]int, 50)
	procs := []fakeProcess{{pid: 1000, ppid: 1}}
	for i := range kids {
		kids[i] = 2000 + i
		procs = append(procs, fakeProcess{pid: 2000 + i, ppid: 1000})
	}
	procs[0].children = map[int][]int{1000: kids}
	r := newReader(writeFakeTree(t, procs...))
	r.maxProcs = 10
	s, err := r.tree(context.Background(), 1000)
	if err != nil || s.Processes != 10 || !s.Partial {
		t.Errorf("bounded walk = %+v, %v; want 10 processes, partial", s, err)
	}
}

func TestReadTreesDeadline(t *testing.T) {
	root := writeFakeTree(t,
		fakeProcess{pid: 10, ppid: 1, children: map[int][]int{10: {11}}},
		fakeProcess{pid: 11, ppid: 10},
		fakeProcess{pid: 20, ppid: 1},
	)
	res := ReadTrees(context.Background(), root, []int{10, 99, 20})
	if res[0].Err != nil || res[0].Stats.Processes != 2 || res[0].Pid != 10 ||
		!errors.Is(res[1].Err, fs.ErrNotExist) || res[1].Pid != 99 ||
		res[2].Err != nil || res[2].Stats.Processes != 1 {
		t.Errorf("ReadTrees = %+v", res)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range ReadTrees(ctx, root, []int{10, 20}) {
		if !errors.Is(r.Err, context.Canceled) || r.Stats != (Stats{}) {
			t.Errorf("after the deadline: %+v", r)
		}
	}
	// A deadline during a walk: the root is read, the rest is not, and
	// the result says so.
	s, err := newReader(root).tree(ctx, 10)
	if err != nil || s.Processes != 1 || !s.Partial {
		t.Errorf("walk cut short = %+v, %v", s, err)
	}
}

func TestParseChildren(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{"", nil, false},
		{"123 ", []int{123}, false},
		{"1 22 333 \n", []int{1, 22, 333}, false},
		{"1 x 3 ", []int{1}, true},
		{"0 ", nil, true},
		{"-5 ", nil, true},
		{"99999999999 ", nil, true},
	} {
		got, err := parseChildren([]byte(tc.in), nil)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("parseChildren(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseChildren(f *testing.F) {
	f.Add([]byte("1 22 333 \n"))
	f.Add([]byte("0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseChildren(data, nil)
		for _, p := range got {
			if p <= 0 || p > MaxPid {
				t.Fatalf("pid %d from %q", p, data)
			}
		}
		if err == nil && len(got) != len(strings.Fields(string(data))) {
			t.Fatalf("parseChildren(%q) = %v: not every field", data, got)
		}
	})
}

// ---- real processes ------------------------------------------------------

func TestMain(m *testing.M) {
	procoracle.RunHelper()
	os.Exit(m.Run())
}

func needProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skipf("no procfs: %v", err)
	}
}

// statusKB returns a "Key: value [kB]" line of a status file in bytes (kB)
// or as is; -1 when the file or the line is missing.
func statusKB(t *testing.T, path, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("%s: %s: %q", path, key, v)
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n
	}
	return -1
}

func within(got, want, frac float64) bool {
	return math.Abs(got-want) <= frac*math.Abs(want)
}

// closeTicks: CPU times read a moment apart agree within 10 % or two ticks
// (the unit of the kernel's figures).
func closeTicks(got, want uint64) bool {
	return within(float64(got), float64(want), 0.10) || max(got, want)-min(got, want) <= 2
}

func treePids(t *testing.T, root int) []int {
	t.Helper()
	var pids []int
	r := newReader("/proc")
	var walk func(p, threads int)
	walk = func(p, threads int) {
		pids = append(pids, p)
		kids, _ := r.children(p, threads)
		for _, k := range slices.Clone(kids) {
			walk(k, 2) // list every thread
		}
	}
	walk(root, 2)
	slices.Sort(pids)
	return pids
}

// TestTreeStatsRealTree: `sh -c 'helper & helper & wait'`, two helpers of
// 32 MiB each with 10 extra fds: the figures of sh's tree match an
// independent reading of /proc within 10 %.
func TestTreeStatsRealTree(t *testing.T) {
	needProc(t)
	sh, _ := procoracle.StartTree(t, `"$0" & "$0" & wait`, "32 10 0 block", 2)

	s, err := TreeStats("/proc", sh)
	if err != nil {
		t.Fatal(err)
	}
	ind := procoracle.ReadOrFail(t, sh)
	if s.Processes != 3 || len(ind.PIDs) != 3 {
		t.Fatalf("processes: TreeStats %d, independently %v", s.Processes, ind.PIDs)
	}
	if s.Partial {
		t.Error("partial")
	}
	if s.RSSBytes < 64<<20 || !within(float64(s.RSSBytes), float64(ind.RSSBytes), 0.10) {
		t.Errorf("RSS %d, independently %d (want ≥ 64 MiB)", s.RSSBytes, ind.RSSBytes)
	}
	if s.Threads != ind.Threads || s.Threads < 3 {
		t.Errorf("threads %d, independently %d", s.Threads, ind.Threads)
	}
	// Listing fd/ opens one more in this process, not in theirs: exact.
	if s.FDs != ind.FDs || s.FDs < 20 {
		t.Errorf("fds %d, independently %d (each helper has 10 extra)", s.FDs, ind.FDs)
	}
	if !closeTicks(s.CPUTicks, ind.CPUTicks) {
		t.Errorf("CPU ticks %d, independently %d", s.CPUTicks, ind.CPUTicks)
	}

	// The scan used without children files finds the same tree.
	r := newReader("/proc")
	r.parents = scanParents("/proc")
	s2, err := r.tree(context.Background(), sh)
	if err != nil || s2.Processes != s.Processes || s2.FDs != s.FDs || s2.Threads != s.Threads {
		t.Errorf("scan fallback = %+v, %v; children files gave %+v", s2, err, s)
	}
}

// TestTreeStatsExec: `sh -c 'exec helper'` is one process, the helper.
func TestTreeStatsExec(t *testing.T) {
	needProc(t)
	sh, lines := procoracle.StartTree(t, `exec "$0"`, "16 0 0 block", 1)
	if lines[0][1] != strconv.Itoa(sh) {
		t.Fatalf("ready from pid %s, sh was %d: no exec?", lines[0][1], sh)
	}
	s, err := TreeStats("/proc", sh)
	if err != nil || s.Processes != 1 || s.RSSBytes < 16<<20 {
		t.Fatalf("TreeStats = %+v, %v", s, err)
	}
	ind := procoracle.ReadOrFail(t, sh)
	if !within(float64(s.RSSBytes), float64(ind.RSSBytes), 0.10) {
		t.Errorf("RSS %d, independently %d", s.RSSBytes, ind.RSSBytes)
	}
}

// TestTreeStatsKeepsWaitedChildren: a child that burnt CPU and was waited for
// by sh stays in the tree's CPU time (through sh's cutime/cstime).
func TestTreeStatsKeepsWaitedChildren(t *testing.T) {
	needProc(t)
	// The first helper burns 300 ms and exits; sh waits for it, then
	// runs a second one (which burns 300 ms too) that stays.
	sh, _ := procoracle.StartTree(t, `GM2_PROC_TEST_HELPER="0 0 300 exit" "$0"; "$0"`, "0 0 300 block", 1)
	s, err := TreeStats("/proc", sh)
	if err != nil || s.Processes != 2 {
		t.Fatalf("TreeStats = %+v, %v", s, err)
	}
	ind := procoracle.ReadOrFail(t, sh)
	if ind.ChildTicks == 0 {
		t.Fatalf("sh's cutime+cstime is 0: the exited child's time is not there")
	}
	if s.CPUSeconds() < 0.55 || !closeTicks(s.CPUTicks, ind.CPUTicks) {
		t.Errorf("CPU %.2f s (%d ticks), independently %d ticks; want ≥ 0.6 s", s.CPUSeconds(), s.CPUTicks, ind.CPUTicks)
	}
}

// TestTreeStatsThreadChildren: children forked by different threads of a
// process are all found (each thread has its own children list).
func TestTreeStatsThreadChildren(t *testing.T) {
	needProc(t)
	sh, lines := procoracle.StartTree(t, `exec "$0"`, "0 0 0 spawn 6", 1)
	want := []int{sh}
	for _, f := range lines[0][2:] {
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			t.Fatalf("helper could not start sleep: %q", lines[0])
		}
		want = append(want, p)
	}
	slices.Sort(want)
	if got := treePids(t, sh); !slices.Equal(got, want) {
		t.Errorf("tree %v, want %v", got, want)
	}
	s, err := TreeStats("/proc", sh)
	if err != nil || s.Processes != 7 {
		t.Errorf("TreeStats = %+v, %v; want 7 processes", s, err)
	}
}

func TestReadTreesReal(t *testing.T) {
	needProc(t)
	a, _ := procoracle.StartTree(t, `exec "$0"`, "8 0 0 block", 1)
	b, _ := procoracle.StartTree(t, `"$0"; :`, "8 0 0 block", 1)
	res := ReadTrees(context.Background(), "/proc", []int{a, 1 << 30, b})
	if res[0].Err != nil || res[0].Stats.Processes != 1 || res[0].Stats.RSSBytes < 8<<20 {
		t.Errorf("tree a: %+v", res[0])
	}
	if !isGone(res[1].Err) {
		t.Errorf("no such pid: %+v", res[1])
	}
	if res[2].Err != nil || res[2].Stats.Processes != 2 {
		t.Errorf("tree b: %+v", res[2])
	}
}

// BenchmarkTreeStats measures one tree of this test process's own children
// (a shell and two helpers); bench/ measures the 64-worker scrape.
func BenchmarkTreeStats(b *testing.B) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		b.Skip("no procfs")
	}
	sh, _ := procoracle.StartTree(b, `"$0" & "$0" & wait`, "0 0 0 block", 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := TreeStats("/proc", sh); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSSvsPSS compares reading the RSS (stat) and the PSS
// (smaps_rollup) of this process.
func BenchmarkRSSvsPSS(b *testing.B) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		b.Skip("no smaps_rollup")
	}
	pid := os.Getpid()
	b.Run("stat", func(b *testing.B) {
		r := newReader("/proc")
		for b.Loop() {
			var s Stats
			if _, err := r.add(&s, pid, -1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("smaps_rollup", func(b *testing.B) {
		for b.Loop() {
			if _, err := ReadPSS("/proc", pid); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestTreeStatsThreadEndedMidWalk: a thread listed in task/ that has ended
// before its children file is read (here a dangling task entry) is
// skipped; the children of the threads after it still count.
func TestTreeStatsThreadEndedMidWalk(t *testing.T) {
	live := []int{10, 11, 12, 13, 14, 15}
	kids := map[int][]int{}
	procs := []fakeProcess{}
	for i, tid := range live {
		kids[tid] = []int{100 + i}
		procs = append(procs, fakeProcess{pid: 100 + i, ppid: 10, rssPages: 1})
	}
	procs = append(procs, fakeProcess{pid: 10, ppid: 1, tids: live, children: kids})
	root := writeFakeTree(t, procs...)
	// Ended threads, many of them so that getdents lists some before the
	// live ones whatever its order: task/ entries that lead nowhere.
	for tid := 16; tid < 26; tid++ {
		if err := os.Symlink("gone", filepath.Join(root, "10", "task", strconv.Itoa(tid))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := TreeStats(root, 10)
	if err != nil || s.Processes != 1+len(live) || s.Partial {
		t.Errorf("TreeStats = %+v, %v; want %d processes, not partial", s, err, 1+len(live))
	}
}

// TestExeNameDeleted: a program replaced on disk since it started (an
// upgrade in place) is still named by its file name.
func TestExeNameDeleted(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/local/bin/node (deleted)", filepath.Join(root, "42", "exe")); err != nil {
		t.Fatal(err)
	}
	if n := ExeName(root, 42); n != "node" {
		t.Errorf("ExeName = %q, want node", n)
	}
}
