// Package echo decides how a value the user typed is shown back in an error
// message or a warning: quoted, on one line, and short.
//
// Bad input is reported in one line on stderr (the README's promise), and
// the value is part of that line. A value can hold anything a shell or an
// orchestrator passes: newlines, terminal escapes, invalid UTF-8, or 100 KB
// of text. Every package that quotes a user's value goes through Quote, so
// that these rules live in one place.
package echo

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBytes is how much of a value a message shows. Enough to recognise any
// real flag value; a longer one is cut, with "…" saying so.
const MaxBytes = 64

// Quote returns v double-quoted, escaped like a Go string (so it stays on
// one line and cannot drive a terminal), and cut to MaxBytes of the
// original, at a character boundary, with "…" inside the quotes.
func Quote(v string) string {
	c, cut := Clip(v, MaxBytes)
	q := strconv.Quote(c)
	if cut {
		q = q[:len(q)-1] + "…\""
	}
	return q
}

// Clip returns at most n bytes of v, cut at a UTF-8 character boundary
// (an invalid byte counts as one character), and whether anything was cut.
func Clip(v string, n int) (string, bool) {
	if len(v) <= n {
		return v, false
	}
	end := 0
	for end < len(v) {
		_, size := utf8.DecodeRuneInString(v[end:])
		if end+size > n {
			break
		}
		end += size
	}
	return v[:end], true
}

// Line escapes whatever would break s over lines or garble a terminal:
// control characters, line and paragraph separators, invalid UTF-8. Text
// that is already clean is returned as is. It is the last guard on a whole
// message that may embed text from other packages.
func Line(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}
