// Package logline reads one line of gm2-init's JSON log (zerolog: one
// object per line, the text under "message") the way the end-to-end and
// container tests look at it: a field as a string or a number, whatever
// JSON type it was written with, and the zero value when it is absent.
//
// Only tests import this package; it is compiled into no binary.
package logline

import (
	"encoding/json"
	"strconv"
)

// Line is one decoded log line.
type Line map[string]any

// Parse decodes one line; ok is false for a line that is not a JSON object
// (a worker's own output on the same stream).
func Parse(b []byte) (l Line, ok bool) {
	if err := json.Unmarshal(b, &l); err != nil || l == nil {
		return nil, false
	}
	return l, true
}

// Msg is the line's message.
func (l Line) Msg() string { return l.Str("message") }

// Str is field k as text: a string as it is, a number in its shortest form.
func (l Line) Str(k string) string {
	switch v := l[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// Num is numeric field k, 0 when absent or not a number.
func (l Line) Num(k string) float64 { f, _ := l[k].(float64); return f }

// Int is numeric field k truncated to an int.
func (l Line) Int(k string) int { return int(l.Num(k)) }
