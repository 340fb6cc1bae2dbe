package config

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in      string
		want    syscall.Signal
		wantErr string // "" = accepted
	}{
		{"TERM", syscall.SIGTERM, ""},
		{"SIGTERM", syscall.SIGTERM, ""},
		{"sigterm", syscall.SIGTERM, ""},
		{" term ", syscall.SIGTERM, ""},
		{"15", syscall.SIGTERM, ""},
		{"INT", syscall.SIGINT, ""},
		{"SIGINT", syscall.SIGINT, ""},
		{"sigint", syscall.SIGINT, ""},
		{"SigInt", syscall.SIGINT, ""},
		{"2", syscall.SIGINT, ""},
		{"+2", syscall.SIGINT, ""},
		{"QUIT", syscall.SIGQUIT, ""},
		{"HUP", syscall.SIGHUP, ""},
		{"USR1", syscall.SIGUSR1, ""},
		{"usr2", syscall.SIGUSR2, ""},
		{"WINCH", syscall.SIGWINCH, ""},
		{"1", syscall.SIGHUP, ""},
		{"31", syscall.Signal(31), ""},
		{"34", syscall.Signal(34), ""}, // SIGRTMIN
		{"64", syscall.Signal(64), ""}, // SIGRTMAX

		// Cannot be caught, so never a graceful stop.
		{"KILL", 0, "cannot be caught"},
		{"SIGKILL", 0, "cannot be caught"},
		{"kill", 0, "cannot be caught"},
		{"9", 0, "cannot be caught"},
		{"STOP", 0, "cannot be caught"},
		{"SIGSTOP", 0, "cannot be caught"},
		{"19", 0, "cannot be caught"},

		// Not signals.
		{"0", 0, "accepted: "},
		{"-1", 0, "accepted: "},
		{"-15", 0, "accepted: "},
		{"65", 0, "accepted: "},
		{"1000", 0, "accepted: "},
		{"99999999999999999999", 0, "accepted: "},
		{"", 0, "accepted: "},
		{"SIG", 0, "accepted: "},
		{"SIGSIGTERM", 0, "accepted: "},
		{"TERMINATE", 0, "accepted: "},
		{"nonsense", 0, "accepted: "},
		{"SIG TERM", 0, "accepted: "},
		{"15s", 0, "accepted: "},
		{"1.5", 0, "accepted: "},
		{"TERM\nINT", 0, "accepted: "},
	}
	for _, tt := range tests {
		got, err := ParseSignal(tt.in)
		if tt.wantErr != "" {
			if err == nil {
				t.Errorf("ParseSignal(%q) = %v, want an error", tt.in, got)
				continue
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSignal(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			checkOneLine(t, err)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"TERM", "SIGINT", "sigint", "2", "15", "9", "19", "KILL", "STOP",
		"0", "64", "65", "-1", "", "SIG", "nonsense", "+15", " usr1 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		if sig < 1 || sig > 64 || sig == syscall.SIGKILL || sig == syscall.SIGSTOP {
			t.Fatalf("ParseSignal(%q) = %d", s, sig)
		}
		if back, err := ParseSignal(strconv.Itoa(int(sig))); err != nil || back != sig {
			t.Fatalf("ParseSignal(%q) = %d, but the number parses to %v, %v", s, sig, back, err)
		}
		if name := unix.SignalName(sig); name != "" {
			if back, err := ParseSignal(name); err != nil || back != sig {
				t.Fatalf("ParseSignal(%q) = %d, but its name %s parses to %v, %v", s, sig, name, back, err)
			}
		}
	})
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string // "" = accepted
	}{
		{"8s", 8 * time.Second, ""},
		{" 8s ", 8 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1.5s", 1500 * time.Millisecond, ""},
		{"2h", 2 * time.Hour, ""},
		{"10us", 10 * time.Microsecond, ""},
		{"0", 0, ""},
		{"0s", 0, ""},
		{"-0s", 0, ""},
		{"00", 0, ""},
		{"0.0", 0, ""},

		// A bare number is ambiguous (PM2 uses milliseconds): refused, with
		// the two spellings the user may have meant.
		{"8", 0, "such as 8s or 8ms"},
		{"8000", 0, "such as 8000s or 8000ms"},
		{" 1.5 ", 0, "such as 1.5s or 1.5ms"},
		{"-1s", 0, "accepted: a duration such as"},
		{"-1", 0, "accepted: a duration such as"},
		{"-8", 0, "accepted: a duration such as"},
		{"+5", 0, "accepted: a duration such as"},
		{"", 0, "accepted: a duration such as"},
		{"s", 0, "accepted: a duration such as"},
		{"8 s", 0, "accepted: a duration such as"},
		{"8sec", 0, "accepted: a duration such as"},
		{"eight seconds", 0, "accepted: a duration such as"},
		{"1d", 0, "accepted: a duration such as"},
		{"NaN", 0, "accepted: a duration such as"},
		{"Inf", 0, "accepted: a duration such as"},
		{"1e3", 0, "accepted: a duration such as"},
		{"0x10", 0, "accepted: a duration such as"},
		{"9999999999h", 0, "accepted: a duration such as"},
		{"1..5", 0, "accepted: a duration such as"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want an error", tt.in, got)
				continue
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			checkOneLine(t, err)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	// A number too large in seconds gets only the spelling that fits.
	_, err := ParseDuration("10000000000")
	if err == nil || !strings.Contains(err.Error(), "such as 10000000000ms") || strings.Contains(err.Error(), "10000000000s ") {
		t.Errorf("ParseDuration(10000000000) error %v", err)
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"8s", "500ms", "1m30s", "0", "8", "-1s", "-1", "garbage", "", "1.5",
		"NaN", "inf", "0x1p4", "00", "-0", "9223372036854775807ns", "99999999999", "1.", ".5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			checkOneLine(t, err)
			// Every spelling the hint suggests is accepted.
			if _, hint, ok := strings.Cut(err.Error(), "such as "); ok && strings.HasPrefix(err.Error(), "accepted: a duration with a unit") {
				for _, form := range strings.Split(hint, " or ") {
					if _, err := ParseDuration(form); err != nil {
						t.Fatalf("ParseDuration(%q) suggests %q, which is refused: %v", s, form, err)
					}
				}
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative", s, d)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, but %q parses to %v, %v", s, d, d.String(), back, err)
		}
	})
}

func TestParseBool(t *testing.T) {
	for _, in := range []string{"1", "t", "T", "true", "TRUE", "True", "yes", "Yes", "on", "ON", " true "} {
		if v, err := ParseBool(in); err != nil || !v {
			t.Errorf("ParseBool(%q) = %v, %v; want true", in, v, err)
		}
	}
	for _, in := range []string{"0", "f", "F", "false", "FALSE", "no", "off", "Off", "", "  "} {
		if v, err := ParseBool(in); err != nil || v {
			t.Errorf("ParseBool(%q) = %v, %v; want false", in, v, err)
		}
	}
	for _, in := range []string{"2", "y", "n", "maybe", "truee", "enabled", "-1", "tru e"} {
		v, err := ParseBool(in)
		if err == nil {
			t.Errorf("ParseBool(%q) = %v, want an error", in, v)
			continue
		}
		checkOneLine(t, err)
	}
}
