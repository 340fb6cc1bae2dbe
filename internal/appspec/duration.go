package appspec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxDuration bounds every duration setting (timeouts, delays, intervals).
// Nothing gm2-init waits for is meant to take a day, and the bound keeps
// the sums logged at start (the worst-case stop: shutdown delay + kill
// timeout + the final sweep) far from time.Duration's 292 years, where they
// would overflow into negative numbers.
const MaxDuration = 24 * time.Hour

// ParseDuration accepts Go durations ("8s", "1m30s", "500ms") from 0 to
// MaxDuration. A bare number is refused with a hint, because PM2's
// kill_timeout is in milliseconds and a silent guess in either direction
// would be wrong. Zero needs no unit.
func ParseDuration(s string) (time.Duration, error) {
	const accepted = "accepted: a duration such as 500ms, 8s or 1m30s, up to 24h"
	v := strings.TrimSpace(s)
	if IsDecimal(v) {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f == 0 {
			return 0, nil
		}
		var forms []string
		for _, unit := range []string{"s", "ms"} {
			if d, err := time.ParseDuration(v + unit); err == nil && d <= MaxDuration {
				forms = append(forms, v+unit)
			}
		}
		if len(forms) == 0 {
			return 0, errors.New(accepted)
		}
		return 0, fmt.Errorf("accepted: a duration with a unit, such as %s", strings.Join(forms, " or "))
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errors.New(accepted)
	}
	if d > MaxDuration {
		return 0, errors.New("accepted: a duration of at most 24h")
	}
	return d, nil
}

// IsDecimal tells a bare unsigned number: digits with at most one '.' (a
// duration written without its unit).
func IsDecimal(v string) bool {
	digits, dots := 0, 0
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
