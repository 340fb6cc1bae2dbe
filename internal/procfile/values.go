package procfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/bytesize"
	"github.com/gm2-init/gm2-init/internal/shellwords"
)

// describe renders a value of the tree for a message: strings quoted,
// numbers as written, lists and objects by kind.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

// invalid is the usual "invalid value X: accepted: …" message.
func invalid(v any, accepted string) error {
	return fmt.Errorf("invalid value %s: accepted: %s", describe(v), accepted)
}

func asString(v any, accepted string) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", invalid(v, accepted)
}

// asBool reads a boolean key (wait_ready, autorestart, autostart). A
// string is refused, "false" included: PM2 reads such a value as
// JavaScript does, where every non-empty string is true, so "false" would
// mean true there. For "true" and "false" the message says that quotes
// made them a string.
func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		if w := strings.ToLower(strings.TrimSpace(x)); w == "true" || w == "false" {
			return false, fmt.Errorf("invalid value %s (a string): accepted: true or false, without quotes", describe(v))
		}
	}
	return false, invalid(v, "true or false")
}

// asInt reads a whole number given as a number or a numeric string (PM2
// turns numeric strings into numbers for its number keys).
func asInt(v any, accepted string) (int, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, invalid(v, accepted)
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	// 4.0 in YAML, 1e2 in JSON: whole numbers all the same.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, invalid(v, accepted)
	}
	return int(f), nil
}

// bareNumber returns v's digits when v is a number without a unit (a
// number, or a string of one), which asDuration reads as milliseconds.
func bareNumber(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string:
		s := strings.TrimSpace(x)
		return s, appspec.IsDecimal(s)
	}
	return "", false
}

// durationAccepted lists the forms asDuration takes.
const durationAccepted = "milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s)"

// asDuration reads PM2's time keys: a number (or a string of digits) is
// milliseconds, as PM2 documents for kill_timeout, listen_timeout,
// min_uptime and restart_delay; a string with a unit is a Go duration, which
// covers PM2's own "10s", "5m", "1h". The range is the flags' own
// (appspec.CheckDuration): from least to appspec.MaxDuration.
func asDuration(v any, least time.Duration) (time.Duration, error) {
	outOfRange := invalid(v, durationAccepted+", "+appspec.DurationRange(least))
	// fromMillis converts a number of milliseconds, which may be far
	// beyond what a time.Duration holds.
	fromMillis := func(f float64) (time.Duration, error) {
		if f > float64(appspec.MaxDuration/time.Millisecond) {
			return 0, outOfRange
		}
		return time.Duration(f * float64(time.Millisecond)), nil
	}
	var d time.Duration
	var err error
	switch x := v.(type) {
	case json.Number:
		f, perr := strconv.ParseFloat(string(x), 64)
		if perr != nil && !errors.Is(perr, strconv.ErrRange) || f < 0 || math.IsNaN(f) {
			return 0, invalid(v, durationAccepted)
		}
		if d, err = fromMillis(f); err != nil {
			return 0, err
		}
	case string:
		s := strings.TrimSpace(x)
		if f, perr := strconv.ParseFloat(s, 64); (perr == nil || errors.Is(perr, strconv.ErrRange)) && appspec.IsDecimal(s) {
			if d, err = fromMillis(f); err != nil {
				return 0, err
			}
			break
		}
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, invalid(v, durationAccepted)
		}
	default:
		return 0, invalid(v, durationAccepted)
	}
	if appspec.CheckDuration(d, least) != nil {
		return 0, outOfRange
	}
	return d, nil
}

// asSize reads max_memory_restart exactly as --max-memory-restart reads its
// value (internal/bytesize): bytes, or a number with PM2's K, M or G (1024
// based, as PM2 computes them) and the forms bytesize widens them with
// (T, "300MB", "512Mi", "1.5G", "512 MB"). A number in the file is read
// from its text, so 2.5 is refused as "2.5" is: bytes are whole.
func asSize(v any) (int64, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	default:
		return 0, invalid(v, bytesize.Forms)
	}
	n, err := bytesize.Parse(s)
	if err != nil {
		return 0, invalid(v, bytesize.Forms)
	}
	return n, nil
}

// asWords reads args and interpreter_args: a list of strings (numbers and
// booleans are written out, as Node would pass them), or one string split
// into words as a shell would split it — quotes group, a backslash escapes
// the next character, nothing is expanded.
func asWords(v any) ([]string, error) {
	const accepted = "a string (split into words like a shell, without expansion) or a list of strings"
	switch x := v.(type) {
	case string:
		w, err := shellwords.Split(x)
		if err != nil {
			return nil, fmt.Errorf("invalid value %s: %v; accepted: %s", describe(v), err, accepted)
		}
		return w, nil
	case []any:
		out := make([]string, 0, len(x))
		for i, e := range x {
			switch s := e.(type) {
			case string:
				out = append(out, s)
			case json.Number:
				out = append(out, string(s))
			case bool:
				out = append(out, strconv.FormatBool(s))
			default:
				return nil, fmt.Errorf("item %d: %w", i, invalid(e, "a string"))
			}
		}
		for i, s := range out {
			if strings.IndexByte(s, 0) >= 0 {
				return nil, fmt.Errorf("item %d: an argument cannot hold a NUL byte", i)
			}
		}
		return out, nil
	case json.Number:
		return []string{string(x)}, nil
	}
	return nil, invalid(v, accepted)
}

// envName checks a variable name: what execve can carry and a shell can
// name (letters, digits, '_', not starting with a digit). PM2 passes any
// name Node accepts, but a name with '=' or a NUL cannot be passed at all,
// and other odd names are typos far more often than intent.
func checkEnvName(name string) error {
	if name == "" {
		return errors.New("an empty variable name")
	}
	for i, r := range name {
		if !(r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')) {
			return fmt.Errorf("variable name %q: accepted: letters, digits and '_', not starting with a digit", name)
		}
	}
	return nil
}

// asEnv reads an env object into KEY=VALUE pairs, sorted by name. Values
// are written as Node writes them into a child's environment: strings as
// they are, numbers and booleans as text; objects and lists as JSON (as PM2
// does). null has no clear meaning and is refused.
func asEnv(v any) (map[string]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalid(v, "an object of NAME: value")
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		if err := checkEnvName(k); err != nil {
			return nil, err
		}
		var s string
		switch x := m[k].(type) {
		case string:
			s = x
		case json.Number:
			s = string(x)
		case bool:
			s = strconv.FormatBool(x)
		case nil:
			return nil, fmt.Errorf("%s: invalid value null: accepted: a string, number or boolean (an empty string for an empty variable)", k)
		default:
			b, err := json.Marshal(x)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", k, err)
			}
			s = string(b)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("%s: a value cannot hold a NUL byte", k)
		}
		out[k] = s
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
