package cpus

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseCPUMax(t *testing.T) {
	for _, c := range []struct {
		in      string
		q, p    uint64
		limited bool
		err     bool
	}{
		{in: "max 100000\n"},
		{in: "max"},
		{in: "max 100000 junk"},
		{in: "200000 100000\n", q: 200000, p: 100000, limited: true},
		{in: "200000 100000", q: 200000, p: 100000, limited: true},
		{in: "  200000\t100000 7 8\n", q: 200000, p: 100000, limited: true},
		{in: "200000 100000\nmax 100000\n", q: 200000, p: 100000, limited: true},
		{in: "18446744073709551615 1", q: math.MaxUint64, p: 1, limited: true},
		{in: "", err: true},
		{in: "\n", err: true},
		{in: "150000", err: true},
		{in: "150000\n100000", err: true},
		{in: "abc 100000", err: true},
		{in: "250000 0", err: true},
		{in: "0 100000", err: true},
		{in: "-1 100000", err: true},
		{in: "+5 100000", err: true},
		{in: "1.5 1", err: true},
		{in: "18446744073709551616 1", err: true},
		{in: "MAX 100000", err: true},
	} {
		f, limited, err := parseCPUMax(c.in)
		if (err != nil) != c.err || limited != c.limited || f.q != c.q || f.p != c.p {
			t.Errorf("parseCPUMax(%q) = %v, %v, %v; want {%d %d}, %v, error %v", c.in, f, limited, err, c.q, c.p, c.limited, c.err)
		}
	}
}

func TestParseV1(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "-1\n", want: -1},
		{in: "150000\n", want: 150000},
		{in: "150000", want: 150000},
		{in: "0\n", want: 0},
		{in: "", err: true},
		{in: "abc\n", err: true},
		{in: "1e5\n", err: true},
		{in: "99999999999999999999\n", err: true},
	} {
		got, err := parseV1Quota(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseV1Quota(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
	for _, c := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{in: "100000\n", want: 100000},
		{in: "1000", want: 1000},
		{in: "0\n", err: true},
		{in: "-1\n", err: true},
		{in: "", err: true},
	} {
		got, err := parseV1Period(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseV1Period(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, c := range []struct {
		name  string
		in    string
		want  cgroupRef
		found bool
	}{
		{"v2 only", "0::/\n", cgroupRef{v2: true, path: "/"}, true},
		{"v1 cpu,cpuacct", "11:cpu,cpuacct:/docker/abc\n", cgroupRef{path: "/docker/abc"}, true},
		{"v1 cpuacct,cpu order", "3:cpuacct,cpu:/x\n", cgroupRef{path: "/x"}, true},
		{"hybrid, v1 after v2", "0::/init.scope\n5:cpu:/a\n", cgroupRef{path: "/a"}, true},
		{"hybrid, v2 after v1", "5:cpu:/a\n0::/init.scope\n", cgroupRef{path: "/a"}, true},
		{"not cpuacct, cpuset, name=systemd", "2:cpuacct:/a\n3:cpuset:/b\n1:name=systemd:/c\n4:name=cpu:/d\n0::/e\n", cgroupRef{v2: true, path: "/e"}, true},
		{"colon in path", "0::/a:b:c\n", cgroupRef{v2: true, path: "/a:b:c"}, true},
		{"no final newline", "1:cpu:/q", cgroupRef{path: "/q"}, true},
		{"garbage lines skipped", "garbage\n::\n7:memory\n1:cpu:/ok\n", cgroupRef{path: "/ok"}, true},
		{"non-zero id with empty controllers is not v2", "1::/x\n", cgroupRef{}, false},
		{"v1 without cpu", "3:memory:/\n2:cpuacct:/\n", cgroupRef{}, false},
		{"empty", "", cgroupRef{}, false},
	} {
		got, found := parseProcCgroup(c.in)
		if got != c.want || found != c.found {
			t.Errorf("%s: parseProcCgroup(%q) = %+v, %v; want %+v, %v", c.name, c.in, got, found, c.want, c.found)
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
		`\040\040`:          "  ",
		`\\040`:             `\ `,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
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

func TestFraction(t *testing.T) {
	big := fraction{q: math.MaxUint64, p: math.MaxUint64 - 1} // just above 1
	one := fraction{q: math.MaxUint64 - 1, p: math.MaxUint64 - 1}
	for _, c := range []struct {
		a, b fraction
		less bool
	}{
		{fraction{150000, 100000}, fraction{200000, 100000}, true},
		{fraction{200000, 100000}, fraction{150000, 100000}, false},
		{fraction{300000, 200000}, fraction{160000, 100000}, true},
		{fraction{300000, 200000}, fraction{150000, 100000}, false}, // equal
		{one, big, true},  // a 64-bit product would overflow
		{big, one, false}, // and misorder these
		{fraction{1, 3}, fraction{333333, 1000000}, false},
	} {
		if got := c.a.less(c.b); got != c.less {
			t.Errorf("%v.less(%v) = %v, want %v", c.a, c.b, got, c.less)
		}
	}
	if f := (fraction{math.MaxUint64, 2}); f.ceil() != math.MaxUint64/2+1 || f.floor() != math.MaxUint64/2 {
		t.Errorf("floor/ceil of %v = %d/%d", f, f.floor(), f.ceil())
	}
	if f := (fraction{125000, 50000}); f.floor() != 2 || f.ceil() != 3 {
		t.Errorf("floor/ceil of %v = %d/%d", f, f.floor(), f.ceil())
	}
	if f := (fraction{400000, 100000}); f.floor() != 4 || f.ceil() != 4 {
		t.Errorf("floor/ceil of %v = %d/%d", f, f.floor(), f.ceil())
	}
}

// TestQuotaBeyondInt: a quota larger than any int is capped by the affinity
// count, not converted (and wrapped) first.
func TestQuotaBeyondInt(t *testing.T) {
	mi := "30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	fsys := v2MapFS("0::/\n", mi, map[string]string{"sys/fs/cgroup/cpu.max": "18446744073709551615 1\n"})
	for _, r := range []Rounding{Floor, Ceil} {
		got := Detect(fsys, 8, Options{Rounding: r})
		checkResult(t, got, 8, "affinity mask (8 CPUs), within cpu.max 18446744073709551615/1", "")
	}
}
