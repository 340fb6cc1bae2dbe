package logline

import "testing"

func TestParseAndFields(t *testing.T) {
	l, ok := Parse([]byte(`{"level":"info","slot":1,"after_ms":12.5,"pid":"7","message":"worker ready"}`))
	if !ok {
		t.Fatal("a JSON object was not parsed")
	}
	tests := []struct{ got, want any }{
		{l.Msg(), "worker ready"},
		{l.Str("level"), "info"},
		{l.Str("slot"), "1"},
		{l.Str("after_ms"), "12.5"},
		{l.Str("pid"), "7"}, // a string stays a string
		{l.Str("absent"), ""},
		{l.Num("after_ms"), 12.5},
		{l.Num("pid"), 0.0}, // not a number
		{l.Int("slot"), 1},
		{l.Int("after_ms"), 12},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d: got %v, want %v", i, tt.got, tt.want)
		}
	}
	for _, bad := range []string{"", "null", "[1]", "worker output", `{"a":`} {
		if _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) = ok, want not a log line", bad)
		}
	}
}
