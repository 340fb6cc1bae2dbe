package cpus

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestDetectFixtures runs Detect over the fixture trees in testdata/: each is
// a fake root file system holding proc/self/cgroup, proc/self/mountinfo and
// the cgroup files, laid out as on a real host.
func TestDetectFixtures(t *testing.T) {
	type tc struct {
		name     string // test name
		dir      string // fixture under testdata/
		affinity int
		opt      Options
		max      int
		source   string // substring of Result.Source
		warn     string // substring of some warning; "" = no warnings at all
	}
	ceil := Options{Rounding: Ceil}
	cases := []tc{
		// Examples from the issue, cgroup v2 with its own namespace.
		{name: "max means no limit", dir: "v2-max-unlimited", affinity: 8, max: 8, source: "affinity mask (8 CPUs), no cgroup CPU limit"},
		{name: "two CPUs", dir: "v2-two", affinity: 8, max: 2, source: "cpu.max 200000/100000 at /sys/fs/cgroup → 2"},
		{name: "1.5 floors to 1", dir: "v2-one-and-a-half", affinity: 8, max: 1, source: "cpu.max 150000/100000 at /sys/fs/cgroup → 1"},
		{name: "1.5 ceils to 2", dir: "v2-one-and-a-half", affinity: 8, opt: ceil, max: 2, source: "cpu.max 150000/100000 at /sys/fs/cgroup → 2 (rounded up)"},
		{name: "k8s 500m is one worker", dir: "v2-k8s-500m", affinity: 16, max: 1, source: "→ 1 (quota below one CPU)"},
		{name: "k8s 500m ceil is one worker", dir: "v2-k8s-500m", affinity: 16, opt: ceil, max: 1, source: "50000/100000"},
		{name: "50ms period floor", dir: "v2-period-50ms", affinity: 8, max: 2, source: "125000/50000"},
		{name: "50ms period ceil", dir: "v2-period-50ms", affinity: 8, opt: ceil, max: 3, source: "125000/50000"},
		{name: "quota above affinity", dir: "v2-sixteen", affinity: 4, max: 4, source: "affinity mask (4 CPUs), within cpu.max 1600000/100000 at /sys/fs/cgroup"},
		// automaxprocs: a cpuset (seen through the affinity mask) caps the quota.
		{name: "cpuset caps quota", dir: "v2-four", affinity: 2, max: 2, source: "affinity mask (2 CPUs), within cpu.max 400000/100000"},
		{name: "exact quota ceil adds nothing", dir: "v2-four", affinity: 8, opt: ceil, max: 4, source: "cpu.max 400000/100000 at /sys/fs/cgroup → 4"},
		{name: "extra fields and no final newline", dir: "v2-extra-fields-no-newline", affinity: 8, max: 2, source: "200000/100000"},
		{name: "max without period", dir: "v2-max-alone", affinity: 8, max: 8, source: "no cgroup CPU limit"},
		// ClickHouse#66237: the root level has an empty relative name and still counts.
		{name: "limit at the mount point", dir: "v2-two", affinity: 8, max: 2, source: "at /sys/fs/cgroup →"},
		{name: "missing cpu.max is no limit", dir: "v2-no-cpu-max", affinity: 6, max: 6, source: "no cgroup CPU limit"},
		{name: "cpu.weight never counts", dir: "v2-weight-ignored", affinity: 6, max: 6, source: "no cgroup CPU limit"},

		// Malformed cpu.max: warn, ignore the level.
		{name: "garbage quota", dir: "v2-malformed-garbage-quota", affinity: 8, max: 8, source: "limit unknown", warn: "/sys/fs/cgroup/cpu.max"},
		{name: "one field", dir: "v2-malformed-one-field", affinity: 8, max: 8, source: "limit unknown", warn: "QUOTA PERIOD"},
		{name: "zero period", dir: "v2-malformed-zero-period", affinity: 8, max: 8, source: "limit unknown", warn: "period \"0\""},
		{name: "empty file", dir: "v2-malformed-empty", affinity: 8, max: 8, source: "limit unknown", warn: "empty cpu.max"},
		{name: "zero quota", dir: "v2-malformed-zero-quota", affinity: 8, max: 8, warn: "quota \"0\""},
		{name: "negative quota", dir: "v2-malformed-negative-quota", affinity: 8, max: 8, warn: "quota \"-1\""},
		{name: "blank first line", dir: "v2-malformed-blank-line", affinity: 8, max: 8, warn: "empty cpu.max"},
		{name: "unreadable cpu.max", dir: "v2-unreadable", affinity: 3, max: 3, source: "affinity mask (3 CPUs)", warn: "read /sys/fs/cgroup/cpu.max"},

		// Nesting: the minimum over every level.
		{name: "parent tighter than leaf", dir: "v2-nested-parent-tighter", affinity: 8, max: 2, source: "cpu.max 200000/100000 at /sys/fs/cgroup →"},
		{name: "middle level tightest", dir: "v2-nested-middle-tightest", affinity: 8, max: 2, source: "at /sys/fs/cgroup/kubepods/pod1 →"},
		// libuv returned the outermost limited level (4 here).
		{name: "leaf tightest", dir: "v2-nested-leaf-tightest", affinity: 8, max: 1, source: "cpu.max 100000/100000 at /sys/fs/cgroup/kubepods/pod1/ctr → 1"},
		{name: "fractions compared exactly", dir: "v2-nested-exact-fractions", affinity: 8, opt: ceil, max: 2, source: "cpu.max 300000/200000 at /sys/fs/cgroup/a/b → 2"},
		{name: "broken level skipped", dir: "v2-nested-broken-leaf", affinity: 8, max: 2, source: "cpu.max 200000/100000 at /sys/fs/cgroup →", warn: "/sys/fs/cgroup/a/cpu.max"},

		// Path resolution.
		{name: "dotdot in cgroup path", dir: "v2-dotdot", affinity: 8, max: 8, source: "limit unknown", warn: `".." component`},
		{name: "no cgroup2 mount", dir: "v2-no-mount", affinity: 5, max: 5, source: "limit unknown", warn: "no cgroup2 mount"},
		// dotnet/coreclr#13489: split at " - ", unescape \040.
		{name: "escapes and hyphens", dir: "v2-escaped-hyphens", affinity: 8, max: 2, source: "cpu.max 200000/100000 at /sys/fs/a - b/my app →"},
		{name: "two mounts of one hierarchy", dir: "v2-two-mounts", affinity: 8, max: 1, source: "at /sys/fs/cgroup/kubepods →"},
		{name: "no /proc", dir: "no-proc", affinity: 3, max: 3, source: "affinity mask (3 CPUs), cgroup CPU limit unknown", warn: "read /proc/self/cgroup"},
		{name: "no mountinfo", dir: "no-mountinfo", affinity: 3, max: 3, source: "limit unknown", warn: "read /proc/self/mountinfo"},
		{name: "no cpu controller", dir: "no-cpu-controller", affinity: 3, max: 3, source: "no cgroup CPU limit"},

		// cgroup v1.
		// golang/go#76390: Docker on v1 shows /docker/abc, the mount's root is /docker/abc.
		{name: "v1 mount root stripped", dir: "v1-docker-mount-root", affinity: 4, max: 1, source: "cpu.cfs_quota_us/cpu.cfs_period_us 150000/100000 at /sys/fs/cgroup/cpu,cpuacct → 1"},
		{name: "v1 mount root, decoy below", dir: "v1-docker-mount-root-decoy", affinity: 8, max: 3, source: "300000/100000 at /sys/fs/cgroup/cpu,cpuacct → 3"},
		{name: "v1 mount root stripped ceil", dir: "v1-docker-mount-root", affinity: 4, opt: ceil, max: 2, source: "→ 2 (rounded up)"},
		{name: "v1 quota -1", dir: "v1-unlimited", affinity: 4, max: 4, source: "affinity mask (4 CPUs), no cgroup CPU limit"},
		{name: "v1 parent tighter", dir: "v1-nested-parent-tighter", affinity: 8, max: 2, source: "250000/100000 at /sys/fs/cgroup/cpu,cpuacct/docker → 2"},
		{name: "v1 not under mount root", dir: "v1-not-under-root", affinity: 4, max: 4, source: "limit unknown", warn: "not under the mount root"},
		{name: "v1 garbage quota", dir: "v1-malformed-garbage-quota", affinity: 4, max: 4, warn: "cpu.cfs_quota_us \"abc\\n\" is not an integer"},
		{name: "v1 missing period", dir: "v1-malformed-missing-period", affinity: 4, max: 4, warn: "read /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"},
		{name: "v1 zero period", dir: "v1-malformed-zero-period", affinity: 4, max: 4, warn: "cpu.cfs_period_us \"0\\n\""},
		{name: "v1 garbage period", dir: "v1-malformed-garbage-period", affinity: 4, max: 4, warn: "cpu.cfs_period_us \"1e5\\n\""},
		// automaxprocs#85: other controllers' odd lines must not matter.
		{name: "v1 unrelated controllers", dir: "v1-unrelated-controllers", affinity: 8, max: 2, source: "200000/100000 at /sys/fs/cgroup/cpu/app → 2"},

		// Hybrid hosts.
		{name: "hybrid", dir: "hybrid", affinity: 8, max: 3, source: "cpu.cfs_quota_us/cpu.cfs_period_us 300000/100000 at /sys/fs/cgroup/cpu,cpuacct → 3"},
		{name: "hybrid ignores v2 cpu.max", dir: "hybrid-v2-decoy", affinity: 8, max: 3, source: "300000/100000"},
		{name: "hybrid without v1 mount", dir: "hybrid-v1-unmounted", affinity: 8, max: 8, source: "limit unknown", warn: "no cgroup (v1) mount with the cpu controller"},

		// Override and options.
		{name: "override wins", dir: "v2-two", affinity: 8, opt: Options{Override: 5}, max: 5, source: "GM2_CPUS/--cpus override → 5"},
		{name: "override above affinity", dir: "v2-two", affinity: 2, opt: Options{Override: 64}, max: 64, source: "override → 64"},
		{name: "unknown rounding is floor", dir: "v2-one-and-a-half", affinity: 8, opt: Options{Rounding: Rounding(7)}, max: 1, source: "→ 1", warn: "unknown CPU rounding Rounding(7)"},
		{name: "affinity zero", dir: "v2-max-unlimited", affinity: 0, max: 1, source: "affinity mask (1 CPU), no cgroup CPU limit", warn: "affinity mask reports 0 CPUs"},
	}
	used := map[string]bool{}
	for _, c := range cases {
		used[c.dir] = true
		t.Run(c.name, func(t *testing.T) {
			fsys := os.DirFS(filepath.Join("testdata", c.dir))
			got := Detect(fsys, c.affinity, c.opt)
			checkResult(t, got, c.max, c.source, c.warn)
		})
	}

	// Every fixture is exercised: a tree nobody reads tests nothing.
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "fuzz" && !used[e.Name()] {
			t.Errorf("fixture testdata/%s is not used by any case", e.Name())
		}
	}
}

