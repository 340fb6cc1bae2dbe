// Package shellwords splits a command line into words the way a POSIX
// shell does before it expands anything: blanks separate words, '…' is
// literal, "…" groups and lets a backslash escape $ ` " \ and nothing else,
// and a backslash outside quotes escapes the next character. A backslash
// before a newline, outside single quotes, continues the line: both go.
// Nothing is expanded: "$HOME" stays "$HOME".
//
// A PM2 process file may give args as one string, which PM2 users write as
// they would on a command line; and tests read Dockerfile lines the same
// way. Both use this one splitter.
package shellwords

import (
	"errors"
	"strings"
)

// Split returns the words of s. It fails on an unterminated quote, a
// backslash at the end, and a NUL byte (no argument can carry one).
func Split(s string) ([]string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errors.New("a NUL byte")
	}
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("an unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == '\n' {
					i++ // a line continuation: both go
					continue
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New(`an unterminated " quote`)
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("a backslash at the end")
			}
			i++
			if s[i] == '\n' {
				continue // a line continuation: both go, and no word starts
			}
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}
