package procfile

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// yamlForms are the forms process files are written in, with the tree
// each must give. FuzzYAMLMatchesLibrary starts from them too.
var yamlForms = []struct {
	name, src string
	want      any
}{
	{"pm2 docs", "apps:\n  - script   : ./api.js\n    name     : 'api-app'\n    instances: 4\n    exec_mode: cluster\n  - script : ./worker.js\n    name   : 'worker'\n    watch  : true\n    env    :\n      NODE_ENV: development\n",
		map[string]any{"apps": []any{
			map[string]any{"script": "./api.js", "name": "api-app", "instances": json.Number("4"), "exec_mode": "cluster"},
			map[string]any{"script": "./worker.js", "name": "worker", "watch": true, "env": map[string]any{"NODE_ENV": "development"}},
		}}},
	{"list at its key's indentation", "apps:\n- name: a\n  args: [x, 'y z', \"q\\tr\"]\n- name: b\nother: 1\n",
		map[string]any{"apps": []any{map[string]any{"name": "a", "args": []any{"x", "y z", "q\tr"}}, map[string]any{"name": "b"}}, "other": json.Number("1")}},
	{"merge keys", "base: &base\n  kill_timeout: 3s\n  env: {A: 1}\nmore: &more {max_restarts: 5, kill_timeout: 9s}\napps:\n  - <<: [*base, *more]\n    name: api\n    env: {B: 2}\n",
		map[string]any{
			"base": map[string]any{"kill_timeout": "3s", "env": map[string]any{"A": json.Number("1")}},
			"more": map[string]any{"max_restarts": json.Number("5"), "kill_timeout": "9s"},
			"apps": []any{map[string]any{"name": "api", "kill_timeout": "3s", "max_restarts": json.Number("5"), "env": map[string]any{"B": json.Number("2")}}},
		}},
	{"scalars", "a: ~\nb: null\nc: TRUE\nd: yes\ne: 0x1F\nf: 1_000\ng: 1.50\nh: .inf\ni: -3\nj: 1e3\nk: 0o17\nl: 2024-01-02\nm: '007'\nn: \"1\"\no: 300M\np:\nq: +1\n",
		map[string]any{"a": nil, "b": nil, "c": true, "d": "yes", "e": json.Number("31"), "f": json.Number("1000"), "g": json.Number("1.5"),
			"h": json.Number("+Inf"), "i": json.Number("-3"), "j": json.Number("1000"), "k": json.Number("15"), "l": "2024-01-02",
			"m": "007", "n": "1", "o": "300M", "p": nil, "q": json.Number("1")}},
	// Spellings the library resolves that the one above does not show: a
	// leading 0 is octal (as in Go, not as in js-yaml 4: quote a umask),
	// a signed hex, '_' anywhere in a number, and the capitalised forms.
	{"more scalars", "a: 0755\nb: -0x1F\nc: 1_000.5\nd: 1__0\ne: False\nf: True\ng: .NaN\nh: -.Inf\ni: 0o7_7\n",
		map[string]any{"a": json.Number("493"), "b": json.Number("-31"), "c": json.Number("1000.5"), "d": json.Number("10"), "e": false, "f": true,
			"g": json.Number("NaN"), "h": json.Number("-Inf"), "i": json.Number("63")}},
	{"blanks after a plain value", "a: x \t\nb: y\t# c\n", map[string]any{"a": "x", "b": "y"}},
	{"comments and markers", "%YAML 1.1\n--- # the file\n# a comment\nname: api # trailing\nurl: http://x/#frag\nhash: a#b\n...\n--- # a second document, read for its errors only\nb: 2\n",
		map[string]any{"name": "api", "url": "http://x/#frag", "hash": "a#b"}},
	{"block scalars", "lit: |\n  line one\n    indented\n\n  last\nfold: >-\n  folded\n  text\n\n  para\nkeep: |+\n  x\n\nnext: 1\n",
		map[string]any{"lit": "line one\n  indented\n\nlast\n", "fold": "folded text\npara", "keep": "x\n\n", "next": json.Number("1")}},
	{"multi-line scalars", "args: --port 3000\n  --name x\nq: \"a\n  b\n\n  c\\\n  d\"\ns: 'it''s'\n",
		map[string]any{"args": "--port 3000 --name x", "q": "a b\ncd", "s": "it's"}},
	{"flow across lines", "env: {\n  A: 1,   # one\n  B: [x,\n      y],\n  C: \"z\",\n}\n",
		map[string]any{"env": map[string]any{"A": json.Number("1"), "B": []any{"x", "y"}, "C": "z"}}},
	{"a list of apps at the top", "- script: a.js\n- script: b.js\n  instances: max\n",
		[]any{map[string]any{"script": "a.js"}, map[string]any{"script": "b.js", "instances": "max"}}},
	{"nested lists", "- - a\n  - b\n-\n  - c\n- \n", []any{[]any{"a", "b"}, []any{"c"}, nil}},
	{"real-world values", "---\napps:\n  # the api\n  - name: \"app\"\n      # a comment indented anyhow\n    script: npm\n    args: start   \n    cron_restart: \"0 * * * *\"\n\n    env:\n        DATABASE_URL: postgres://u:p@db:5432/x?ssl=true\n        NODE_OPTIONS: --max-old-space-size=4096\n        EMPTY: ''\n        LIST: []\n        MAP: {}\n    log_date_format: YYYY-MM-DD HH:mm Z\n",
		map[string]any{"apps": []any{map[string]any{"name": "app", "script": "npm", "args": "start", "cron_restart": "0 * * * *",
			"env":             map[string]any{"DATABASE_URL": "postgres://u:p@db:5432/x?ssl=true", "NODE_OPTIONS": "--max-old-space-size=4096", "EMPTY": "", "LIST": []any{}, "MAP": map[string]any{}},
			"log_date_format": "YYYY-MM-DD HH:mm Z"}}}},
	{"indented", "  a: 1\n  b:\n    - 2\n", map[string]any{"a": json.Number("1"), "b": []any{json.Number("2")}}},
	{"tags and escapes the library read", "a: !!str 1\nb: !!str\nc: \"it\\'s\"\nd: &x !!str 3\ne: *x\nf: x\n  \ty\n",
		map[string]any{"a": "1", "b": "", "c": "it's", "d": "3", "e": "3", "f": "x y"}},
	{"crlf and bom", "\ufeffname: api\r\nscript: a.js\r\n", map[string]any{"name": "api", "script": "a.js"}},
}