func checkResult(t *testing.T, got Result, max int, source, warn string) {
	t.Helper()
	if got.Max != max {
		t.Errorf("Max = %d, want %d (source %q, warnings %q)", got.Max, max, got.Source, got.Warnings)
	}
	if got.Max < 1 {
		t.Errorf("Max = %d, must be >= 1", got.Max)
	}
	if !strings.Contains(got.Source, source) {
		t.Errorf("Source = %q, want it to contain %q", got.Source, source)
	}
	if strings.ContainsAny(got.Source, "\n\r") {
		t.Errorf("Source %q is not one line", got.Source)
	}
	for _, w := range got.Warnings {
		if strings.ContainsAny(w, "\n\r") {
			t.Errorf("warning %q is not one line", w)
		}
	}
	switch {
	case warn == "" && len(got.Warnings) > 0:
		t.Errorf("unexpected warnings %q", got.Warnings)
	case warn != "":
		found := false
		for _, w := range got.Warnings {
			found = found || strings.Contains(w, warn)
		}
		if !found {
			t.Errorf("warnings %q, want one containing %q", got.Warnings, warn)
		}
	}
}

// failFS fails every operation, as a /proc denied by a security profile would.
type failFS struct{ err error }

func (f failFS) Open(name string) (fs.File, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: f.err}
}

