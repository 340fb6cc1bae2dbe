package cgroup

import (
	"slices"
	"strings"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	for _, c := range []struct {
		name  string
		in    string
		want  Ref
		found bool
		ctrl  string // "cpu" when empty
	}{
		{"v2 only", "0::/\n", Ref{Controller: "cpu", V2: true, Path: "/"}, true, ""},
		{"v1 cpu,cpuacct", "11:cpu,cpuacct:/docker/abc\n", Ref{Controller: "cpu", Path: "/docker/abc"}, true, ""},
		{"v1 cpuacct,cpu order", "3:cpuacct,cpu:/x\n", Ref{Controller: "cpu", Path: "/x"}, true, ""},
		{"hybrid, v1 after v2", "0::/init.scope\n5:cpu:/a\n", Ref{Controller: "cpu", Path: "/a"}, true, ""},
		{"hybrid, v2 after v1", "5:cpu:/a\n0::/init.scope\n", Ref{Controller: "cpu", Path: "/a"}, true, ""},
		{"not cpuacct, cpuset, name=systemd", "2:cpuacct:/a\n3:cpuset:/b\n1:name=systemd:/c\n4:name=cpu:/d\n0::/e\n", Ref{Controller: "cpu", V2: true, Path: "/e"}, true, ""},
		{"colon in path", "0::/a:b:c\n", Ref{Controller: "cpu", V2: true, Path: "/a:b:c"}, true, ""},
		{"no final newline", "1:cpu:/q", Ref{Controller: "cpu", Path: "/q"}, true, ""},
		{"garbage lines skipped", "garbage\n::\n7:memory\n1:cpu:/ok\n", Ref{Controller: "cpu", Path: "/ok"}, true, ""},
		{"non-zero id with empty controllers is not v2", "1::/x\n", Ref{}, false, ""},
		{"v1 without cpu", "3:memory:/\n2:cpuacct:/\n", Ref{}, false, ""},
		{"empty", "", Ref{}, false, ""},
		// The memory controller, on a hybrid host and on v2.
		{"memory on v1", "4:memory:/docker/7f3a\n1:cpu:/\n0::/\n", Ref{Controller: "memory", Path: "/docker/7f3a"}, true, "memory"},
		{"memory on v2", "0::/kubepods/pod1/ctr\n", Ref{Controller: "memory", V2: true, Path: "/kubepods/pod1/ctr"}, true, "memory"},
		{"memory is not memsw", "4:memory.memsw:/a\n0::/b\n", Ref{Controller: "memory", V2: true, Path: "/b"}, true, "memory"},
		{"no memory controller", "3:cpu:/\n", Ref{}, false, "memory"},
	} {
		if c.ctrl == "" {
			c.ctrl = "cpu"
		}
		got, found := ParseProcCgroup(c.in, c.ctrl)
		if got != c.want || found != c.found {
			t.Errorf("%s: ParseProcCgroup(%q) = %+v, %v; want %+v, %v", c.name, c.in, got, found, c.want, c.found)
		}
	}
}

func TestParseMountinfoLine(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want mount
		err  bool
	}{
		{
			name: "v2 no optional fields",
			in:   "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate",
			want: mount{root: "/", mountPoint: "/sys/fs/cgroup", fsType: "cgroup2", superOpts: []string{"rw", "nsdelegate"}},
		},
		{
			name: "v1 with optional fields and root",
			in:   "1302 1300 0:35 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid master:16 shared:3 - cgroup cgroup rw,cpu,cpuacct",
			want: mount{root: "/docker/abc", mountPoint: "/sys/fs/cgroup/cpu,cpuacct", fsType: "cgroup", superOpts: []string{"rw", "cpu", "cpuacct"}},
		},
		{
			name: "hyphens before the separator",
			in:   "1 2 0:3 /a-b /mnt/x-y rw,no-exec shared:1-2 - cgroup2 my-source rw",
			want: mount{root: "/a-b", mountPoint: "/mnt/x-y", fsType: "cgroup2", superOpts: []string{"rw"}},
		},
		{
			name: "escaped separator inside the mount point",
			in:   `1 2 0:3 / /mnt/a\040-\040b rw - cgroup2 cgroup2 rw`,
			want: mount{root: "/", mountPoint: "/mnt/a - b", fsType: "cgroup2", superOpts: []string{"rw"}},
		},
		{
			name: "empty source",
			in:   "1 2 0:3 / /mnt rw - tmpfs  rw,size=4k",
			want: mount{root: "/", mountPoint: "/mnt", fsType: "tmpfs", superOpts: []string{"rw", "size=4k"}},
		},
		{name: "no separator", in: "1 2 0:3 / /mnt rw cgroup2 cgroup2 rw", err: true},
		{name: "hyphen without spaces is no separator", in: "1 2 0:3 / /mnt rw -cgroup2 cgroup2 rw", err: true},
		{name: "too few fields before", in: "1 2 / /mnt - cgroup2 cgroup2 rw", err: true},
		{name: "too few fields after", in: "1 2 0:3 / /mnt rw - cgroup2", err: true},
		{name: "relative mount point", in: "1 2 0:3 / mnt rw - cgroup2 cgroup2 rw", err: true},
		{name: "empty", in: "", err: true},
	} {
		got, err := parseMountinfoLine(c.in)
		if (err != nil) != c.err {
			t.Errorf("%s: parseMountinfoLine(%q) error = %v, want error %v", c.name, c.in, err, c.err)
			continue
		}
		if err == nil && !mountEqual(got, c.want) {
			t.Errorf("%s: parseMountinfoLine(%q) = %+v, want %+v", c.name, c.in, got, c.want)
		}
	}
}

