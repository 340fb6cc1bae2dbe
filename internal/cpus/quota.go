package cpus

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"path"
	"strconv"
	"strings"

	"github.com/gm2-init/gm2-init/internal/cgroup"
)

// fraction is a CPU quota of q/p CPUs, both positive. Quotas are kept as
// exact integer fractions because converting to float64 can misorder two
// nearby quotas and misround an exact multiple (e.g. 300000/100000).
type fraction struct{ q, p uint64 }

// less reports a < b, comparing a.q*b.p with b.q*a.p in 128 bits so that no
// quota/period pair the kernel accepts (or a fuzzer invents) can overflow.
func (a fraction) less(b fraction) bool {
	ahi, alo := bits.Mul64(a.q, b.p)
	bhi, blo := bits.Mul64(b.q, a.p)
	return ahi < bhi || (ahi == bhi && alo < blo)
}

func (a fraction) floor() uint64 { return a.q / a.p }

func (a fraction) ceil() uint64 {
	n := a.q / a.p
	if a.q%a.p != 0 {
		n++
	}
	return n
}

// limit is the tightest quota found and where it came from, for the log line.
type limit struct {
	frac  fraction
	files string // which files, e.g. "cpu.max"
	dir   string // absolute directory, e.g. "/sys/fs/cgroup"
}

func (l limit) describe() string {
	return fmt.Sprintf("%s %d/%d at %s", l.files, l.frac.q, l.frac.p, l.dir)
}

const v1Label = "cpu.cfs_quota_us/cpu.cfs_period_us"

// findQuota returns the smallest CPU quota on the path from the process's CPU
// cgroup up to the root of the mounted hierarchy. ok is false when there is
// no limit or it cannot be known; the warnings say which.
func findQuota(fsys fs.FS) (lim limit, ok bool, warns []string) {
	loc, found, err := cgroup.Locate(fsys, "cpu")
	if err != nil {
		return limit{}, false, []string{err.Error() + "; cgroup CPU limit unknown"}
	}
	if !found {
		// No CPU controller and no unified hierarchy: the kernel
		// cannot be enforcing a CPU quota on us.
		return limit{}, false, nil
	}

	// Every ancestor's quota also applies to us, and any of them may be
	// the tightest: Kubernetes limits the pod's cgroup above the
	// container's (golang/go#81180, automaxprocs#66), and a leaf can be
	// tighter than its parent, so stopping at the first or the outermost
	// limited level (libuv) is wrong. Keep the minimum over all levels.
	for _, d := range loc.Levels {
		f, limited, warn := readLevel(fsys, d, loc.Ref.V2)
		if warn != "" {
			warns = append(warns, warn)
		}
		if !limited {
			continue
		}
		if !ok || f.less(lim.frac) {
			lim, ok = limit{frac: f, files: levelLabel(loc.Ref.V2), dir: cgroup.DisplayPath(d)}, true
		}
	}
	return lim, ok, warns
}

func levelLabel(v2 bool) string {
	if v2 {
		return "cpu.max"
	}
	return v1Label
}

// readLevel reads one cgroup directory's quota. A missing file is normal (the
// root cgroup has no cpu.max, and a controller that is not delegated has no
// files) and means no limit at this level. Any other failure ignores the
// level with a warning: a limit we cannot read is not a reason to stop.
func readLevel(fsys fs.FS, dir string, v2 bool) (fraction, bool, string) {
	if v2 {
		name := path.Join(dir, "cpu.max")
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return readFailure(name, err)
		}
		f, limited, err := parseCPUMax(string(data))
		if err != nil {
			return fraction{}, false, fmt.Sprintf("%s: %v; ignoring this level", cgroup.DisplayPath(name), err)
		}
		return f, limited, ""
	}

	qname := path.Join(dir, "cpu.cfs_quota_us")
	data, err := fs.ReadFile(fsys, qname)
	if err != nil {
		return readFailure(qname, err)
	}
	quota, err := parseV1Quota(string(data))
	if err != nil {
		return fraction{}, false, fmt.Sprintf("%s: %v; ignoring this level", cgroup.DisplayPath(qname), err)
	}
	if quota <= 0 {
		return fraction{}, false, ""
	}
	pname := path.Join(dir, "cpu.cfs_period_us")
	data, err = fs.ReadFile(fsys, pname)
	if err != nil {
		// A quota without a period cannot be turned into CPUs.
		return fraction{}, false, fmt.Sprintf("read %s: %v; ignoring the quota at this level", cgroup.DisplayPath(pname), cgroup.ErrText(err))
	}
	period, err := parseV1Period(string(data))
	if err != nil {
		return fraction{}, false, fmt.Sprintf("%s: %v; ignoring the quota at this level", cgroup.DisplayPath(pname), err)
	}
	return fraction{q: uint64(quota), p: period}, true, ""
}

func readFailure(name string, err error) (fraction, bool, string) {
	if errors.Is(err, fs.ErrNotExist) {
		return fraction{}, false, ""
	}
	return fraction{}, false, fmt.Sprintf("read %s: %v; ignoring this level", cgroup.DisplayPath(name), cgroup.ErrText(err))
}

// parseCPUMax parses a cgroup v2 cpu.max file: "$MAX $PERIOD", where $MAX is
// "max" for no limit. Fields beyond the second are ignored so a future kernel
// adding one does not cost us the limit. "max" without a period is accepted
// as no limit: the quota is unlimited whatever the period is.
func parseCPUMax(data string) (f fraction, limited bool, err error) {
	fields := strings.Fields(cgroup.FirstLine(data))
	if len(fields) == 0 {
		return fraction{}, false, errors.New("empty cpu.max")
	}
	if fields[0] == "max" {
		return fraction{}, false, nil
	}
	if len(fields) < 2 {
		return fraction{}, false, fmt.Errorf("cpu.max %q: want \"QUOTA PERIOD\" or \"max PERIOD\"", data)
	}
	q, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil || q == 0 {
		return fraction{}, false, fmt.Errorf("cpu.max %q: quota %q is not a positive integer", data, fields[0])
	}
	p, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil || p == 0 {
		return fraction{}, false, fmt.Errorf("cpu.max %q: period %q is not a positive integer", data, fields[1])
	}
	return fraction{q: q, p: p}, true, nil
}

// parseV1Quota parses cpu.cfs_quota_us: microseconds per period, or -1 for
// no limit. Any value <= 0 is returned as is and means no limit.
func parseV1Quota(data string) (int64, error) {
	s := strings.TrimSpace(cgroup.FirstLine(data))
	q, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu.cfs_quota_us %q is not an integer", data)
	}
	return q, nil
}

// parseV1Period parses cpu.cfs_period_us, which must be positive.
func parseV1Period(data string) (uint64, error) {
	s := strings.TrimSpace(cgroup.FirstLine(data))
	p, err := strconv.ParseUint(s, 10, 64)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("cpu.cfs_period_us %q is not a positive integer", data)
	}
	return p, nil
}