// TestOverrideReadsNothing checks the override does not touch the file
// system: with it set, a broken /proc must produce no warnings.
func TestOverrideReadsNothing(t *testing.T) {
	got := Detect(failFS{fs.ErrPermission}, 4, Options{Override: 3})
	checkResult(t, got, 3, "override", "")
	if got.Affinity != 4 {
		t.Errorf("Affinity = %d, want 4", got.Affinity)
	}
}

// TestUnreadableProc covers I/O errors other than "missing".
func TestUnreadableProc(t *testing.T) {
	got := Detect(failFS{fs.ErrPermission}, 3, Options{})
	checkResult(t, got, 3, "affinity mask (3 CPUs), cgroup CPU limit unknown", "read /proc/self/cgroup: permission denied")
}

// flakyFS fails opening one file with err and serves the rest from files.
// It has only Open (no embedded MapFS) so that fs.ReadFile cannot bypass it.
type flakyFS struct {
	files fstest.MapFS
	name  string
	err   error
}

func (f flakyFS) Open(name string) (fs.File, error) {
	if name == f.name {
		return nil, &fs.PathError{Op: "open", Path: name, Err: f.err}
	}
	return f.files.Open(name)
}

func v2MapFS(cgroup, mountinfo string, files map[string]string) fstest.MapFS {
	m := fstest.MapFS{
		"proc/self/cgroup":    {Data: []byte(cgroup)},
		"proc/self/mountinfo": {Data: []byte(mountinfo)},
	}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

// TestUnreadableLevels: an I/O error at one level ignores that level only.
func TestUnreadableLevels(t *testing.T) {
	mi := "30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	files := map[string]string{
		"sys/fs/cgroup/a/cpu.max": "100000 100000\n",
		"sys/fs/cgroup/cpu.max":   "300000 100000\n",
	}
	fsys := flakyFS{v2MapFS("0::/a\n", mi, files), "sys/fs/cgroup/a/cpu.max", errors.New("input/output error")}
	got := Detect(fsys, 8, Options{})
	checkResult(t, got, 3, "cpu.max 300000/100000 at /sys/fs/cgroup → 3", "read /sys/fs/cgroup/a/cpu.max: input/output error")

	fsys = flakyFS{v2MapFS("0::/a\n", mi, files), "proc/self/mountinfo", fs.ErrPermission}
	got = Detect(fsys, 8, Options{})
	checkResult(t, got, 8, "limit unknown", "read /proc/self/mountinfo: permission denied")
}