func TestYAMLForms(t *testing.T) {
	for _, tc := range yamlForms {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseYAML(tc.src)
			if err != nil {
				t.Fatalf("parseYAML: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tc.want)
			}
			if lib, ok := libraryYAML(t, tc.src); ok && !reflect.DeepEqual(got, lib) {
				t.Fatalf("the library reads %#v", lib)
			}
		})
	}
}

func TestYAMLErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"apps:\n  - name: api\n    env: NODE_ENV: production\n", "line 3: mapping values are not allowed in this context (quote a value that holds \": \")"},
		{"apps:\n\t- x\n", "line 2: a tab indents this line; YAML indents with spaces"},
		{"a: 1\na: 2\n", `line 2: mapping key "a" already defined at line 1`},
		{"a: {b: 1, b: 2}\n", `line 1: mapping key "b" already defined at line 1`},
		{"a: ! 1\n", "line 1: the tag ! is not supported (only !!str is); quote a value to keep it a string"},
		{"x: &x true\na: !!str\n  *x\n", "line 3: an alias cannot have an anchor or a tag"},
		{"a: [!!str]\n", "line 1: the tag !!str] is not supported (only !!str is); quote a value to keep it a string"},
		{"a: !!str !!str 1\n", "line 1: a value has at most one tag"},
		{"a: {b: 1,\n c:", "line 1: this { is not closed"},
		{"a: !!int 1\n", "line 1: the tag !!int is not supported (only !!str is); quote a value to keep it a string"},
		{"a: !!str [1]\n", "line 1: !!str is for a value, not a list or a mapping"},
		{"cron_restart: */5 * * * *\n", "line 1: a value starting with * is an alias (*name), a name of letters, digits, - and _; quote a value that starts with *"},
		{"env: {URL: http://h/db?ssl=1}\n", "line 1: a '?' ends a plain value inside [ ] or { }; quote the value"},
		{"a: x\n\tb\n", "line 2: a tab indents this line; YAML indents with spaces"},
		{"a: 1\rb: [\r", "line 2: this [ is not closed"},
		{"a: 1\r\x01", "line 2: control character U+0001 is not allowed; write it as an escape in a double-quoted value"},
		{"apps:\n  - env:\n      2: x\n", "line 3: apps[0].env: key 2 is not a string"},
		{"\"a\\nb\": {1: x}\n", `line 1: "a\nb": key 1 is not a string`},
		{"a:\n  <<:\n  x: 1\n", "line 2: <<: merges a mapping or a list of mappings"},
		{"? a\n: b\n", "line 1: complex keys (? key) are not supported; write key: value"},
		{"a: *nope\n", "line 1: unknown anchor 'nope' referenced"},
		{"a: &x [*x]\n", "line 1: anchor 'x' value contains itself"},
		{"a: [b: c]\n", "line 1: expected ',' or ']', found ':' (a key: value pair inside [ ] is written {key: value})"},
		{"a: [1, 2\nb: 3\n", "line 2: expected ',' or ']', found ':' (a key: value pair inside [ ] is written {key: value}) (in the [ of line 1)"},
		{"a: [1, 2]]\n", `line 1: unexpected "]" after the value`},
		{"a: [1, 2\n", "line 1: this [ is not closed"},
		{"a: 'open\n", "line 1: a quoted value is not closed"},
		{"a: \"\\q\"\n", `line 1: unknown escape "\\q" in a double-quoted value`},
		{"a:\n  b: 1\n c: 2\n", "line 3: this line is indented more than the key above it, and is not part of its value"},
		{"  a: 1\nb: 2\n", `line 2: expected the end of the document (is "b: 2" indented wrong?)`},
		{"a: 'x'\n  b: 1\n", "line 2: this line is indented more than the key above it, and is not part of its value"},
		{"- a\nb: 1\n", `line 2: expected a list item (- ...) at this indentation, found "b: 1"`},
		{"a: 1\n- b\n", "line 2: a list item where a key was expected (is it indented wrong?)"},
		{"a: - b\n", "line 1: block sequence entries are not allowed in this context"},
		{"a: @x\n", "line 1: a value cannot start with '@'; quote it"},
		{"a: 'x' y\n", `line 1: unexpected "y" after the value`},
		{"a: \"it\"\"s\"\n", `line 1: unexpected "\"s\"" after the value`}, // '' escapes a quote in '…' only
		{"%YAML 1.2\na: 1\n", "line 2: a %directive must be followed by ---"},
		{"a: 1\n---\nb: [\n", "line 3: this [ is not closed"},
		{"a: 1\n...\n.b\nc: d\n", "line 4: mapping values are not allowed in this context (quote a value that holds \": \")"},
		{"a: {b\n : c}\n", "line 2: a key and its ':' must be on one line, at most 1024 characters apart"},
		{"%TAG ! x\n---\na: 1\n", `line 1: unsupported directive "%TAG ! x"; accepted: %YAML 1.1 or %YAML 1.2`},
		{"--- a: 1\n", "line 1: mapping values are not allowed in this context (quote a value that holds \": \")"},
		{"a: \xff\n", "line 1: not valid UTF-8"},
		{"1: x\n", "the top level: key 1 is not a string"},
		{"a: {true: x}\n", "a: key true is not a string"},
		{"<<: [1]\n", "line 1: <<: merges a mapping or a list of mappings"},
		{strings.Repeat("[", maxYAMLDepth+1), fmt.Sprintf("line 1: nested deeper than %d levels", maxYAMLDepth)},
		{billionLaughs, fmt.Sprintf("aliases expand to more than %d values", maxAliasValues)},
		{mergeBomb, fmt.Sprintf("aliases expand to more than %d values", maxAliasValues)},
	} {
		_, err := parseYAML(tc.src)
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("parseYAML(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
}

// mergeBomb: merge keys of empty mappings, each level 9 times the last.
var mergeBomb = func() string {
	var b strings.Builder
	b.WriteString("a0: &a0 {}\n")
	for i := 1; i < 13; i++ {
		fmt.Fprintf(&b, "a%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), 9), ","))
	}
	return b.String()
}()

// TestYAMLCostIsLinear: a file of long keys nested deep costs what its
// size does (a path spelled out for every value cost its square).
func TestYAMLCostIsLinear(t *testing.T) {
	key := strings.Repeat("k", 1000)
	src := strings.Repeat("{"+key+": ", 500) + "[" + strings.Repeat("a,", 200_000) + "a]" + strings.Repeat("}", 500)
	allocs := testing.AllocsPerRun(1, func() {
		if _, err := parseYAML(src); err != nil {
			t.Fatal(err)
		}
	})
	// About 4 allocations per value; a path string per value would add
	// 200,000 strings of 500 kB.
	if allocs > 2_000_000 {
		t.Fatalf("%.0f allocations for %d bytes", allocs, len(src))
	}
}

// billionLaughs: each alias level multiplies by 9.
var billionLaughs = func() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := 0; j < 9; j++ {
			fmt.Fprintf(&b, "*a%d, ", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}()

// FuzzYAMLMatchesLibrary: whatever parseYAML accepts, go.yaml.in/yaml/v3
// (the library gm2-init used before, linked into this test only) reads as
// the same tree; parseYAML never panics and its errors are one line.
func FuzzYAMLMatchesLibrary(f *testing.F) {
	for _, tc := range yamlForms {
		f.Add(tc.src)
	}
	for _, s := range []string{ecosystemYAML, "a: |2\n   x\n  y\n", "- >\n a\n  b\n\n c\n", "a: \"\\x41\\u00e9\\U0001F600\\N\"",
		"{a: 1, b}", "[a, {b: c}, [d]]", "a: 'x\n\n  y'", "k: v\n# c\n  # d\nk2: v2", "a:\n  - b\n  -\n    c: d", "---\n--- a\n",
		"a: 0b101\nb: -0o17\nc: 08\nd: 1e400\ne: 18446744073709551615\nf: ._1\ng: +.5", "a: &x 1\nb: *x\nc: &x 2\nd: *x",
		"apps:\n\t- x", "a: &a [*a]", "? [a]\n: b", "1: x", "- !!binary aGk=", "t: 2001-12-14t21:59:43.10-05:00", "x: .inf",
		"---\na: 1\n---\nb: 2", "a: *missing", "<<: {a: 1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		got, err := parseYAML(src)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		checkTree(t, got)
		lib, ok := libraryYAML(t, src)
		if !ok {
			return
		}
		if !reflect.DeepEqual(got, lib) {
			t.Fatalf("%q:\nparseYAML %#v\nlibrary   %#v", src, got, lib)
		}
	})
}

// libraryYAML reads src with the library into the tree's types. ok is
// false where the comparison does not apply: a timestamp, which the
// library makes a time.Time where parseYAML keeps the text.
func libraryYAML(t *testing.T, src string) (any, bool) {
	t.Helper()
	var raw any
	if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
		// The library refuses %YAML 1.2, which PM2's js-yaml reads.
		if strings.Contains(err.Error(), "excessive aliasing") || strings.Contains(err.Error(), "incompatible YAML document") {
			return nil, false
		}
		t.Fatalf("%q: parseYAML accepts what the library refuses: %v", src, err)
	}
	if hasTime(raw) {
		return nil, false
	}
	v, err := libraryTree(raw)
	if err != nil {
		t.Fatalf("%q: parseYAML accepts what the library reads with %v", src, err)
	}
	return v, true
}

func hasTime(v any) bool {
	switch x := v.(type) {
	case time.Time:
		return true
	case []any:
		for _, e := range x {
			if hasTime(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasTime(e) {
				return true
			}
		}
	case map[any]any:
		for k, e := range x {
			if hasTime(k) || hasTime(e) {
				return true
			}
		}
	}
	return false
}

// libraryTree converts the library's values as decodeYAML did when it
// used the library.
func libraryTree(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool:
		return x, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		if math.IsNaN(x) {
			return json.Number("NaN"), nil
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := libraryTree(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := libraryTree(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		return nil, fmt.Errorf("a key that is not a string")
	}
	return nil, fmt.Errorf("a value of type %T", v)
}
