package sockets

import "testing"

func TestParseHealthAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{":9000", ":9000", true},
		{" :19777", ":19777", true},
		{"127.0.0.1:9100 \n", "127.0.0.1:9100", true},
		{"[::]:9000", "[::]:9000", true},
		{"localhost:9000", "localhost:9000", true},
		{"off", "", true},
		{"OFF", "", true},
		{" off ", "", true},
		// A bare port, as --listen takes it.
		{"9000", ":9000", true},
		{" 9100 ", ":9100", true},
		{"0", ":0", true},
		// Empty is refused (it was off, silently).
		{"", "", false},
		{"  ", "", false},
		{"example.com:80", "", false},
		{"70000", "", false},
		{"-1", "", false},
		{":70000", "", false},
		{"+5", "", false},
		{"+9000", "", false},
	} {
		got, err := ParseHealthAddr(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseHealthAddr(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && err.Error() != HealthAddrAccepted {
			t.Errorf("ParseHealthAddr(%q): %v", tc.in, err)
		}
	}
}
