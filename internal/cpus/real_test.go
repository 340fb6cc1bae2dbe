//go:build linux

package cpus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/cgroup"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// The real tests re-execute the test binary as a helper process that moves
// itself into a cgroup and/or pins itself to one CPU, runs DetectSystem and
// prints the Result as JSON. A separate process is needed because the test
// process must not change its own cgroup or affinity.
const (
	envHelper   = "CPUS_TEST_HELPER"   // "1": run as the helper
	envProcs    = "CPUS_TEST_PROCS"    // cgroup.procs file to write our own pid to
	envCPU      = "CPUS_TEST_CPU"      // pin the detecting thread to this CPU
	envRounding = "CPUS_TEST_ROUNDING" // Options.Rounding
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		if err := helperMain(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helperMain() error {
	if p := os.Getenv(envProcs); p != "" {
		// Writing our own pid moves the whole process (every thread).
		if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fmt.Errorf("join cgroup via %s: %w", p, err)
		}
	}
	if c := os.Getenv(envCPU); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil {
			return fmt.Errorf("parse %s=%q: %w", envCPU, c, err)
		}
		// sched_setaffinity(0) pins only the calling thread, and
		// DetectSystem asks about the calling thread: keep them the same.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(n)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", n, err)
		}
	}
	var opt Options
	if r := os.Getenv(envRounding); r != "" {
		var err error
		if opt.Rounding, err = ParseRounding(r); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(DetectSystem(opt))
}

// runHelper runs the helper with the given environment (plus argv prefix, for
// taskset) and returns what its DetectSystem saw.
func runHelper(t *testing.T, prefix []string, env ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append(append([]string(nil), prefix...), os.Args[0], "-test.run=^$")
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	// A race-enabled binary sleeps 1 s at exit by default (GORACE
	// atexit_sleep_ms); the helper has no goroutines left to wait for.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), append([]string{envHelper + "=1", "GORACE=" + gorace}, env...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %q: %v; stderr: %s", args, err, stderr.String())
	}
	var res Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	t.Logf("helper: Max=%d Affinity=%d Source=%q Warnings=%q", res.Max, res.Affinity, res.Source, res.Warnings)
	return res
}

// affinitySet returns the CPUs this test process may run on.
func affinitySet(t *testing.T) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

func TestDetectSystemInProcess(t *testing.T) {
	res := DetectSystem(Options{})
	t.Logf("Max=%d Affinity=%d Source=%q Warnings=%q", res.Max, res.Affinity, res.Source, res.Warnings)
	if res.Affinity != len(affinitySet(t)) {
		t.Errorf("Affinity = %d, want %d", res.Affinity, len(affinitySet(t)))
	}
	if res.Max < 1 || res.Max > res.Affinity {
		t.Errorf("Max = %d, want 1..%d", res.Max, res.Affinity)
	}
	if res := DetectSystem(Options{Override: 77}); res.Max != 77 {
		t.Errorf("override: Max = %d, want 77", res.Max)
	}
}

// TestRealAffinity pins a helper process to one CPU, the way taskset or a
// cpuset does, and checks the count follows the mask and not the host.
func TestRealAffinity(t *testing.T) {
	cpus := affinitySet(t)
	if len(cpus) < 2 {
		t.Skipf("this process may use %d CPU; pinning to one would not change the count", len(cpus))
	}
	one := cpus[len(cpus)-1]

	// Control: unpinned, the helper sees the whole mask.
	if res := runHelper(t, nil); res.Affinity != len(cpus) {
		t.Fatalf("unpinned helper: Affinity = %d, want %d", res.Affinity, len(cpus))
	}

	t.Run("sched_setaffinity", func(t *testing.T) {
		res := runHelper(t, nil, envCPU+"="+strconv.Itoa(one))
		if res.Affinity != 1 || res.Max != 1 {
			t.Errorf("pinned to CPU %d: Affinity = %d, Max = %d; want 1, 1", one, res.Affinity, res.Max)
		}
	})
	t.Run("taskset", func(t *testing.T) {
		taskset := testtool.Require(t, "taskset", "Debian package util-linux")
		res := runHelper(t, []string{taskset, "-c", strconv.Itoa(one)})
		if res.Affinity != 1 || res.Max != 1 {
			t.Errorf("taskset -c %d: Affinity = %d, Max = %d; want 1, 1", one, res.Affinity, res.Max)
		}
	})
}

