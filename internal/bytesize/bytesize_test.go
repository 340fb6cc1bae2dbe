package bytesize

import (
	"math"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const (
		K = 1 << 10
		M = 1 << 20
		G = 1 << 30
		T = 1 << 40
	)
	good := []struct {
		in   string
		want int64
	}{
		// PM2's own forms.
		{"300M", 300 * M},
		{"1G", G},
		{"512K", 512 * K},
		{"1048576", 1048576},
		{"2T", 2 * T},
		// Case, B/iB/i suffixes, spaces.
		{"300m", 300 * M},
		{"300MB", 300 * M},
		{"300mb", 300 * M},
		{"300MiB", 300 * M},
		{"300Mi", 300 * M},
		{"300mib", 300 * M},
		{"1gb", G},
		{"512 MB", 512 * M},
		{"512\tK", 512 * K},
		{"  1G\n", G},
		{"100B", 100},
		{"100b", 100},
		{"1", 1},
		{"007M", 7 * M},
		// Fractions, rounded down to a byte.
		{"1.5G", G + G/2},
		{"0.5K", 512},
		{"1.3K", 1331}, // 1331.2
		{"0.001K", 1},  // 1.024
		{"1.999999999999999999K", 2047},
		{"2.25T", 2*T + T/4},
		// The largest sizes that fit.
		{"9223372036854775807", math.MaxInt64},
		{"9223372036854775807B", math.MaxInt64},
		{"8388607T", 8388607 * T},
		{"8388607.999999999999999999T", 8388607*T + T - 1},
		{"9007199254740991K", 9007199254740991 * K},
	}
	for _, c := range good {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"   ", "empty"},
		{"0", "zero"},
		{"0M", "zero"},
		{"0.0001K", "zero"},
		{"10X", `unknown unit "X"`},
		{"10KX", `unknown unit "KX"`},
		{"10 M B", `unknown unit "M B"`},
		{"-5M", "does not start with a digit"},
		{"+5M", "does not start with a digit"},
		{"M", "does not start with a digit"},
		{".5G", "does not start with a digit"},
		{"1.G", "no digit after the decimal point"},
		{"1..5G", "no digit after the decimal point"},
		{"1.5", "a fraction needs"},
		{"1.5B", "a fraction needs"},
		{"1e9", `unknown unit "e9"`},
		{"0x10", `unknown unit "x10"`},
		{"1_000", `unknown unit "_000"`},
		{"1,5G", `unknown unit ",5G"`},
		{"1 000", `unknown unit "000"`},
		{"1.5.5G", `unknown unit ".5G"`},
		{"5 GiBs", `unknown unit "GiBs"`},
		{"1.0000000000000000001G", "more than 18 digits"},
		{"9223372036854775808", "more than 2^63-1"},
		{"99999999999999999999999", "more than 2^63-1"},
		{"8388608T", "more than 2^63-1"},
		{"9007199254740992K", "more than 2^63-1"},
		{"９M", "does not start with a digit"}, // fullwidth digit
	}
	for _, c := range bad {
		got, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%q) = %d, want an error (%s)", c.in, got, c.why)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.why) || !strings.Contains(msg, Forms) || strings.ContainsAny(msg, "\n") && !strings.Contains(c.in, "\n") {
			t.Errorf("Parse(%q) error %q: want it to say %q and list the accepted forms", c.in, msg, c.why)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		300 << 20:            "300M",
		1 << 30:              "1G",
		1536 << 20:           "1536M",
		512 << 10:            "512K",
		1048577:              "1048577",
		1:                    "1",
		3 << 40:              "3T",
		math.MaxInt64:        "9223372036854775807",
		math.MaxInt64 - 1023: "9007199254740991K",
		0:                    "0",
		-5:                   "-5",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

var oracleRE = regexp.MustCompile(`^([0-9]+)(\.([0-9]{1,18}))?[ \t]*(([kKmMgGtT])([iI]?[bB]?)?|[bB])?$`)

// oracle computes what s means with big integers, or false when the syntax
// is not one of the accepted forms. It restates the rules independently.
func oracle(s string) (int64, bool) {
	m := oracleRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, false
	}
	unit := int64(1)
	switch strings.ToUpper(m[5]) {
	case "K":
		unit = 1 << 10
	case "M":
		unit = 1 << 20
	case "G":
		unit = 1 << 30
	case "T":
		unit = 1 << 40
	case "":
		if m[3] != "" {
			return 0, false // fraction of bytes
		}
	}
	v, _ := new(big.Int).SetString(m[1], 10)
	v.Mul(v, big.NewInt(unit))
	if m[3] != "" {
		f, _ := new(big.Int).SetString(m[3], 10)
		f.Mul(f, big.NewInt(unit))
		f.Quo(f, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(m[3]))), nil))
		v.Add(v, f)
	}
	if v.Sign() == 0 || !v.IsInt64() {
		return 0, false
	}
	return v.Int64(), true
}

// FuzzParse: Parse agrees with the big-integer oracle on every input, never
// returns less than 1, and Format's output parses back to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"300M", "1G", "512K", "1048576", "1.5G", "0", "-5M", "10X", "1.3k", "9223372036854775807",
		"8388607.999999999999999999T", "512 MiB", "1e9", "", "1.", ".5G", "7Ti"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		want, ok := oracle(s)
		if (err == nil) != ok || (ok && got != want) {
			t.Fatalf("Parse(%q) = %d, %v; oracle %d, %v", s, got, err, want, ok)
		}
		if err != nil {
			return
		}
		if got < 1 {
			t.Fatalf("Parse(%q) = %d < 1", s, got)
		}
		back, err := Parse(Format(got))
		if err != nil || back != got {
			t.Fatalf("Parse(Format(%d)) = %d, %v (via %q)", got, back, err, Format(got))
		}
	})
}
