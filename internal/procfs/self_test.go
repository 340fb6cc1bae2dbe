package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/procfs/procfstest"
)

func TestParseBootTime(t *testing.T) {
	bt, err := parseBootTime([]byte("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"))
	if err != nil || bt != 1700000000 {
		t.Errorf("parseBootTime = %d, %v", bt, err)
	}
	for _, bad := range []string{"cpu 1\n", "btime x\n", "btime\n", "btime -1\n"} {
		if _, err := parseBootTime([]byte(bad)); err == nil {
			t.Errorf("parseBootTime(%q) succeeded", bad)
		}
	}
}

func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	u := ReadSelf("/proc")
	if u.StatErr != nil || u.FDErr != nil {
		t.Fatalf("ReadSelf: %v %v", u.StatErr, u.FDErr)
	}
	if u.ResidentBytes == 0 || u.VirtualBytes < u.ResidentBytes || u.OpenFDs < 3 || u.CPUSeconds < 0 {
		t.Errorf("implausible usage %+v", u)
	}
	// Against the kernel's own VmRSS line, read independently.
	if rss := statusKB(t, "/proc/self/status", "VmRSS"); !within(float64(u.ResidentBytes), float64(rss), 0.10) {
		t.Errorf("RSS %d, status says %d", u.ResidentBytes, rss)
	}
	start, err := StartTime("/proc")
	if err != nil {
		t.Fatal(err)
	}
	// The test binary started before now and, on any CI, within a day.
	now := float64(time.Now().Unix())
	if start > now+1 || start < now-86400 {
		t.Errorf("process start %v, now %v", start, now)
	}
}

func TestReadSelfWithoutProc(t *testing.T) {
	u := ReadSelf(filepath.Join(t.TempDir(), "none"))
	if u.StatErr == nil || u.FDErr == nil {
		t.Errorf("ReadSelf of a missing /proc: %+v", u)
	}
	if _, err := StartTime(t.TempDir()); err == nil {
		t.Error("StartTime of an empty /proc succeeded")
	}
}

// TestClockTicks compares with getconf, which asks sysconf(_SC_CLK_TCK).
func TestClockTicks(t *testing.T) {
	if ClockTicks() == 0 {
		t.Fatal("ClockTicks() = 0")
	}
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		// getconf is in Debian's essential libc-bin: CI must have it.
		if os.Getenv("CI") == "true" {
			t.Fatalf("getconf: %v", err)
		}
		t.Skipf("getconf: %v", err)
	}
	want, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("getconf CLK_TCK printed %q", out)
	}
	if ClockTicks() != want {
		t.Errorf("ClockTicks() = %d, getconf CLK_TCK = %d", ClockTicks(), want)
	}
}

// TestReadSelfFake: gm2-init's own CPU time is user plus system time, its
// RSS is pages times the page size, its fds are counted.
func TestReadSelfFake(t *testing.T) {
	root := t.TempDir()
	procfstest.Write(t, root, procfstest.Proc{Pid: 42, Comm: "gm2 (init)", UTime: 250, STime: 50, Threads: 3, RSSPages: 7})
	for _, fd := range []string{"0", "1", "2"} {
		if err := os.WriteFile(filepath.Join(root, "42", "fd", fd), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("42", filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	u := ReadSelf(root)
	if u.StatErr != nil || u.FDErr != nil || u.CPUSeconds != TicksToSeconds(300) || u.ResidentBytes != 7*pageSize() || u.OpenFDs != 3 {
		t.Errorf("ReadSelf = %+v; want %v s, %d bytes, 3 fds", u, TicksToSeconds(300), 7*pageSize())
	}
}
