package appspec

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// SizeAccepted lists the forms ParseSize takes, for messages.
const SizeAccepted = "accepted: a number of bytes (314572800) or a whole number with K, M or G (300M, 1G; powers of 1024, any case)"

// ParseSize reads a memory size as PM2's max_memory_restart writes it:
// plain bytes, or a whole number followed by K, M or G (case-insensitive),
// which PM2 multiplies by 1024, 1024² and 1024³. Zero, negative numbers,
// fractions, other units and sizes beyond int64 are refused: a limit that
// cannot be met or cannot be represented is a typo, not a setting.
func ParseSize(s string) (int64, error) {
	v := strings.TrimSpace(s)
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			v = v[:n-1]
		}
	}
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, errors.New(SizeAccepted)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > math.MaxInt64/mult {
		return 0, errors.New(SizeAccepted)
	}
	return n * mult, nil
}

// FormatSize writes n bytes in the shortest form ParseSize reads back:
// 300M rather than 314572800.
func FormatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