// TestEscapedNames covers escapes that cannot be file names in a Go module
// (tab, newline, backslash), so they live in a MapFS rather than testdata/.
func TestEscapedNames(t *testing.T) {
	mi := "30 1 0:30 /ro\\134ot /sys/fs/c\\011g\\012x rw - cgroup2 cgroup2 rw\n"
	files := map[string]string{
		"sys/fs/c\tg\nx/pod/cpu.max": "200000 100000\n",
	}
	got := Detect(v2MapFS("0::/ro\\ot/pod\n", mi, files), 8, Options{})
	// Control characters of a path are escaped (echo.Line): a log line
	// stays one line and a tab cannot pass for a field separator.
	checkResult(t, got, 2, `cpu.max 200000/100000 at /sys/fs/c\tg\nx/pod → 2`, "")
}

// TestHugeMountinfo: thousands of unrelated mounts (Kubernetes nodes) and one
// very long line are read once, line by line.
func TestHugeMountinfo(t *testing.T) {
	var b strings.Builder
	b.WriteString("1 0 0:1 / / rw - overlay overlay rw,lowerdir=" + strings.Repeat("/x", 40000) + "\n")
	for i := 0; i < 5000; i++ {
		b.WriteString("100 1 0:50 / /var/lib/kubelet/pods/p/volumes/v rw,relatime shared:1 - tmpfs tmpfs rw\n")
	}
	b.WriteString("30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
	got := Detect(v2MapFS("0::/\n", b.String(), map[string]string{"sys/fs/cgroup/cpu.max": "200000 100000"}), 8, Options{})
	checkResult(t, got, 2, "→ 2", "")

	// A line beyond the cgroup package's bound on one mountinfo line (1 MiB)
	// is an I/O-level failure: warn, use A.
	over := "1 0 0:1 / / rw - overlay overlay rw,lowerdir=" + strings.Repeat("y", 1<<20) + "\n"
	got = Detect(v2MapFS("0::/\n", over, map[string]string{"sys/fs/cgroup/cpu.max": "200000 100000"}), 8, Options{})
	checkResult(t, got, 8, "limit unknown", "read /proc/self/mountinfo")
}

func TestParseRounding(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Rounding
	}{{"floor", Floor}, {"ceil", Ceil}, {"CEIL", Ceil}, {" Floor ", Floor}} {
		got, err := ParseRounding(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRounding(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if back, err := ParseRounding(got.String()); err != nil || back != got {
			t.Errorf("ParseRounding(%q.String()) = %v, %v", got, back, err)
		}
	}
	for _, in := range []string{"", "round", "up", "ceiling", "1"} {
		_, err := ParseRounding(in)
		if err == nil {
			t.Errorf("ParseRounding(%q) succeeded, want an error", in)
			continue
		}
		if !strings.Contains(err.Error(), `"floor"`) || !strings.Contains(err.Error(), `"ceil"`) {
			t.Errorf("ParseRounding(%q) error %q does not name the accepted forms", in, err)
		}
	}
	if s := Rounding(9).String(); s != "Rounding(9)" {
		t.Errorf("Rounding(9).String() = %q", s)
	}
}

// TestSourceExact pins decisions whose result a substring of Source cannot
// tell apart: which level wins when the leaf is limited too, the note of a
// rounded quota, a quota equal to the affinity count, a v1 quota of 0 and an
// override of 1.
func TestSourceExact(t *testing.T) {
	v2mi := "30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	v1mi := "30 1 0:35 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
	for _, c := range []struct {
		name     string
		fsys     fs.FS
		affinity int
		opt      Options
		max      int
		source   string // the whole Source
	}{
		{
			// The leaf's own limit is looser than its parent's: the
			// smallest over all levels counts, not the first one found.
			name: "parent tighter than a limited leaf",
			fsys: v2MapFS("0::/pod/ctr\n", v2mi, map[string]string{
				"sys/fs/cgroup/pod/ctr/cpu.max": "400000 100000\n",
				"sys/fs/cgroup/pod/cpu.max":     "200000 100000\n",
			}),
			affinity: 8, max: 2, source: "cpu.max 200000/100000 at /sys/fs/cgroup/pod → 2",
		},
		{
			name:     "exact quota under ceil is not rounded up",
			fsys:     v2MapFS("0::/\n", v2mi, map[string]string{"sys/fs/cgroup/cpu.max": "400000 100000\n"}),
			affinity: 8, opt: Options{Rounding: Ceil}, max: 4, source: "cpu.max 400000/100000 at /sys/fs/cgroup → 4",
		},
		{
			name:     "quota equal to the affinity count",
			fsys:     v2MapFS("0::/\n", v2mi, map[string]string{"sys/fs/cgroup/cpu.max": "400000 100000\n"}),
			affinity: 4, max: 4, source: "affinity mask (4 CPUs), within cpu.max 400000/100000 at /sys/fs/cgroup",
		},
		{
			name: "v1 quota 0 is no limit",
			fsys: v2MapFS("11:cpu,cpuacct:/\n", v1mi, map[string]string{
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "0\n",
				"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
			}),
			affinity: 4, max: 4, source: "affinity mask (4 CPUs), no cgroup CPU limit",
		},
		{
			name:     "override of one CPU",
			fsys:     v2MapFS("0::/\n", v2mi, map[string]string{"sys/fs/cgroup/cpu.max": "400000 100000\n"}),
			affinity: 8, opt: Options{Override: 1}, max: 1, source: "GM2_CPUS/--cpus override → 1",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Detect(c.fsys, c.affinity, c.opt)
			checkResult(t, got, c.max, c.source, "")
			if got.Source != c.source {
				t.Errorf("Source = %q, want exactly %q", got.Source, c.source)
			}
		})
	}
}
