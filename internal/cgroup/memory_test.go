package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// TestReadMemoryLimitFixtures runs ReadMemoryLimit over the trees in
// testdata/: each is a fake root file system laid out as on a real host.
func TestReadMemoryLimitFixtures(t *testing.T) {
	cases := []struct {
		dir     string
		bytes   uint64 // 0: no limit
		source  string // substring of Source
		warning string // substring of a warning; "" = none at all
	}{
		{"v2-max", 0, "no cgroup memory limit", ""},
		{"v2-512m", 536870912, "memory.max 536870912 at /sys/fs/cgroup", ""}, // memory.high does not count
		{"v2-no-memory-max", 0, "no cgroup memory limit", ""},
		{"v2-nested-parent-tighter", 268435456, "memory.max 268435456 at /sys/fs/cgroup/kubepods/pod1", ""},
		{"v2-nested-leaf-tightest", 104857600, "memory.max 104857600 at /sys/fs/cgroup/kubepods/pod1/ctr", ""},
		{"v2-garbage-leaf", 1073741824, "memory.max 1073741824 at /sys/fs/cgroup", `/sys/fs/cgroup/a/memory.max: memory.max "lots\n"`},
		{"v2-huge-is-unlimited", 0, "no cgroup memory limit", ""},
		{"v2-unreadable", 0, "cgroup memory limit unknown", "read /sys/fs/cgroup/memory.max"},
		{"v2-dotdot", 0, "cgroup memory limit unknown", `".." component`},
		{"v2-no-mount", 0, "cgroup memory limit unknown", "no cgroup2 mount"},
		// Docker on v1 without a cgroup namespace: /docker/abc is the
		// mount's root, not a directory below it (golang/go#76390).
		{"v1-docker", 268435456, "memory.limit_in_bytes 268435456 at /sys/fs/cgroup/memory", ""},
		{"v1-unlimited", 0, "no cgroup memory limit", ""},
		{"v1-unlimited-64k-pages", 0, "no cgroup memory limit", ""},
		{"v1-nested-parent-tighter", 134217728, "memory.limit_in_bytes 134217728 at /sys/fs/cgroup/memory/kubepods/pod1", ""},
		{"v1-negative", 0, "cgroup memory limit unknown", `memory.limit_in_bytes "-1\n"`},
		{"hybrid", 1073741824, "memory.limit_in_bytes 1073741824 at /sys/fs/cgroup/memory", ""},
		{"no-memory-controller", 0, "no cgroup memory limit (no memory controller)", ""},
		{"no-proc", 0, "cgroup memory limit unknown", "read /proc/self/cgroup"},
	}
	used := map[string]bool{}
	for _, c := range cases {
		used[c.dir] = true
		t.Run(c.dir, func(t *testing.T) {
			got := ReadMemoryLimit(os.DirFS(filepath.Join("testdata", c.dir)))
			checkMemoryLimit(t, got, c.bytes, c.source, c.warning)
		})
	}
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "fuzz" && !used[e.Name()] {
			t.Errorf("fixture testdata/%s is not used by any case", e.Name())
		}
	}
}

func checkMemoryLimit(t *testing.T, got MemoryLimit, bytes uint64, source, warning string) {
	t.Helper()
	if got.Limited != (bytes > 0) || got.Bytes != bytes {
		t.Errorf("limit = %d (limited %v), want %d; source %q, warnings %q", got.Bytes, got.Limited, bytes, got.Source, got.Warnings)
	}
	if !strings.Contains(got.Source, source) {
		t.Errorf("Source = %q, want it to contain %q", got.Source, source)
	}
	for _, s := range append([]string{got.Source}, got.Warnings...) {
		if strings.ContainsAny(s, "\n\r") {
			t.Errorf("%q is not one line", s)
		}
	}
	switch {
	case warning == "" && len(got.Warnings) > 0:
		t.Errorf("unexpected warnings %q", got.Warnings)
	case warning != "":
		found := false
		for _, w := range got.Warnings {
			found = found || strings.Contains(w, warning)
		}
		if !found {
			t.Errorf("warnings %q, want one containing %q", got.Warnings, warning)
		}
	}
}

