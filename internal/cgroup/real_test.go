//go:build linux

package cgroup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The real tests re-execute the test binary as a helper that moves itself
// into a fresh memory cgroup, runs ReadMemoryLimitSystem and prints the
// result as JSON: the test process itself must not change cgroup.
const envProcs = "CGROUP_TEST_PROCS" // cgroup.procs file the helper joins

func TestMain(m *testing.M) {
	if p := os.Getenv(envProcs); p != "" {
		if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			fmt.Fprintf(os.Stderr, "helper: join cgroup via %s: %v\n", p, err)
			os.Exit(2)
		}
		if err := json.NewEncoder(os.Stdout).Encode(ReadMemoryLimitSystem()); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runMemoryHelper(t *testing.T, procs string) MemoryLimit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), envProcs+"="+procs, "GORACE="+gorace)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v; stderr: %s", err, stderr.String())
	}
	var res MemoryLimit
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	t.Logf("helper: %+v", res)
	return res
}

// ownMemoryCgroup finds this process's memory cgroup with the package's own
// resolution; the test then checks that the kernel agrees with it.
func ownMemoryCgroup(t *testing.T) (Ref, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	loc, found, err := Locate(os.DirFS("/"), "memory")
	if err != nil || !found {
		t.Skipf("no memory cgroup here (%v)", err)
	}
	return loc.Ref, DisplayPath(loc.Levels[0])
}

func makeCgroup(t *testing.T, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, fmt.Sprintf("gm2-cgroup-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_")))
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

func setLimit(t *testing.T, file string, bytes uint64) {
	t.Helper()
	if err := os.WriteFile(file, []byte(strconv.FormatUint(bytes, 10)), 0); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY) {
			t.Skipf("the kernel refused %d for %s: %v", bytes, file, err)
		}
		t.Fatalf("write %d to %s: %v", bytes, file, err)
	}
}

// TestRealMemoryLimit makes memory cgroups with limits, runs the helper in
// the leaf and checks it reports the smallest limit on its path, and where.
func TestRealMemoryLimit(t *testing.T) {
	ref, base := ownMemoryCgroup(t)
	file := memoryMaxV1
	if ref.V2 {
		file = memoryMaxV2
		ctrls, err := os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
		if err != nil || !slices.Contains(strings.Fields(string(ctrls)), "memory") {
			t.Skipf("the memory controller is not enabled for children of %s (%q, %v)", base, ctrls, err)
		}
	}
	// Whatever limit this process already has must be above the test's.
	if own := ReadMemoryLimitSystem(); own.Limited && own.Bytes <= 512<<20 {
		t.Skipf("this process is already limited to %d bytes", own.Bytes)
	}
	t.Run("leaf", func(t *testing.T) {
		dir := makeCgroup(t, base)
		setLimit(t, filepath.Join(dir, file), 256<<20)
		got := runMemoryHelper(t, filepath.Join(dir, "cgroup.procs"))
		checkMemoryLimit(t, got, 256<<20, fmt.Sprintf("%s %d at %s", file, 256<<20, dir), "")
	})
	t.Run("parent tighter", func(t *testing.T) {
		parent := makeCgroup(t, base)
		setLimit(t, filepath.Join(parent, file), 128<<20)
		leaf := makeCgroup(t, parent)
		setLimit(t, filepath.Join(leaf, file), 256<<20)
		got := runMemoryHelper(t, filepath.Join(leaf, "cgroup.procs"))
		checkMemoryLimit(t, got, 128<<20, fmt.Sprintf("%s %d at %s", file, 128<<20, parent), "")
	})
}
