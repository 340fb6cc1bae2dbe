package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/status"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	numberRE     = regexp.MustCompile(`^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$`)
)

// checkExposition is a strict checker of the text exposition format 0.0.4,
// stricter than Prometheus where the house rules are: every family has one
// HELP and one TYPE before its samples, samples of a family are contiguous,
// no other comments, no empty lines, no timestamps, no trailing commas,
// counters are named *_total and never negative, and no series repeats.
func checkExposition(body string) error {
	if body == "" {
		return errors.New("empty exposition")
	}
	if !strings.HasSuffix(body, "\n") {
		return errors.New("last line does not end in \\n")
	}
	if !utf8.ValidString(body) {
		return errors.New("invalid UTF-8")
	}
	type family struct {
		help, typ bool
		typeName  string
		samples   int
		closed    bool
	}
	families := map[string]*family{}
	var current string
	series := map[string]bool{}
	fam := func(name string) *family {
		f := families[name]
		if f == nil {
			f = &family{}
			families[name] = f
		}
		return f
	}
	// enter makes name the current family; re-entering a closed one means
	// its lines are not contiguous.
	enter := func(name string) error {
		if name == current {
			return nil
		}
		if current != "" {
			families[current].closed = true
		}
		if f := families[name]; f != nil && f.closed {
			return fmt.Errorf("family %s is not contiguous", name)
		}
		current = name
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	for i, line := range lines {
		n := i + 1
		if line == "" {
			return fmt.Errorf("line %d: empty line", n)
		}
		if strings.HasPrefix(line, "#") {
			parts := strings.SplitN(line, " ", 4)
			if len(parts) < 3 || parts[0] != "#" || (parts[1] != "HELP" && parts[1] != "TYPE") {
				return fmt.Errorf("line %d: comment other than HELP or TYPE: %q", n, line)
			}
			name := parts[2]
			if !metricNameRE.MatchString(name) {
				return fmt.Errorf("line %d: bad metric name %q", n, name)
			}
			if err := enter(name); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			f := fam(name)
			if f.samples > 0 {
				return fmt.Errorf("line %d: %s for %s after its samples", n, parts[1], name)
			}
			if len(parts) != 4 || parts[3] == "" {
				return fmt.Errorf("line %d: %s without text", n, parts[1])
			}
			switch parts[1] {
			case "HELP":
				if f.help {
					return fmt.Errorf("line %d: second HELP for %s", n, name)
				}
				f.help = true
				if err := checkEscapes(parts[3], false); err != nil {
					return fmt.Errorf("line %d: HELP: %w", n, err)
				}
			case "TYPE":
				if f.typ {
					return fmt.Errorf("line %d: second TYPE for %s", n, name)
				}
				f.typ = true
				switch parts[3] {
				case "counter", "gauge", "untyped", "summary", "histogram":
				default:
					return fmt.Errorf("line %d: unknown type %q", n, parts[3])
				}
				f.typeName = parts[3]
				if f.typeName == "counter" && !strings.HasSuffix(name, "_total") {
					return fmt.Errorf("line %d: counter %s not named *_total", n, name)
				}
			}
			continue
		}

		name, labels, value, err := parseSample(line)
		if err != nil {
			return fmt.Errorf("line %d: %w: %q", n, err, line)
		}
		if err := enter(name); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		f := fam(name)
		if !f.help || !f.typ {
			return fmt.Errorf("line %d: sample of %s before its HELP and TYPE", n, name)
		}
		if f.typeName != "counter" && f.typeName != "gauge" {
			return fmt.Errorf("line %d: this checker knows counters and gauges only, %s is a %s", n, name, f.typeName)
		}
		if f.typeName == "counter" && (value < 0 || value != value) {
			return fmt.Errorf("line %d: counter %s is %v", n, name, value)
		}
		f.samples++
		key := name + "{" + strings.Join(labels, ",") + "}"
		if series[key] {
			return fmt.Errorf("line %d: duplicate series %s", n, key)
		}
		series[key] = true
	}
	for name, f := range families {
		if f.samples == 0 {
			return fmt.Errorf("family %s has no sample", name)
		}
	}
	return nil
}

// parseSample parses `name{l="v",…} value` and returns the labels as
// sorted name=value strings (values unescaped) for the duplicate check.
func parseSample(line string) (name string, labels []string, value float64, err error) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", nil, 0, errors.New("no value")
	}
	name = line[:i]
	if !metricNameRE.MatchString(name) {
		return "", nil, 0, fmt.Errorf("bad metric name %q", name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		seen := map[string]bool{}
		for {
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 {
				return "", nil, 0, errors.New("label without '='")
			}
			ln := rest[:eq]
			if !labelNameRE.MatchString(ln) || strings.HasPrefix(ln, "__") {
				return "", nil, 0, fmt.Errorf("bad label name %q", ln)
			}
			if seen[ln] {
				return "", nil, 0, fmt.Errorf("label %s twice", ln)
			}
			seen[ln] = true
			rest = rest[eq+1:]
			if rest == "" || rest[0] != '"' {
				return "", nil, 0, errors.New("label value not quoted")
			}
			rest = rest[1:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				if c == '\\' {
					if j+1 >= len(rest) {
						return "", nil, 0, errors.New("dangling backslash in label value")
					}
					switch rest[j+1] {
					case '\\':
						val.WriteByte('\\')
					case '"':
						val.WriteByte('"')
					case 'n':
						val.WriteByte('\n')
					default:
						return "", nil, 0, fmt.Errorf("bad escape \\%c in label value", rest[j+1])
					}
					j++
					continue
				}
				val.WriteByte(c)
			}
			if !closed {
				return "", nil, 0, errors.New("unterminated label value")
			}
			labels = append(labels, ln+"="+strconv.Quote(val.String()))
			if rest == "" {
				return "", nil, 0, errors.New("unterminated label set")
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			if rest[0] != ',' || len(rest) < 2 || rest[1] == '}' {
				return "", nil, 0, errors.New("labels not separated by a single ',' (or trailing ',')")
			}
			rest = rest[1:]
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return "", nil, 0, errors.New("no single space before the value")
	}
	v := rest[1:]
	if strings.Contains(v, " ") {
		return "", nil, 0, errors.New("timestamp or extra field after the value")
	}
	switch v {
	case "+Inf", "-Inf", "NaN":
	default:
		if !numberRE.MatchString(v) {
			return "", nil, 0, fmt.Errorf("bad value %q", v)
		}
	}
	value, err = strconv.ParseFloat(v, 64)
	if err != nil {
		return "", nil, 0, fmt.Errorf("bad value %q: %w", v, err)
	}
	slices.Sort(labels)
	return name, labels, value, nil
}

// checkEscapes accepts only the escapes the format defines: \\ and \n, and
// \" too in a label value (quote true); in a label value a bare '"' is an
// error.
func checkEscapes(s string, quote bool) error {
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if j+1 >= len(s) {
				return errors.New("dangling backslash")
			}
			switch s[j+1] {
			case '\\', 'n':
			case '"':
				if !quote {
					return errors.New(`\" is not an escape in HELP`)
				}
			default:
				return fmt.Errorf("bad escape \\%c", s[j+1])
			}
			j++
		case '"':
			if quote {
				return errors.New(`unescaped '"'`)
			}
		}
	}
	return nil
}

