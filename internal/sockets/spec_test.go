package sockets

import (
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestParseSpec(t *testing.T) {
	long := "/" + strings.Repeat("a", 106) // 107 bytes: the longest sun_path
	tests := []struct {
		raw     string
		want    Spec // Raw is filled in from raw
		wantErr string
	}{
		// TCP, every spelling.
		{raw: ":8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}},
		{raw: "8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}},
		{raw: " 8080 ", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}},
		{raw: "\n  :8080\n", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}}, // from a multi-line GM2_LISTEN
		{raw: "127.0.0.1:8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: "127.0.0.1:8080"}},
		{raw: "0.0.0.0:80", want: Spec{Name: "tcp-80", Network: TCP, Addr: "0.0.0.0:80"}},
		{raw: "[::1]:8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: "[::1]:8080"}},
		{raw: "[::]:8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: "[::]:8080"}},
		{raw: "localhost:3000", want: Spec{Name: "tcp-3000", Network: TCP, Addr: "localhost:3000"}},
		{raw: "tcp://127.0.0.1:8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: "127.0.0.1:8080"}},
		{raw: "TCP://:8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}},
		{raw: "tcp://8080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}},
		{raw: "tcp4://:8080", want: Spec{Name: "tcp-8080", Network: TCP, Family: "4", Addr: ":8080"}},
		{raw: "tcp4://localhost:8080", want: Spec{Name: "tcp-8080", Network: TCP, Family: "4", Addr: "localhost:8080"}},
		{raw: "tcp6://[::1]:8080", want: Spec{Name: "tcp-8080", Network: TCP, Family: "6", Addr: "[::1]:8080"}},
		{raw: "tcp6://:8080", want: Spec{Name: "tcp-8080", Network: TCP, Family: "6", Addr: ":8080"}},
		{raw: "tcp://:0", want: Spec{Name: "tcp-0", Network: TCP, Addr: ":0"}},
		{raw: "0", want: Spec{Name: "tcp-0", Network: TCP, Addr: ":0"}},
		{raw: ":65535", want: Spec{Name: "tcp-65535", Network: TCP, Addr: ":65535"}},
		{raw: ":08080", want: Spec{Name: "tcp-8080", Network: TCP, Addr: ":8080"}},

		// UDP.
		{raw: "udp://:5353", want: Spec{Name: "udp-5353", Network: UDP, Addr: ":5353"}},
		{raw: "udp4://127.0.0.1:5353", want: Spec{Name: "udp-5353", Network: UDP, Family: "4", Addr: "127.0.0.1:5353"}},
		{raw: "udp6://[::1]:5353", want: Spec{Name: "udp-5353", Network: UDP, Family: "6", Addr: "[::1]:5353"}},

		// Unix domain.
		{raw: "unix:///run/app.sock", want: Spec{Name: "unix-app.sock", Network: Unix, Addr: "/run/app.sock"}},
		{raw: "unix:///run//x/../app.sock/", want: Spec{Name: "unix-app.sock", Network: Unix, Addr: "/run/app.sock"}},
		{raw: "unixgram:///run/log.sock", want: Spec{Name: "unixgram-log.sock", Network: Unixgram, Addr: "/run/log.sock"}},
		{raw: "unix://" + long, want: Spec{Name: "unix-" + long[1:], Network: Unix, Addr: long}},
		// A default name is derived from the path, and must still be a
		// valid LISTEN_FDNAMES entry (no ':', the separator).
		{raw: "unix:///run/a:b c.sock", want: Spec{Name: "unix-a_b_c.sock", Network: Unix, Addr: "/run/a:b c.sock"}},

		// NAME=ADDR.
		{raw: "http=:8080", want: Spec{Name: "http", Network: TCP, Addr: ":8080"}},
		{raw: "web.v2_x-1=tcp://127.0.0.1:80", want: Spec{Name: "web.v2_x-1", Network: TCP, Addr: "127.0.0.1:80"}},
		{raw: "metrics=udp://:9125", want: Spec{Name: "metrics", Network: UDP, Addr: ":9125"}},
		{raw: "admin=unix:///run/admin.sock", want: Spec{Name: "admin", Network: Unix, Addr: "/run/admin.sock"}},
		{raw: "unix:///run/a=b.sock", want: Spec{Name: "unix-a_b.sock", Network: Unix, Addr: "/run/a=b.sock"}},
		{raw: "http=8080", want: Spec{Name: "http", Network: TCP, Addr: ":8080"}},

		// Refused.
		{raw: "", wantErr: "empty address"},
		{raw: "   ", wantErr: "empty address"},
		{raw: ":65536", wantErr: "not a number from 0 to 65535"},
		{raw: "65536", wantErr: "not a number from 0 to 65535"},
		{raw: ":-1", wantErr: "not a number from 0 to 65535"},
		{raw: "-1", wantErr: "not a number from 0 to 65535"},
		{raw: ":+80", wantErr: "not a number from 0 to 65535"},
		{raw: "+80", wantErr: "not a number from 0 to 65535"},
		{raw: ":99999999999999999999", wantErr: "not a number from 0 to 65535"},
		{raw: ":000080", wantErr: "not a number from 0 to 65535"}, // at most 5 digits, zeros too
		{raw: ":http", wantErr: "not a number from 0 to 65535"},
		{raw: "tcp://", wantErr: "missing port"},
		{raw: "tcp://:", wantErr: "not a number from 0 to 65535"},
		{raw: "127.0.0.1", wantErr: "missing port; accepted:"},
		{raw: "localhost", wantErr: "missing port; accepted:"},
		{raw: "tcp://[::1]", wantErr: "missing port"},
		{raw: "::1", wantErr: "accepted:"},
		{raw: "[::1", wantErr: "accepted:"},
		{raw: "example.com:80", wantErr: "is not an IP address"},
		{raw: "tcp4://[::1]:80", wantErr: "does not match the tcp4 scheme"},
		{raw: "tcp6://127.0.0.1:80", wantErr: "does not match the tcp6 scheme"},
		{raw: "udp4://[::]:80", wantErr: "does not match the udp4 scheme"},
		{raw: "http://:80", wantErr: `unknown scheme "http"`},
		{raw: "sctp://:80", wantErr: `unknown scheme "sctp"`},
		{raw: "unix://run/app.sock", wantErr: "absolute path"},
		{raw: "unix://./app.sock", wantErr: "absolute path"},
		{raw: "unixgram://app.sock", wantErr: "absolute path"},
		{raw: "unix://", wantErr: "absolute path"},
		{raw: "unix:///", wantErr: "is not a socket path"},
		{raw: "unix:///..", wantErr: "is not a socket path"},
		{raw: "unix://" + long + "b", wantErr: "longer than 107 bytes"},
		{raw: "unix:///run/a\x00b.sock", wantErr: "control characters"},
		{raw: "unix:///run/a\nb.sock", wantErr: "control characters"},
		{raw: "unix:///run/a\tb.sock", wantErr: "control characters"},
		{raw: "unix:///run/a /", wantErr: "white space"},
		{raw: "unix:///run/a\u00a0/", wantErr: "white space"},
		{raw: "=:8080", wantErr: "must be 1 to 255 characters"},
		{raw: strings.Repeat("n", 256) + "=:8080", wantErr: "must be 1 to 255 characters"},
		{raw: "my name=:8080", wantErr: "may only hold"},
		{raw: "a;b=:8080", wantErr: "may only hold"},
		{raw: "é=:8080", wantErr: "may only hold"},
		{raw: "a\nb=:8080", wantErr: "may only hold"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := ParseSpec(tt.raw)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseSpec(%q) = %#v, want an error containing %q", tt.raw, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseSpec(%q) error %q, want it to contain %q", tt.raw, err, tt.wantErr)
				}
				checkOneLine(t, err)
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.raw, err)
			}
			want := tt.want
			want.Raw = strings.TrimSpace(tt.raw)
			// A name before '=' is a given one.
			want.Named = strings.HasPrefix(want.Raw, want.Name+"=")
			if got != want {
				t.Errorf("ParseSpec(%q)\n got %#v\nwant %#v", tt.raw, got, want)
			}
			checkInvariants(t, got)
		})
	}
}

// A name may hold up to 255 characters.
func TestParseSpecLongName(t *testing.T) {
	name := strings.Repeat("n", 255)
	s, err := ParseSpec(name + "=:1")
	if err != nil || s.Name != name {
		t.Fatalf("ParseSpec(255-character name) = %+v, %v", s, err)
	}
}

func TestSpecStringAndPort(t *testing.T) {
	tests := []struct {
		raw    string
		str    string
		port   int
		family string
	}{
		{":8080", "tcp://:8080", 8080, ""},
		{"tcp6://[::1]:443", "tcp6://[::1]:443", 443, "6"},
		{"udp4://127.0.0.1:53", "udp4://127.0.0.1:53", 53, "4"},
		{"unix:///run/a.sock", "unix:///run/a.sock", 0, ""},
		{"unixgram:///run/a.sock", "unixgram:///run/a.sock", 0, ""},
		{"x=0", "tcp://:0", 0, ""},
	}
	for _, tt := range tests {
		s, err := ParseSpec(tt.raw)
		if err != nil {
			t.Fatalf("ParseSpec(%q): %v", tt.raw, err)
		}
		if s.String() != tt.str || s.Port() != tt.port || s.Family != tt.family {
			t.Errorf("ParseSpec(%q): String %q Port %d Family %q, want %q %d %q", tt.raw, s.String(), s.Port(), s.Family, tt.str, tt.port, tt.family)
		}
	}
	if p := (Spec{Network: TCP, Addr: "garbage"}).Port(); p != 0 {
		t.Errorf("Port of an unparsable address = %d, want 0", p)
	}
}

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
}

// checkInvariants is what every accepted spec must satisfy, whatever the
// input: a known network, an address Bind can use, a name LISTEN_FDNAMES can
// carry, and a canonical form that parses back to the same spec.
func checkInvariants(t *testing.T, s Spec) {
	t.Helper()
	if err := checkName(s.Name); err != nil {
		t.Errorf("ParseSpec(%q): name: %v", s.Raw, err)
	}
	switch s.Network {
	case TCP, UDP:
		if s.Family != "" && s.Family != "4" && s.Family != "6" {
			t.Errorf("ParseSpec(%q): family %q", s.Raw, s.Family)
		}
		if p := s.Port(); p < 0 || p > 65535 {
			t.Errorf("ParseSpec(%q): port %d", s.Raw, p)
		}
		if !strings.Contains(s.Addr, ":") {
			t.Errorf("ParseSpec(%q): address %q has no port", s.Raw, s.Addr)
		}
	case Unix, Unixgram:
		if s.Family != "" {
			t.Errorf("ParseSpec(%q): family %q on a unix socket", s.Raw, s.Family)
		}
		if !strings.HasPrefix(s.Addr, "/") || s.Addr == "/" || len(s.Addr) > 107 || strings.ContainsRune(s.Addr, 0) {
			t.Errorf("ParseSpec(%q): bad socket path %q", s.Raw, s.Addr)
		}
	default:
		t.Errorf("ParseSpec(%q): network %q", s.Raw, s.Network)
	}
	// Messages print Raw and the address as they are: no control
	// character may make them span lines.
	for _, v := range []string{s.Raw, s.Name, s.Addr, s.String()} {
		if strings.ContainsFunc(v, unicode.IsControl) {
			t.Errorf("ParseSpec(%q): control character in %q", s.Raw, v)
		}
	}
	back, err := ParseSpec(s.String())
	if err != nil {
		t.Errorf("ParseSpec(%q).String() = %q does not parse back: %v", s.Raw, s.String(), err)
		return
	}
	if back.Network != s.Network || back.Family != s.Family || back.Addr != s.Addr {
		t.Errorf("ParseSpec(%q) = %#v, but its String %q parses to %#v", s.Raw, s, s.String(), back)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		":8080", "8080", "0", "127.0.0.1:8080", "[::1]:8080", "[::]:0", "localhost:1",
		"tcp://:80", "tcp4://0.0.0.0:1", "tcp6://[::1]:2", "udp://:53", "udp6://[fe80::1]:5",
		"unix:///run/app.sock", "unixgram:///tmp/x", "unix://rel", "unix:///a:b",
		"http=:8080", "a=b=:1", "=:1", ":65536", ":-1", "", "tcp6://[::ffff:127.0.0.1]:80",
		"x=unix:///a=b/c", "tcp://[::1]:+80", "unix:///a\x00", "\n:80\n", "unix:///a\nb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseSpec(raw)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		if s.Raw != strings.TrimSpace(raw) {
			t.Errorf("Raw %q, want %q", s.Raw, raw)
		}
		checkInvariants(t, s)
	})
}

func TestUniqueNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		specs []string
		want  []string // the names after; nil when err is wanted
		err   string
	}{
		{"one listener keeps its short name", []string{"tcp4://:13000"}, []string{"tcp-13000"}, ""},
		{"distinct names stay", []string{":8080", "udp://:8080", "unix:///run/app.sock"}, []string{"tcp-8080", "udp-8080", "unix-app.sock"}, ""},
		{"v4 and v6 of one port (were both tcp-13000)", []string{"tcp4://:13000", "tcp6://:13000"}, []string{"tcp4-13000", "tcp6-13000"}, ""},
		{"udp v4 and v6", []string{"udp4://:53", "udp6://:53"}, []string{"udp4-53", "udp6-53"}, ""},
		{"one port on two hosts", []string{"127.0.0.1:3000", "127.0.0.2:3000"}, []string{"tcp-127.0.0.1-3000", "tcp-127.0.0.2-3000"}, ""},
		{"a third listener keeps its name", []string{"tcp4://:13000", "tcp6://:13000", ":14000"}, []string{"tcp4-13000", "tcp6-13000", "tcp-14000"}, ""},
		{"two sockets of one base name", []string{"unix:///run/a/app.sock", "unix:///run/b/app.sock"}, []string{"unix-_run_a_app.sock", "unix-_run_b_app.sock"}, ""},
		{"a given name is kept, the derived one renamed", []string{"tcp-8080=:9000", ":8080"}, []string{"tcp-8080", "tcp-8080-2"}, ""},
		{"IPv6 and IPv4 loopback", []string{"127.0.0.1:80", "[::1]:80"}, []string{"tcp-127.0.0.1-80", "tcp-__1-80"}, ""},
		{"port 0 twice", []string{":0", ":0"}, []string{"tcp-0-1", "tcp-0-2"}, ""},
		{"a given name twice", []string{"a=:1", "a=:2"}, nil, `name "a" is given to both "a=:1" and "a=:2"; give each listener its own name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var specs []Spec
			for _, raw := range tc.specs {
				specs = append(specs, mustSpec(t, raw))
			}
			err := UniqueNames(specs)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("UniqueNames(%q) = %v, want %q", tc.specs, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("UniqueNames(%q): %v", tc.specs, err)
			}
			var got []string
			for _, s := range specs {
				got = append(got, s.Name)
				if checkName(s.Name) != nil {
					t.Errorf("name %q is not a valid LISTEN_FDNAMES entry", s.Name)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("names %q, want %q", got, tc.want)
			}
		})
	}
}
