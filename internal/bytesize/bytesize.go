// Package bytesize parses and prints amounts of memory as users write them
// for PM2's max_memory_restart and gm2-init's --max-memory-restart: "300M",
// "1G", "512K", plain bytes "1048576".
//
// It depends on nothing, so that the command-line configuration and the
// process-file parser share one syntax without depending on each other or on
// the supervisor.
//
// The syntax is PM2's (digits, then an optional K, M or G, all powers of
// 1024) widened where nobody could mean anything else:
//
//   - the unit is case-insensitive and may be followed by "B", "i" or "iB"
//     ("300m", "300MB", "300Mi", "300MiB"): Docker's --memory reads "512m"
//     and "512mb" the same way, and Kubernetes users write "512Mi". A unit is always binary (K = 1024): PM2 and Docker count
//     so, and a 300M limit that meant 300,000,000 bytes would sit 5 % below
//     what the user computed from `ps`;
//   - T for tebibytes;
//   - a fraction before a unit ("1.5G"), rounded down to a whole byte;
//   - spaces between the number and the unit ("512 MB").
//
// Refused, with an error that lists the accepted forms: zero (a limit that
// restarts every worker at once is a typo; leaving the option out turns the
// check off), signs, exponents, a fraction of a plain byte count ("1.5"), an
// unknown unit ("10X"), and anything above 2^63-1 bytes.
package bytesize

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Forms describes the accepted syntax, for error messages and help texts.
const Forms = "a number of bytes (1048576) or a number with a K, M, G or T suffix, powers of 1024 (512K, 300M, 1G, 1.5G; 300MB, 300Mi, 300MiB alike)"

// maxFractionDigits bounds the digits after the point: 18 decimal digits
// keep 10^digits within 64 bits, and below a byte they change nothing.
const maxFractionDigits = 18

// units are the suffixes, in increasing size.
var units = [...]struct {
	letter byte
	shift  uint
}{{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}}

// Parse reads a size in bytes. The result is at least 1.
func Parse(s string) (int64, error) {
	n, err := parse(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w; want %s", s, err, Forms)
	}
	return n, nil
}

var (
	errEmpty    = errors.New("empty")
	errZero     = errors.New("zero bytes")
	errTooLarge = errors.New("more than 2^63-1 bytes")
)

func parse(s string) (int64, error) {
	if s == "" {
		return 0, errEmpty
	}
	intPart, rest := digits(s)
	if intPart == "" {
		return 0, fmt.Errorf("%q does not start with a digit", s)
	}
	var frac string
	if strings.HasPrefix(rest, ".") {
		frac, rest = digits(rest[1:])
		if frac == "" {
			return 0, errors.New("no digit after the decimal point")
		}
		if len(frac) > maxFractionDigits {
			return 0, fmt.Errorf("more than %d digits after the decimal point", maxFractionDigits)
		}
	}
	suffix := strings.TrimLeft(rest, " \t")
	shift, err := unitShift(suffix)
	if err != nil {
		return 0, err
	}
	if frac != "" && shift == 0 {
		return 0, errors.New("a fraction needs a K, M, G or T unit (bytes are whole)")
	}

	whole, ok := decimal(intPart)
	if !ok || whole > (1<<63-1)>>shift {
		return 0, errTooLarge
	}
	n := whole << shift
	if frac != "" {
		// frac/10^len × 2^shift, rounded down: the product fits 128 bits
		// and the quotient is below 2^shift.
		f, _ := decimal(frac)
		hi, lo := bits.Mul64(f, 1<<shift)
		q, _ := bits.Div64(hi, lo, pow10(len(frac)))
		if n > 1<<63-1-q {
			return 0, errTooLarge
		}
		n += q
	}
	if n == 0 {
		return 0, errZero
	}
	return int64(n), nil
}

// unitShift maps a suffix to a power of two: "" or "B" is bytes; otherwise
// one unit letter, alone or followed by "B", "i" or "iB", in any case.
func unitShift(suffix string) (uint, error) {
	u := strings.ToUpper(suffix)
	if u == "" || u == "B" {
		return 0, nil
	}
	for _, unit := range units {
		if u[0] != unit.letter {
			continue
		}
		switch u[1:] {
		case "", "B", "I", "IB":
			return unit.shift, nil
		}
	}
	return 0, fmt.Errorf("unknown unit %q", suffix)
}

// digits splits s after its leading ASCII digits.
func digits(s string) (string, string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// decimal parses ASCII digits; false on overflow of 64 bits.
func decimal(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		d := uint64(s[i] - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

func pow10(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 10
	}
	return p
}

// Format writes n with the largest unit that divides it exactly ("300M",
// "1536M", "1G"), or as plain bytes, so that Parse(Format(n)) == n and a log
// line shows the value the user wrote.
func Format(n int64) string {
	if n <= 0 {
		return fmt.Sprint(n)
	}
	for i := len(units) - 1; i >= 0; i-- {
		if u := units[i]; n&(1<<u.shift-1) == 0 {
			return fmt.Sprintf("%d%c", n>>u.shift, u.letter)
		}
	}
	return fmt.Sprint(n)
}
