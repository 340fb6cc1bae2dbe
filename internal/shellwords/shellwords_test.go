package shellwords

import (
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		``:                       nil,
		`  a  b `:                {"a", "b"},
		`--name "my api"`:        {"--name", "my api"},
		`--name="my api"`:        {"--name=my api"},
		`'it''s'`:                {"its"},
		`"a \"q\" \\ \n"`:        {`a "q" \ \n`},
		`"\$HOME \x" '\$'`:       {`$HOME \x`, `\$`},
		`a\ b c`:                 {"a b", "c"},
		`""`:                     {""},
		`x=""`:                   {"x="},
		`''`:                     {""},
		`a '' b`:                 {"a", "", "b"},
		"\"a \\` b\"":            {"a ` b"},
		"crlf\r\nline\r\n":       {"crlf", "line"},
		"tab\tsep\nline":         {"tab", "sep", "line"},
		`--max-old-space-size=1`: {"--max-old-space-size=1"},
		`a 'b c' "d \" e" f\ g`:  {"a", "b c", `d " e`, "f g"},
		`CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /gm2-init .`: {
			"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/gm2-init", "."},
	} {
		got, err := Split(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		`'open`:   "unterminated '",
		`"open`:   `unterminated "`,
		`"a\"`:    `unterminated "`,
		`end\`:    "backslash at the end",
		"nul\x00": "NUL",
	} {
		if _, err := Split(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Split(%q): error %v, want one about %s", in, err, msg)
		}
	}
}

// TestSplitLineContinuation: a backslash before a newline continues the
// line, in a word, between words and inside double quotes (POSIX 2.2.1 and
// 2.2.3), as in a YAML "args: |" block written over several lines; inside
// single quotes both stay.
func TestSplitLineContinuation(t *testing.T) {
	for in, want := range map[string][]string{
		"--workers 4 \\\n--bind :80\n": {"--workers", "4", "--bind", ":80"},
		"ab\\\ncd":                     {"abcd"},
		"\"ab\\\ncd\"":                 {"abcd"},
		"'ab\\\ncd'":                   {"ab\\\ncd"},
		"a \\\n":                       {"a"},
	} {
		got, err := Split(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzSplit: whatever the input, Split does not panic, and the words it
// returns, quoted back, split to themselves.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{`a "b c" 'd'`, `\`, `"\"`, "x\ty", `"\$" '\'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := Split(s)
		if err != nil {
			return
		}
		quoted := make([]string, len(w))
		for i, x := range w {
			if strings.IndexByte(x, 0) >= 0 {
				t.Fatalf("NUL in %q", w)
			}
			quoted[i] = "'" + strings.ReplaceAll(x, "'", `'\''`) + "'"
		}
		again, err := Split(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, w) {
			t.Fatalf("%q split to %q; quoted back, to %q, %v", s, w, again, err)
		}
	})
}