// TestCheckerIsStrict makes sure the checker rejects what it must, so that
// its passing means something.
func TestCheckerIsStrict(t *testing.T) {
	good := "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP b B.\n# TYPE b gauge\nb{x=\"1\",y=\"q\\\"\\\\\\n\"} 2.5\nb{x=\"2\"} +Inf\n"
	if err := checkExposition(good); err != nil {
		t.Fatalf("good exposition rejected: %v", err)
	}
	for name, body := range map[string]string{
		"no final newline":      strings.TrimSuffix(good, "\n"),
		"empty line":            strings.Replace(good, "a_total 1\n", "a_total 1\n\n", 1),
		"no HELP":               "# TYPE b gauge\nb 1\n",
		"no TYPE":               "# HELP b B.\nb 1\n",
		"two TYPE":              "# HELP b B.\n# TYPE b gauge\n# TYPE b gauge\nb 1\n",
		"two HELP":              "# HELP b B.\n# HELP b B.\n# TYPE b gauge\nb 1\n",
		"TYPE after sample":     "# HELP b B.\nb 1\n# TYPE b gauge\n",
		"not contiguous":        "# HELP b B.\n# TYPE b gauge\nb{x=\"1\"} 1\n# HELP c C.\n# TYPE c gauge\nc 1\nb{x=\"2\"} 1\n",
		"unescaped quote":       "# HELP b B.\n# TYPE b gauge\nb{x=\"a\"b\"} 1\n",
		"bad escape in label":   "# HELP b B.\n# TYPE b gauge\nb{x=\"a\\tb\"} 1\n",
		"bad escape in HELP":    "# HELP b B\\t.\n# TYPE b gauge\nb 1\n",
		"trailing comma":        "# HELP b B.\n# TYPE b gauge\nb{x=\"1\",} 1\n",
		"duplicate series":      "# HELP b B.\n# TYPE b gauge\nb{x=\"1\"} 1\nb{x=\"1\"} 2\n",
		"counter without total": "# HELP c C.\n# TYPE c counter\nc 1\n",
		"negative counter":      "# HELP c_total C.\n# TYPE c_total counter\nc_total -1\n",
		"timestamp":             "# HELP b B.\n# TYPE b gauge\nb 1 1700000000000\n",
		"bad value":             "# HELP b B.\n# TYPE b gauge\nb one\n",
		"bad name":              "# HELP 1b B.\n# TYPE 1b gauge\n1b 1\n",
		"other comment":         "# hello\n# HELP b B.\n# TYPE b gauge\nb 1\n",
		"invalid UTF-8":         "# HELP b B\xff.\n# TYPE b gauge\nb 1\n",
		"family without sample": "# HELP b B.\n# TYPE b gauge\n",
	} {
		if err := checkExposition(body); err == nil {
			t.Errorf("%s: accepted %q", name, body)
		}
	}
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, label, help string }{
		{in: "plain", label: "plain", help: "plain"},
		{in: `a\b`, label: `a\\b`, help: `a\\b`},
		{in: `say "hi"`, label: `say \"hi\"`, help: `say "hi"`},
		{in: "two\nlines", label: `two\nlines`, help: `two\nlines`},
		{in: "\\\"\n", label: `\\\"\n`, help: "\\\\\"\\n"},
		{in: `\n`, label: `\\n`, help: `\\n`}, // a literal backslash-n stays two characters
		{in: "bad\xffutf8", label: "bad\uFFFDutf8", help: "bad\uFFFDutf8"},
		{in: "tab\there ünï", label: "tab\there ünï", help: "tab\there ünï"},
		{in: "", label: "", help: ""},
	} {
		if got := escapeLabelValue(tc.in); got != tc.label {
			t.Errorf("escapeLabelValue(%q) = %q, want %q", tc.in, got, tc.label)
		}
		if got := escapeHelp(tc.in); got != tc.help {
			t.Errorf("escapeHelp(%q) = %q, want %q", tc.in, got, tc.help)
		}
		if err := checkEscapes(escapeLabelValue(tc.in), true); err != nil {
			t.Errorf("escapeLabelValue(%q) fails the checker: %v", tc.in, err)
		}
		if err := checkEscapes(escapeHelp(tc.in), false); err != nil {
			t.Errorf("escapeHelp(%q) fails the checker: %v", tc.in, err)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	snap := healthySnapshot()
	snap.Slots = append(snap.Slots, status.Slot{Index: 2, State: status.Errored, Restarts: 10})
	snap.Instances = 3
	_, base, _ := startServer(t, newFakeSource(snap), testOptions())

	r := get(t, base+"/metrics")
	if r.code != 200 {
		t.Fatalf("metrics: %d %q", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if err := checkExposition(r.body); err != nil {
		t.Fatalf("exposition invalid: %v\n%s", err, r.body)
	}
	want := []string{
		`gm2_info{version="1.2.3"} 1`,
		`gm2_instances_wanted 3`,
		`gm2_min_ready_workers 1`,
		`gm2_ready_workers 2`,
		`gm2_workers{state="ready"} 2`,
		`gm2_workers{state="errored"} 1`,
		`gm2_shutting_down 0`,
		`gm2_reload_in_progress 0`,
		`gm2_reload_generation 1`,
		`gm2_restarts_total 2`,
		`gm2_reloads_total{result="ok"} 1`,
		`gm2_reloads_total{result="failed"} 0`,
		`gm2_orphans_reaped_total 7`,
		`gm2_workers_started_total 4`,
		`gm2_memory_restarts_total 3`,
	}
	for _, st := range status.AllStates {
		if st != status.Ready && st != status.Errored {
			want = append(want, fmt.Sprintf(`gm2_workers{state=%q} 0`, st))
		}
	}
	lines := strings.Split(r.body, "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("missing line %q", w)
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		for _, fam := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes",
			"process_virtual_memory_bytes", "process_open_fds", "process_start_time_seconds"} {
			if !strings.Contains(r.body, "\n"+fam+" ") {
				t.Errorf("missing %s", fam)
			}
		}
	}
	runPromtool(t, r.body)
}

// hostileSnapshot puts backslashes, quotes, newlines and invalid UTF-8
// wherever a string reaches the exposition or the JSON.
func hostileSnapshot() *status.Snapshot {
	snap := healthySnapshot()
	snap.Version = "v1\\\"\n\xff}"
	snap.Slots[0].LastStatus = "STATUS=\"}\n# TYPE evil counter\nevil_total 1\\"
	snap.Slots[0].Workers[0].Status = snap.Slots[0].LastStatus
	snap.Slots[1].State = status.State("we\"ird\\\nstate")
	snap.Counters.Reloads = map[string]uint64{"ok": 1, "failed": 2, "failed: \"x\"\n": 3}
	return snap
}

func TestMetricsHostileStrings(t *testing.T) {
	var e exposition
	writeMetrics(&e, hostileSnapshot(), nil, procfs.Usage{CPUSeconds: 1.25, ResidentBytes: 4096, VirtualBytes: 8192, OpenFDs: 9}, 1.7e9)
	body := e.buf.String()
	if err := checkExposition(body); err != nil {
		t.Fatalf("exposition invalid: %v\n%s", err, body)
	}
	for _, w := range []string{
		`gm2_info{version="v1\\\"\n` + "\uFFFD" + `}"} 1`,
		`gm2_workers{state="we\"ird\\\nstate"} 1`,
		`gm2_reloads_total{result="failed: \"x\"\n"} 3`,
		`process_start_time_seconds 1.7e+09`,
		`process_cpu_seconds_total 1.25`,
	} {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("missing line %q in\n%s", w, body)
		}
	}
	if strings.Contains(body, "evil") {
		t.Errorf("STATUS= text reached the exposition:\n%s", body)
	}
	runPromtool(t, body)
}

func TestMetricsWithoutProc(t *testing.T) {
	var e exposition
	missing := errors.New("no /proc")
	writeMetrics(&e, &status.Snapshot{}, nil, procfs.Usage{StatErr: missing, FDErr: missing}, 0)
	body := e.buf.String()
	if err := checkExposition(body); err != nil {
		t.Fatalf("exposition invalid: %v\n%s", err, body)
	}
	if strings.Contains(body, "process_") {
		t.Errorf("process metrics reported without /proc:\n%s", body)
	}
}

func TestStatusHostileStringsIsValidJSON(t *testing.T) {
	_, base, _ := startServer(t, newFakeSource(hostileSnapshot()), testOptions())
	r := get(t, base+"/status")
	var v map[string]any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, r.body)
	}
}

// runPromtool validates body with `promtool check metrics` (Debian package
// prometheus) when it is installed.
func runPromtool(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not found: skipping its check (apt-get install prometheus provides it)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n--- input ---\n%s", err, out.String(), body)
		return
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		t.Errorf("promtool check metrics reported:\n%s", s)
	}
}

// TestPromtool checks the exposition with Prometheus' own checker. Without
// promtool it skips and says so (fails under CI=true, where
// scripts/test.sh installs it).
func TestPromtool(t *testing.T) {
	testtool.Require(t, "promtool", "Debian package prometheus; without it the exposition is checked by the built-in checker only")
	var e exposition
	writeMetrics(&e, healthySnapshot(), nil, procfs.ReadSelf("/proc"), 1.7e9)
	runPromtool(t, e.buf.String())
}
