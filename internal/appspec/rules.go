package appspec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// The rules below are those the command line (config) and a process file
// (procfile) share: each is written once, here, and both parsers call it,
// so that a value one accepts the other does not refuse, and the other way
// round.

// NameAccepted describes valid app names: they appear in logs, metric
// labels and on the command line of `gm2-init reload APP` and --only
// (which splits at commas).
const NameAccepted = "1 to 100 characters without blanks, commas, quotes, backslashes or control characters"

// maxNameBytes bounds an app name.
const maxNameBytes = 100

// nameRune tells whether r may be part of an app name.
func nameRune(r rune) bool {
	return !(unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' || r == '"' || r == '\'' || r == '\\' || r == unicode.ReplacementChar)
}

// CheckName accepts an app name: a process file's name key, an --only
// item. Its error is NameAccepted.
func CheckName(s string) error {
	if s == "" || len(s) > maxNameBytes {
		return errors.New(NameAccepted)
	}
	for _, r := range s {
		if !nameRune(r) {
			return errors.New(NameAccepted)
		}
	}
	return nil
}

// CleanName makes a name that CheckName accepts out of s (a script's base
// name, as PM2 names an app after its script): what the rule refuses
// becomes '_', and it is cut to 100 bytes; "" becomes "app".
func CleanName(s string) string {
	out := strings.Map(func(r rune) rune {
		if !nameRune(r) {
			return '_'
		}
		return r
	}, s)
	if len(out) > maxNameBytes {
		// Cut at a rune boundary.
		out = strings.ToValidUTF8(out[:maxNameBytes], "")
	}
	if out == "" {
		return "app"
	}
	return out
}

// DurationRange says which durations CheckDuration(d, least) accepts, for
// messages: "from 1ms to 24h", or "up to 24h" when least is 0.
func DurationRange(least time.Duration) string {
	if least <= 0 {
		return "up to " + fmtHours(MaxDuration)
	}
	return fmt.Sprintf("from %v to %s", least, fmtHours(MaxDuration))
}

func fmtHours(d time.Duration) string { return fmt.Sprintf("%dh", d/time.Hour) }

// CheckDuration accepts a duration setting from least to MaxDuration:
// --kill-timeout and kill_timeout, --min-uptime and min_uptime …
func CheckDuration(d, least time.Duration) error {
	if d < max(least, 0) || d > MaxDuration {
		return fmt.Errorf("accepted: a duration %s", DurationRange(least))
	}
	return nil
}

// MaxRestartsLimit bounds --max-restarts and max_restarts.
const MaxRestartsLimit = 1_000_000

// MaxRestartsAccepted describes what CheckMaxRestarts accepts.
const MaxRestartsAccepted = "a whole number from 0 to 1000000"

// CheckMaxRestarts accepts failed starts in a row from 0 to
// MaxRestartsLimit. The error is "accepted: …".
func CheckMaxRestarts(n int) error {
	if n < 0 || n > MaxRestartsLimit {
		return errors.New("accepted: " + MaxRestartsAccepted)
	}
	return nil
}

// ParseMaxRestarts reads --max-restarts: a whole number that
// CheckMaxRestarts accepts.
func ParseMaxRestarts(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("accepted: " + MaxRestartsAccepted)
	}
	if err := CheckMaxRestarts(n); err != nil {
		return 0, err
	}
	return n, nil
}

// NoListenAddressError: a listen value with no address in it ("", ",").
type NoListenAddressError struct{}

func (*NoListenAddressError) Error() string {
	return "no address; accepted: " + sockets.Accepted + ", several separated by commas"
}

// ParseListen reads listen addresses as --listen, GM2_LISTEN and a process
// file's listen key (a string, or a list of them) give them: each value is
// a comma-separated list whose blank items are skipped (a trailing comma in
// a multi-line variable), and there must be at least one address in all —
// "", "," or a list of blanks is a *NoListenAddressError, not "no
// listener" (an app without listeners leaves the key out, as an empty or
// unset GM2_LISTEN does). An address's own error names the address.
func ParseListen(values ...string) ([]sockets.Spec, error) {
	var out []sockets.Spec
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			s, err := sockets.ParseSpec(part)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, &NoListenAddressError{}
	}
	return out, nil
}