// ownCPUCgroup finds this process's CPU cgroup directory with the package's
// own resolution; the real tests then check the kernel agrees with it.
func ownCPUCgroup(t *testing.T) (cgroup.Ref, string) {
	t.Helper()
	loc, found, err := cgroup.Locate(os.DirFS("/"), "cpu")
	if err != nil {
		t.Skipf("locate the CPU cgroup: %v", err)
	}
	if !found {
		t.Skip("this kernel has no CPU cgroup")
	}
	return loc.Ref, cgroup.DisplayPath(loc.Levels[0])
}

// makeCgroup creates a child cgroup of parent and removes it at cleanup,
// after every process in it has exited (the helper is waited for before the
// test returns, so it is empty by then).
func makeCgroup(t *testing.T, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, fmt.Sprintf("gm2-cpus-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_")))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup here: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return dir
}

// writeFile sets a cgroup file. On cgroup v1 the kernel refuses (EINVAL) a
// child quota above an ancestor's, which only means this host's own limit
// is too tight for the test, not that the code under test is wrong.
func writeFile(t *testing.T, name, value string) {
	t.Helper()
	err := os.WriteFile(name, []byte(value), 0)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("the kernel refused %q for %s (an ancestor's quota is tighter?): %v", value, name, err)
	}
	if err != nil {
		t.Fatalf("write %q to %s: %v", value, name, err)
	}
}

func needRootAndCPUs(t *testing.T) []int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	cpus := affinitySet(t)
	if len(cpus) < 2 {
		t.Skipf("this process may use %d CPU; a 1-CPU quota would not change the count", len(cpus))
	}
	// The quotas below must be the tightest on the path for the expected
	// Source to name them; a host already limited below 2 CPUs cannot show that.
	if res := DetectSystem(Options{}); res.Max < 2 {
		t.Skipf("this process is already limited to %d CPU (%s)", res.Max, res.Source)
	}
	return cpus
}

// TestRealCgroupV1 runs a helper inside freshly made cgroup v1 cpu groups
// with quotas and checks the kernel's view matches DetectSystem's.
func TestRealCgroupV1(t *testing.T) {
	cpus := needRootAndCPUs(t)
	ref, base := ownCPUCgroup(t)
	if ref.V2 {
		t.Skip("the cpu controller is on cgroup v2 here; see TestRealCgroupV2")
	}
	a := len(cpus)
	const label = "cpu.cfs_quota_us/cpu.cfs_period_us"

	t.Run("leaf quota", func(t *testing.T) {
		dir := makeCgroup(t, base)
		writeFile(t, filepath.Join(dir, "cpu.cfs_period_us"), "100000")
		writeFile(t, filepath.Join(dir, "cpu.cfs_quota_us"), "100000")
		res := runHelper(t, nil, envProcs+"="+filepath.Join(dir, "cgroup.procs"))
		checkReal(t, res, a, 1, fmt.Sprintf("%s 100000/100000 at %s → 1", label, dir))
	})
	t.Run("parent tighter", func(t *testing.T) {
		parent := makeCgroup(t, base)
		writeFile(t, filepath.Join(parent, "cpu.cfs_period_us"), "100000")
		writeFile(t, filepath.Join(parent, "cpu.cfs_quota_us"), "100000")
		leaf := makeCgroup(t, parent)
		res := runHelper(t, nil, envProcs+"="+filepath.Join(leaf, "cgroup.procs"))
		checkReal(t, res, a, 1, fmt.Sprintf("%s 100000/100000 at %s → 1", label, parent))
	})
	t.Run("rounding", func(t *testing.T) {
		dir := makeCgroup(t, base)
		writeFile(t, filepath.Join(dir, "cpu.cfs_period_us"), "100000")
		writeFile(t, filepath.Join(dir, "cpu.cfs_quota_us"), "150000")
		procs := envProcs + "=" + filepath.Join(dir, "cgroup.procs")
		res := runHelper(t, nil, procs)
		checkReal(t, res, a, 1, fmt.Sprintf("%s 150000/100000 at %s → 1", label, dir))
		res = runHelper(t, nil, procs, envRounding+"=ceil")
		checkReal(t, res, a, 2, fmt.Sprintf("%s 150000/100000 at %s", label, dir))
	})
	t.Run("affinity below quota", func(t *testing.T) {
		dir := makeCgroup(t, base)
		writeFile(t, filepath.Join(dir, "cpu.cfs_period_us"), "100000")
		writeFile(t, filepath.Join(dir, "cpu.cfs_quota_us"), "400000")
		res := runHelper(t, nil, envProcs+"="+filepath.Join(dir, "cgroup.procs"), envCPU+"="+strconv.Itoa(cpus[0]))
		checkReal(t, res, 1, 1, fmt.Sprintf("affinity mask (1 CPU), within %s 400000/100000 at %s", label, dir))
	})
}

