package cgroup

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// FuzzProcCgroup checks ParseProcCgroup's choice against a plain reading of
// the rules: the first v1 line whose controller list has the exact token
// ("cpu" or "memory"), else the first "0::" line.
func FuzzProcCgroup(f *testing.F) {
	for _, s := range []string{"0::/\n", "11:cpu,cpuacct:/docker/abc\n0::/x\n", "2:cpuacct:/a\n3:cpuset:/b\n1:name=systemd:/c\n0::/e\n",
		"0::/a:b\n", "garbage\n::\n1:cpu:/ok", "1::/x\n", ""} {
		f.Add(s, false)
	}
	f.Add("4:memory:/docker/x\n0::/\n", true)
	f.Fuzz(func(t *testing.T, data string, memory bool) {
		ctrl := "cpu"
		if memory {
			ctrl = "memory"
		}
		got, found := ParseProcCgroup(data, ctrl)
		want, wantFound := procCgroupOracle(data, ctrl)
		if found != wantFound || (found && got != want) {
			t.Fatalf("ParseProcCgroup(%q) = %+v, %v; want %+v, %v", data, got, found, want, wantFound)
		}
	})
}

// procCgroupOracle restates the rule in two passes: the first v1 line whose
// controller list holds the token ctrl; failing that, the first "0::" line.
func procCgroupOracle(data, ctrl string) (Ref, bool) {
	lines := strings.Split(data, "\n")
	for _, line := range lines {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[2] != "" && slices.Contains(strings.Split(parts[1], ","), ctrl) {
			return Ref{Controller: ctrl, Path: parts[2]}, true
		}
	}
	for _, line := range lines {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[2] != "" && parts[0] == "0" && parts[1] == "" {
			return Ref{Controller: ctrl, V2: true, Path: parts[2]}, true
		}
	}
	return Ref{}, false
}

// escapeOctal is the kernel's mangling (space, tab, newline, backslash).
func escapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzMountinfoLine checks that parsing never panics, that a parsed line has
// an absolute mount point, and that a line the kernel would write from the
// parsed fields parses back to the same fields.
func FuzzMountinfoLine(f *testing.F) {
	for _, s := range []string{
		"31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate",
		"1302 1300 0:35 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro master:16 shared:3 - cgroup cgroup rw,cpu,cpuacct",
		`1 2 0:3 / /mnt/a\040-\040b rw - cgroup2 cgroup2 rw`,
		"1 2 0:3 / /mnt rw - tmpfs  rw",
		`1 2 0:3 /\134 /x\011 rw - cgroup2 c\012 rw`,
		"- - - - - - - - -",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMountinfoLine(line)
		if err != nil {
			return
		}
		if !strings.HasPrefix(m.mountPoint, "/") {
			t.Fatalf("parseMountinfoLine(%q): mount point %q not absolute", line, m.mountPoint)
		}
		// Options are kept escaped, so they never hold a field separator.
		opts := strings.Join(m.superOpts, ",")
		if strings.Contains(opts, " ") {
			t.Fatalf("parseMountinfoLine(%q): options %q", line, m.superOpts)
		}
		again := fmt.Sprintf("7 8 0:9 %s %s rw shared:1 - %s src %s",
			escapeOctal(m.root), escapeOctal(m.mountPoint), escapeOctal(m.fsType), opts)
		m2, err := parseMountinfoLine(again)
		if err != nil || !mountEqual(m, m2) {
			t.Fatalf("round trip of %q via %q: %+v, %v; want %+v", line, again, m2, err, m)
		}
	})
}

// FuzzUnescapeOctal: unescaping inverts the kernel's escaping of any name.
func FuzzUnescapeOctal(f *testing.F) {
	for _, s := range []string{"", "/a b", "\\", "\\040", "a\tb\nc\\d", "\\\\040"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeOctal(escapeOctal(s)); got != s {
			t.Fatalf("unescapeOctal(escapeOctal(%q)) = %q", s, got)
		}
	})
}
