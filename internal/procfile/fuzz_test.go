package procfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
)

func jsonNumber(s string) json.Number { return json.Number(s) }

func checkTree(t *testing.T, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil, string, bool, json.Number:
	case []any:
		for _, e := range x {
			checkTree(t, e)
		}
	case map[string]any:
		for _, e := range x {
			checkTree(t, e)
		}
	default:
		t.Fatalf("tree holds a %T", v)
	}
}

// FuzzDecodeJSON: the JSON path never panics, its errors are one line, and
// relaxing comments keeps every byte's position.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{ecosystemJSON, `{"apps": [`, "{}\n{}", `[1, 2,]`, `{"a": "//not a comment", /* c */ "b": 1,}`,
		`"\"`, "/* open", "// only", `{"a": 1e999}`, "\xff", `{"a": "q\",}", "c": "\\"}`, `{"b": "x\"//y"}`, "/* a\n b */ {\"a\": 1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		relaxed := relaxJSON(b)
		if len(relaxed) != len(b) || bytes.Count(relaxed, []byte("\n")) != bytes.Count(b, []byte("\n")) {
			t.Fatalf("relaxJSON moved bytes: %q → %q", b, relaxed)
		}
		v, err := decodeJSON(b)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		checkTree(t, v)
		if json.Valid(b) {
			var std any
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			if d.Decode(&std) == nil && !equalJSON(std, v) {
				t.Fatalf("valid JSON %q decoded as %v, want %v", b, v, std)
			}
		}
	})
}

// TestDecodeJSONRelaxed: a trailing comma goes before ] as before }, and
// an escaped quote does not end a string, so that neither a "//" nor a
// ",}" inside one is taken for a comment or a trailing comma.
func TestDecodeJSONRelaxed(t *testing.T) {
	v, err := decodeJSON([]byte(`{"a": [1, 2,], "b": {"c": "q\",}", "d": "x\"//y", "e": "z\\", /* "c" */ "f": 1,},}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": []any{json.Number("1"), json.Number("2")},
		"b": map[string]any{"c": `q",}`, "d": `x"//y`, "e": `z\`, "f": json.Number("1")}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("decodeJSON = %#v, want %#v", v, want)
	}
	v, err = decodeJSON([]byte(`{"url": "\"//x", "n": 1}`))
	if want := map[string]any{"url": `"//x`, "n": json.Number("1")}; err != nil || !reflect.DeepEqual(v, want) {
		t.Errorf("decodeJSON = %#v, %v; want %#v", v, err, want)
	}
}

// checkOneLine fails when err's message takes more than one line: it is
// printed as gm2-init's one line of output.
func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("error not one line: %q", err)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// FuzzLoad: whatever a .json or .yaml file holds, Load returns apps that
// the supervisor can run, or one *Error line.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(ecosystemJSON), false)
	f.Add([]byte(ecosystemYAML), true)
	f.Add([]byte(`{"apps": [{"script": "api.js", "instances": -3, "listen": [":0", "unix:///tmp/x.sock"]}]}`), false)
	f.Add([]byte("apps:\n  - script: api.js\n    env_x: {A: 1}\n    stop_exit_codes: [1, 2]\n"), true)
	dir := f.TempDir()
	for _, s := range []string{"api.js", "worker.js"} {
		if err := os.WriteFile(filepath.Join(dir, s), nil, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, yaml bool) {
		name := "p.json"
		if yaml {
			name = "p.yaml"
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tmpl := template
		tmpl.Dir = dir
		apps, _, err := Load(p, tmpl, Options{Env: "x"})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error %T %q", err, err)
			}
			return
		}
		total := 0
		for _, a := range apps {
			if a.Name == "" || appspec.CheckName(a.Name) != nil || len(a.Command) == 0 || a.Path == "" {
				t.Fatalf("unusable app %+v", a)
			}
			if a.ExecMode == appspec.Fork && (a.Instances != appspec.Instances{N: 1} || len(a.Listen) > 0) {
				t.Fatalf("fork app %+v", a)
			}
			if a.KillTimeout <= 0 || a.ListenTimeout <= 0 || a.MaxMemory < 0 || appspec.CheckMaxRestarts(a.MaxRestarts) != nil {
				t.Fatalf("out of range: %+v", a)
			}
			for _, d := range []time.Duration{a.KillTimeout, a.ListenTimeout, a.MinUptime, a.RestartDelay} {
				if appspec.CheckDuration(d, 0) != nil {
					t.Fatalf("duration %v out of range: %+v", d, a)
				}
			}
			if a.KillTimeout <= 0 {
				t.Fatalf("out of range: %+v", a)
			}
			n, _ := a.Instances.Resolve(1)
			total += n
		}
		if len(apps) == 0 || total > appspec.MaxWorkers {
			t.Fatalf("%d apps, %d workers", len(apps), total)
		}
	})
}