// TestRealCgroupV2 does the same on a cgroup v2 host, where a child cgroup
// only gets cpu.max if the cpu controller is enabled in the parent's
// cgroup.subtree_control. That needs the controller delegated to us and, for
// a non-root cgroup, no processes of its own (the "no internal processes"
// rule), so it is attempted and skipped when the kernel refuses.
func TestRealCgroupV2(t *testing.T) {
	a := len(needRootAndCPUs(t))
	ref, base := ownCPUCgroup(t)
	if !ref.V2 {
		t.Skip("the cpu controller is on a cgroup v1 hierarchy here; see TestRealCgroupV1")
	}
	ctrls, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil || !slices.Contains(strings.Fields(string(ctrls)), "cpu") {
		t.Skipf("the cpu controller is not available in %s (controllers %q, %v)", base, ctrls, err)
	}
	subtree := filepath.Join(base, "cgroup.subtree_control")
	enabled, err := os.ReadFile(subtree)
	if err != nil {
		t.Skipf("read %s: %v", subtree, err)
	}
	if !slices.Contains(strings.Fields(string(enabled)), "cpu") {
		if err := os.WriteFile(subtree, []byte("+cpu"), 0); err != nil {
			t.Skipf("cannot enable the cpu controller for children of %s: %v", base, err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(subtree, []byte("-cpu"), 0); err != nil && !errors.Is(err, unix.EBUSY) {
				t.Errorf("restore %s: %v", subtree, err)
			}
		})
	}
	dir := makeCgroup(t, base)
	writeFile(t, filepath.Join(dir, "cpu.max"), "100000 100000")
	res := runHelper(t, nil, envProcs+"="+filepath.Join(dir, "cgroup.procs"))
	checkReal(t, res, a, 1, fmt.Sprintf("cpu.max 100000/100000 at %s → 1", dir))
}

func checkReal(t *testing.T, res Result, affinity, max int, source string) {
	t.Helper()
	if res.Affinity != affinity {
		t.Errorf("Affinity = %d, want %d", res.Affinity, affinity)
	}
	want := max
	if want > affinity {
		want = affinity
	}
	if res.Max != want {
		t.Errorf("Max = %d, want %d (%s)", res.Max, want, res.Source)
	}
	if !strings.Contains(res.Source, source) {
		t.Errorf("Source = %q, want it to contain %q", res.Source, source)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("unexpected warnings %q", res.Warnings)
	}
}
