package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// mount is the part of one /proc/self/mountinfo line this package needs.
type mount struct {
	root       string   // root of the mount within its file system, unescaped
	mountPoint string   // where it is mounted, unescaped
	fsType     string   // "cgroup" (v1) or "cgroup2"
	superOpts  []string // per-superblock options; v1 lists its controllers here
}

// maxMountinfoLine bounds one mountinfo line. Two escaped paths of PATH_MAX
// (every byte may take four characters) plus options fit comfortably; a
// longer line means the file is not what we think it is.
const maxMountinfoLine = 1 << 20

// parseMountinfoLine parses one line of /proc/self/mountinfo:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// The number of optional fields (master:1 here) varies, so the line is split
// at the " - " separator rather than by field count, and never at the first
// '-' character: mount points, sources and options contain hyphens (the
// dotnet/coreclr#13489 bug). Fields are separated by exactly one space; the
// kernel escapes spaces inside them as \040, so splitting on " " keeps even
// an empty mount source as an empty field.
func parseMountinfoLine(line string) (mount, error) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mount{}, errors.New("no \" - \" separator")
	}
	pf := strings.Split(pre, " ")
	if len(pf) < 6 {
		return mount{}, fmt.Errorf("%d fields before the separator, want at least 6", len(pf))
	}
	sf := strings.Split(post, " ")
	if len(sf) < 3 {
		return mount{}, fmt.Errorf("%d fields after the separator, want at least 3", len(sf))
	}
	m := mount{
		root:       unescapeOctal(pf[3]),
		mountPoint: unescapeOctal(pf[4]),
		fsType:     unescapeOctal(sf[0]),
		superOpts:  strings.Split(sf[2], ","),
	}
	if !strings.HasPrefix(m.mountPoint, "/") {
		return mount{}, fmt.Errorf("mount point %q is not absolute", m.mountPoint)
	}
	return m, nil
}

// unescapeOctal undoes the kernel's mangling of mountinfo fields, which
// writes space, tab, newline and backslash as a backslash and three octal
// digits (\040 for a space). Anything that is not such an escape is kept as
// is, so a malformed field yields a path that simply does not match.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := int(s[i+1]-'0')<<6 | int(s[i+2]-'0')<<3 | int(s[i+3]-'0')
			if v <= 0xff {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// isMountOf reports whether m is a mount of the hierarchy that ref lives in:
// the cgroup2 file system, or a v1 hierarchy whose options list ref's
// controller.
func isMountOf(m mount, ref Ref) bool {
	if ref.V2 {
		return m.fsType == "cgroup2"
	}
	if m.fsType != "cgroup" {
		return false
	}
	for _, o := range m.superOpts {
		if o == ref.Controller {
			return true
		}
	}
	return false
}

// readMounts streams mountinfo once and keeps only the mounts of ref's
// hierarchy: on Kubernetes nodes the file can hold thousands of lines, and
// none of the others matter. Lines that do not parse are skipped, since an
// unrelated odd line must not cost us the limit; if the line we needed was
// among them, the caller's "no mount found" warning reports it.
func readMounts(fsys fs.FS, name string, ref Ref) ([]mount, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), maxMountinfoLine)
	for sc.Scan() {
		m, err := parseMountinfoLine(sc.Text())
		if err != nil || !isMountOf(m, ref) {
			continue
		}
		found = append(found, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return found, nil
}

// pathComponents splits a cgroup or mount-root path into its names. "." and
// empty names are dropped; ".." is refused because a cgroup path containing
// it (cgroup namespaces show ancestors outside the namespace that way) points
// at a directory this process cannot see, and resolving it lexically would
// silently read some other cgroup's limit.
func pathComponents(p string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("path %q has a \"..\" component", p)
		}
		out = append(out, c)
	}
	return out, nil
}

// relativeTo returns the components of cgroup path p below the mount root.
// On cgroup v1 without a cgroup namespace Docker shows the host's path
// (/docker/<id>) while the container's mount has that same path as its root;
// ignoring the root (golang/go#76390) looks for /sys/fs/cgroup/cpu/docker/<id>
// inside the container, finds nothing and reports no limit.
func relativeTo(root, p string) ([]string, error) {
	rc, err := pathComponents(root)
	if err != nil {
		return nil, fmt.Errorf("mount root: %w", err)
	}
	pc, err := pathComponents(p)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if len(pc) < len(rc) {
		return nil, fmt.Errorf("cgroup %q is not under the mount root %q", p, root)
	}
	for i := range rc {
		if rc[i] != pc[i] {
			return nil, fmt.Errorf("cgroup %q is not under the mount root %q", p, root)
		}
	}
	return pc[len(rc):], nil
}
