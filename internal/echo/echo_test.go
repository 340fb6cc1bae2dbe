package echo

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	long := strings.Repeat("a", 100*1024)
	for in, want := range map[string]string{
		"abc":                         `"abc"`,
		"":                            `""`,
		"a\nb":                        `"a\nb"`,
		"\x1b[2J":                     `"\x1b[2J"`,
		strings.Repeat("x", 64):       `"` + strings.Repeat("x", 64) + `"`,
		strings.Repeat("x", 65):       `"` + strings.Repeat("x", 64) + `…"`,
		long:                          `"` + strings.Repeat("a", 64) + `…"`,
		strings.Repeat("é", 40):       `"` + strings.Repeat("é", 32) + `…"`,  // 2 bytes each: cut at 64
		"x" + strings.Repeat("é", 40): `"x` + strings.Repeat("é", 31) + `…"`, // never half a character
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%.20q…) = %.80s, want %.80s", in, got, want)
		}
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
		cut  bool
	}{
		{"hello", 10, "hello", false},
		{"hello", 5, "hello", false},
		{"hello", 4, "hell", true},
		{"héllo", 2, "h", true},
		{"\xff\xfe", 1, "\xff", true}, // invalid bytes count as one each
		{"日本", 4, "日", true},
		{"", 0, "", false},
	} {
		got, cut := Clip(tc.in, tc.n)
		if got != tc.want || cut != tc.cut {
			t.Errorf("Clip(%q, %d) = %q, %v; want %q, %v", tc.in, tc.n, got, cut, tc.want, tc.cut)
		}
	}
}

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain — unicode ≥ 1":   "plain — unicode ≥ 1",
		"a\nb\r\tc":             `a\nb\r\tc`,
		"nul\x00":               `nul\x00`,
		"bad \xff utf8":         `bad \xff utf8`,
		"line\u2028separator":   `line\u2028separator`,
		`already "quoted\n"`:    `already "quoted\n"`,
		"del\x7f and c1 \u0085": `del\x7f and c1 \u0085`,
		"nbsp\u00a0space":       `nbsp\u00a0space`,    // invisible in a log: escaped
		"kept \ufffd\n":         "kept \ufffd" + `\n`, // a real U+FFFD is no invalid byte
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "abc", "a\nb", strings.Repeat("é", 40), "\xff\xfe\xfd", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		if strings.ContainsAny(q, "\n\r") || !utf8.ValidString(q) {
			t.Fatalf("Quote(%q) = %q: not one valid line", s, q)
		}
		if len(q) > 4*MaxBytes+2+len("…") {
			t.Fatalf("Quote(%q) is %d bytes", s, len(q))
		}
		l := Line(s)
		if strings.ContainsAny(l, "\n\r") || !utf8.ValidString(l) {
			t.Fatalf("Line(%q) = %q: not one valid line", s, l)
		}
	})
}
