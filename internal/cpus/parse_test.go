package cpus

import (
	"math"
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