func mountEqual(a, b mount) bool {
	return a.root == b.root && a.mountPoint == b.mountPoint && a.fsType == b.fsType && slices.Equal(a.superOpts, b.superOpts)
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:            "/plain",
		`/a\040b`:           "/a b",
		`/t\011n\012b\134s`: "/t\tn\nb\\s",
		`/trailing\`:        `/trailing\`,
		`/short\04`:         `/short\04`,
		`/not\089`:          `/not\089`,
		`/big\777`:          `/big\777`,
		`/top\377`:          "/top\xff",
		`\040\040`:          "  ",
		`\\040`:             `\ `,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIsMountOf: a v2 cgroup is read only through a cgroup2 mount, never
// through a v1 hierarchy (a hybrid host's name=systemd) that happens to come
// first; a v1 cgroup only through the hierarchy that lists its controller.
func TestIsMountOf(t *testing.T) {
	v2 := Ref{Controller: "cpu", V2: true, Path: "/"}
	v1 := Ref{Controller: "cpu", Path: "/"}
	for _, c := range []struct {
		m    mount
		ref  Ref
		want bool
	}{
		{mount{fsType: "cgroup2", superOpts: []string{"rw"}}, v2, true},
		{mount{fsType: "cgroup", superOpts: []string{"rw", "xattr", "name=systemd"}}, v2, false},
		{mount{fsType: "cgroup", superOpts: []string{"rw", "cpu", "cpuacct"}}, v2, false},
		{mount{fsType: "cgroup", superOpts: []string{"rw", "cpu", "cpuacct"}}, v1, true},
		{mount{fsType: "cgroup", superOpts: []string{"rw", "cpuacct"}}, v1, false},
		{mount{fsType: "cgroup2", superOpts: []string{"rw", "cpu"}}, v1, false},
	} {
		if got := isMountOf(c.m, c.ref); got != c.want {
			t.Errorf("isMountOf(%+v, %v) = %v, want %v", c.m, c.ref, got, c.want)
		}
	}
}

func TestRelativeTo(t *testing.T) {
	for _, c := range []struct {
		root, p string
		want    []string
		err     string
	}{
		{root: "/", p: "/", want: nil},
		{root: "/", p: "/a/b", want: []string{"a", "b"}},
		{root: "/docker/abc", p: "/docker/abc", want: nil},
		{root: "/docker/abc", p: "/docker/abc/x", want: []string{"x"}},
		{root: "/docker/abc/", p: "//docker/./abc//x/", want: []string{"x"}},
		{root: "/docker/abc", p: "/docker/abcd", err: "not under the mount root"},
		{root: "/docker/abc", p: "/docker", err: "not under the mount root"},
		{root: "/docker/abc", p: "/", err: "not under the mount root"},
		{root: "/", p: "/../x", err: `".." component`},
		{root: "/..", p: "/x", err: "mount root"},
		{root: "/", p: "/a/../a", err: `".." component`},
	} {
		got, err := relativeTo(c.root, c.p)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("relativeTo(%q, %q) error = %v, want one containing %q", c.root, c.p, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("relativeTo(%q, %q) = %q, %v; want %q", c.root, c.p, got, err, c.want)
		}
	}
}
