package cpus

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gm2-init/gm2-init/internal/cgroup"
)

// FuzzCPUMax checks parseCPUMax against its contract and Detect's bounds:
// whatever cpu.max holds, the result is between 1 and the affinity count and
// equals the rounded quota when the quota parses.
func FuzzCPUMax(f *testing.F) {
	for _, s := range []string{"max 100000\n", "max", "200000 100000\n", "150000 100000", "125000 50000 x",
		"abc 100000", "150000", "250000 0", "", "0 100000", "18446744073709551615 1", " 7\t3 \n9 9"} {
		f.Add(s, uint8(8))
	}
	f.Fuzz(func(t *testing.T, data string, aff uint8) {
		frac, limited, err := parseCPUMax(data)
		fields := strings.Fields(cgroup.FirstLine(data))
		switch {
		case err != nil:
			if limited {
				t.Fatalf("parseCPUMax(%q): limited with error %v", data, err)
			}
		case !limited:
			if len(fields) == 0 || fields[0] != "max" {
				t.Fatalf("parseCPUMax(%q): no limit, but the first field is not \"max\"", data)
			}
		default:
			if frac.q == 0 || frac.p == 0 {
				t.Fatalf("parseCPUMax(%q) = %v: zero quota or period", data, frac)
			}
			// Leading zeros are accepted, so compare values, not text.
			q, qerr := strconv.ParseUint(fields[0], 10, 64)
			p, perr := strconv.ParseUint(fields[1], 10, 64)
			if qerr != nil || perr != nil || q != frac.q || p != frac.p {
				t.Fatalf("parseCPUMax(%q) = %v: does not match the fields %q", data, frac, fields)
			}
		}

		affinity := int(aff%64) + 1
		mi := "30 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
		for _, r := range []Rounding{Floor, Ceil} {
			res := Detect(v2MapFS("0::/\n", mi, map[string]string{"sys/fs/cgroup/cpu.max": data}), affinity, Options{Rounding: r})
			want := affinity
			if limited {
				want = expectedMax(frac, affinity, r)
			}
			if res.Max != want {
				t.Fatalf("cpu.max %q, A=%d, %v: Max = %d, want %d (%s)", data, affinity, r, res.Max, want, res.Source)
			}
			if (err != nil) != (len(res.Warnings) > 0) {
				t.Fatalf("cpu.max %q: parse error %v but warnings %q", data, err, res.Warnings)
			}
		}
	})
}

// expectedMax restates rule 6 independently of Detect, in big-enough
// arithmetic: max(1, min(A, round(q/p))).
func expectedMax(f fraction, affinity int, r Rounding) int {
	n := f.q / f.p
	if r == Ceil && f.q%f.p != 0 {
		n++
	}
	if n > uint64(affinity) {
		return affinity
	}
	if n == 0 {
		return 1
	}
	return int(n)
}

// FuzzV1Quota checks the v1 quota and period files: a positive quota with a
// positive period limits, anything else that parses is no limit, and Detect
// never leaves [1, A].
func FuzzV1Quota(f *testing.F) {
	for _, s := range [][2]string{{"-1\n", "100000\n"}, {"150000\n", "100000\n"}, {"300000", "100000"},
		{"abc\n", "100000\n"}, {"200000\n", "0\n"}, {"200000\n", "1e5\n"}, {"0\n", "0\n"}, {"+5", "2"}} {
		f.Add(s[0], s[1], uint8(4))
	}
	f.Fuzz(func(t *testing.T, quota, period string, aff uint8) {
		q, qerr := parseV1Quota(quota)
		if qerr == nil {
			if back, err := parseV1Quota(strconv.FormatInt(q, 10)); err != nil || back != q {
				t.Fatalf("parseV1Quota(%q) = %d does not round-trip: %d, %v", quota, q, back, err)
			}
		}
		p, perr := parseV1Period(period)
		if perr == nil && p == 0 {
			t.Fatalf("parseV1Period(%q) = 0 without error", period)
		}

		affinity := int(aff%64) + 1
		mi := "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
		fsys := v2MapFS("1:cpu:/\n0::/\n", mi, map[string]string{
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  quota,
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": period,
		})
		res := Detect(fsys, affinity, Options{})
		want := affinity
		if qerr == nil && q > 0 && perr == nil {
			want = expectedMax(fraction{q: uint64(q), p: p}, affinity, Floor)
		}
		if res.Max != want {
			t.Fatalf("quota %q period %q A=%d: Max = %d, want %d (%s, %q)", quota, period, affinity, res.Max, want, res.Source, res.Warnings)
		}
	})
}