// TestMemoryLimitEscapedPath: a cgroup path with a newline (possible: names
// are arbitrary bytes) stays on one line in the Source.
func TestMemoryLimitEscapedPath(t *testing.T) {
	fsys := fstest.MapFS{
		"proc/self/cgroup":    {Data: []byte("0::/a\nb\n")},
		"proc/self/mountinfo": {Data: []byte(`30 1 0:30 / /sys/fs/c\012g rw - cgroup2 cgroup2 rw` + "\n")},
	}
	// "0::/a\nb" is the cgroup "/a" followed by a garbage line: the file
	// format cannot carry a newline, but the mount point can (escaped).
	fsys["sys/fs/c\ng/a/memory.max"] = &fstest.MapFile{Data: []byte("1048576\n")}
	got := ReadMemoryLimit(fsys)
	checkMemoryLimit(t, got, 1048576, `memory.max 1048576 at /sys/fs/c\ng/a`, "")
}

func TestParseMemoryFiles(t *testing.T) {
	for _, c := range []struct {
		v2      bool
		in      string
		n       uint64
		limited bool
		err     bool
	}{
		{true, "max\n", 0, false, false},
		{true, "max", 0, false, false},
		{true, "536870912\n", 536870912, true, false},
		{true, " 4096 \n", 4096, true, false},
		{true, "0\n", 0, true, false}, // the kernel accepts it: nothing may be charged
		{true, "4611686018427387903\n", 1<<62 - 1, true, false},
		{true, "4611686018427387904\n", 1 << 62, false, false},
		{true, "18446744073709551615\n", 1<<64 - 1, false, false},
		{true, "18446744073709551616\n", 0, false, true},
		{true, "", 0, false, true},
		{true, "max 100\n", 0, false, true},
		{true, "1G\n", 0, false, true},
		{true, "-1\n", 0, false, true},
		{false, "268435456\n", 268435456, true, false},
		{false, "9223372036854771712\n", 9223372036854771712, false, false},
		{false, "max\n", 0, false, true},
		{false, "\n", 0, false, true},
		{false, "12\n34\n", 12, true, false},
	} {
		parse, name := parseV1MemoryLimit, "v1"
		if c.v2 {
			parse, name = parseMemoryMax, "v2"
		}
		n, limited, err := parse(c.in)
		if (err != nil) != c.err || (err == nil && (n != c.n || limited != c.limited)) {
			t.Errorf("%s(%q) = %d, %v, %v; want %d, %v, error %v", name, c.in, n, limited, err, c.n, c.limited, c.err)
		}
	}
}

// FuzzMemoryFiles: whatever the file holds, the parsers agree with a plain
// reading (strconv on the trimmed first line, "max" on v2), and
// ReadMemoryLimit reports exactly the parsed limit or a warning.
func FuzzMemoryFiles(f *testing.F) {
	for _, s := range []string{"max\n", "536870912\n", "9223372036854771712\n", "", "x", "-1", "0", " 7 \n8"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, data string, v2 bool) {
		parse, file, cg, mi := parseV1MemoryLimit, "sys/fs/cgroup/memory/memory.limit_in_bytes", "3:memory:/\n",
			"31 1 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
		if v2 {
			parse, file, cg, mi = parseMemoryMax, "sys/fs/cgroup/memory.max", "0::/\n", "30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
		}
		n, limited, err := parse(data)
		s := strings.TrimSpace(FirstLine(data))
		want, werr := strconv.ParseUint(s, 10, 64)
		switch {
		case v2 && s == "max":
			if err != nil || limited {
				t.Fatalf("%q: %d %v %v", data, n, limited, err)
			}
		case werr != nil:
			if err == nil || limited {
				t.Fatalf("%q parsed as %d, %v", data, n, limited)
			}
		default:
			if err != nil || n != want || limited != (want < unlimitedFloor) {
				t.Fatalf("%q = %d, %v, %v; want %d", data, n, limited, err, want)
			}
		}
		got := ReadMemoryLimit(fstest.MapFS{
			"proc/self/cgroup":    {Data: []byte(cg)},
			"proc/self/mountinfo": {Data: []byte(mi)},
			file:                  {Data: []byte(data)},
		})
		if got.Limited != limited || got.Bytes != map[bool]uint64{true: n}[limited] || (err != nil) != (len(got.Warnings) > 0) {
			t.Fatalf("%q: ReadMemoryLimit = %+v; parse = %d, %v, %v", data, got, n, limited, err)
		}
	})
}
