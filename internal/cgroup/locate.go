// Package cgroup finds the cgroup directories of the calling process and the
// limits the kernel enforces there: where a controller's cgroup is mounted
// (shared by the CPU count of package cpus and the memory limit here), and
// the memory limit.
//
// Everything reads from an fs.FS rooted at "/" so that every host layout can
// be tested from fixture trees; nothing here may stop gm2-init: a file that
// cannot be read or parsed degrades to "no limit known" with a warning the
// caller logs.
package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// The files that describe the calling process's cgroups, as fs.FS names.
const (
	ProcSelfCgroup    = "proc/self/cgroup"
	ProcSelfMountinfo = "proc/self/mountinfo"
)

// Location is where the calling process's cgroup for one controller lives.
type Location struct {
	Ref Ref
	// Levels are the cgroup's directory and each of its ancestors up to
	// the mount point, leaf first, as fs.FS names ("." for the root). A
	// limit at any level applies to the process.
	Levels []string
}

// Locate finds the calling process's cgroup for controller ("cpu",
// "memory") from proc/self/cgroup and proc/self/mountinfo in fsys. found is
// false, with a nil error, when the kernel has neither that controller nor a
// unified hierarchy: nothing can be limiting the process. The error, one line
// naming the file or the cgroup, means the limit cannot be known.
func Locate(fsys fs.FS, controller string) (loc Location, found bool, err error) {
	data, err := fs.ReadFile(fsys, ProcSelfCgroup)
	if err != nil {
		return Location{}, false, fmt.Errorf("read /%s: %v", ProcSelfCgroup, ErrText(err))
	}
	ref, found := ParseProcCgroup(string(data), controller)
	if !found {
		return Location{}, false, nil
	}
	mounts, err := readMounts(fsys, ProcSelfMountinfo, ref)
	if err != nil {
		return Location{}, false, fmt.Errorf("read /%s: %v", ProcSelfMountinfo, ErrText(err))
	}
	levels, err := locate(mounts, ref)
	if err != nil {
		return Location{}, false, fmt.Errorf("%s: %w", ref, err)
	}
	return Location{Ref: ref, Levels: levels}, true, nil
}

// locate picks the mount to read ref through and lists the directories from
// ref's cgroup up to the mount point, inclusive, as fs.FS paths. The mount
// point itself is a level: with a cgroup namespace the container's own cgroup
// is the mount's root, and skipping a cgroup whose relative name is empty
// (ClickHouse#66237) loses exactly the container's limit.
//
// When a hierarchy is mounted more than once, the mount with the shortest
// root is preferred: it shows the most ancestors, and each may hold a limit.
func locate(mounts []mount, ref Ref) ([]string, error) {
	if len(mounts) == 0 {
		kind := fmt.Sprintf("cgroup (v1) mount with the %s controller", ref.Controller)
		if ref.V2 {
			kind = "cgroup2 mount"
		}
		return nil, fmt.Errorf("no %s in /%s", kind, ProcSelfMountinfo)
	}
	var (
		found    bool
		bestRel  []string
		bestBase []string
		firstErr error
	)
	for _, m := range mounts {
		base, err := pathComponents(m.mountPoint)
		if err != nil {
			firstErr = keepFirst(firstErr, fmt.Errorf("mount point: %w", err))
			continue
		}
		rel, err := relativeTo(m.root, ref.Path)
		if err != nil {
			firstErr = keepFirst(firstErr, err)
			continue
		}
		if !found || len(rel) > len(bestRel) {
			found, bestRel, bestBase = true, rel, base
		}
	}
	if !found {
		return nil, firstErr
	}
	levels := make([]string, 0, len(bestRel)+1)
	for i := len(bestRel); i >= 0; i-- {
		levels = append(levels, fsPath(append(append([]string(nil), bestBase...), bestRel[:i]...)))
	}
	return levels, nil
}

// keepFirst keeps the first error seen.
func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// fsPath turns path components into an fs.FS name ("." for the root).
func fsPath(comps []string) string {
	if len(comps) == 0 {
		return "."
	}
	return path.Join(comps...)
}

// DisplayPath turns an fs.FS name back into the absolute path users know,
// for messages: line breaks (cgroup and mount paths are arbitrary bytes) are
// escaped so that a path never splits a log line in two.
func DisplayPath(name string) string {
	if name == "." {
		return "/"
	}
	return lineBreaks.Replace("/" + name)
}

var lineBreaks = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// ErrText drops the fs.FS-relative name from a *fs.PathError: warnings name
// the absolute path themselves, and "open proc/self/cgroup" next to
// "/proc/self/cgroup" only confuses.
func ErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
