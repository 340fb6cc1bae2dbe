package appspec

import (
	"strconv"

	"errors"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStopSignal(t *testing.T) {
	tests := []struct {
		in      string
		want    syscall.Signal
		wantErr string // "" = accepted
	}{
		{"TERM", syscall.SIGTERM, ""},
		{"SIGTERM", syscall.SIGTERM, ""},
		{"sigterm", syscall.SIGTERM, ""},
		{"term", syscall.SIGTERM, ""},
		{" term ", syscall.SIGTERM, ""},
		{"15", syscall.SIGTERM, ""},
		{"+15", syscall.SIGTERM, ""},
		{"INT", syscall.SIGINT, ""},
		{"SigInt", syscall.SIGINT, ""},
		{"2", syscall.SIGINT, ""},
		{"QUIT", syscall.SIGQUIT, ""},
		{"3", syscall.SIGQUIT, ""},
		{"HUP", syscall.SIGHUP, ""},
		{"1", syscall.SIGHUP, ""},
		{"USR1", syscall.SIGUSR1, ""},
		{"10", syscall.SIGUSR1, ""},
		{"usr2", syscall.SIGUSR2, ""},
		{"12", syscall.SIGUSR2, ""},
		{"WINCH", syscall.SIGWINCH, ""},
		{"28", syscall.SIGWINCH, ""},

		// Cannot be caught.
		{"KILL", 0, "cannot be caught"},
		{"9", 0, "cannot be caught"},
		{"STOP", 0, "cannot be caught"},
		{"SIGSTOP", 0, "cannot be caught"},
		{"19", 0, "cannot be caught"},
		// Suspend instead of stopping.
		{"TSTP", 0, "suspends"},
		{"SIGTSTP", 0, "suspends"},
		{"20", 0, "suspends"},
		{"TTIN", 0, "suspends"},
		{"TTOU", 0, "suspends"},
		// Signals that do not mean "stop".
		{"CHLD", 0, "SIGCHLD does not ask a server to stop"},
		{"17", 0, "does not ask"},
		{"URG", 0, "does not ask"},
		{"CONT", 0, "does not ask"},
		{"PIPE", 0, "does not ask"},
		{"ALRM", 0, "does not ask"},
		{"SEGV", 0, "does not ask"},
		{"32", 0, "signal 32 does not ask"},
		{"34", 0, "does not ask"}, // SIGRTMIN
		{"64", 0, "does not ask"}, // SIGRTMAX

		// Not signals.
		{"0", 0, "accepted: TERM"},
		{"-1", 0, "accepted: "},
		{"-15", 0, "accepted: "},
		{"65", 0, "accepted: "},
		{"99999999999999999999", 0, "accepted: "},
		{"", 0, "accepted: "},
		{"SIG", 0, "accepted: "},
		{"SIGSIGTERM", 0, "accepted: "},
		{"TERMINATE", 0, "accepted: "},
		{"SIG TERM", 0, "accepted: "},
		{"15s", 0, "accepted: "},
		{"1.5", 0, "accepted: "},
		{"TERM\nINT", 0, "accepted: "},
	}
	for _, tt := range tests {
		got, err := ParseStopSignal(tt.in)
		if tt.wantErr != "" {
			if err == nil {
				t.Errorf("ParseStopSignal(%q) = %v, want an error", tt.in, got)
				continue
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), StopSignalAccepted) {
				t.Errorf("ParseStopSignal(%q) error %q, want %q and the accepted forms", tt.in, err, tt.wantErr)
			}
			checkOneLine(t, err)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseStopSignal(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	// Each stop signal is accepted by its name and its number.
	for _, s := range StopSignals {
		for _, spelling := range []string{unix.SignalName(s), strconv.Itoa(int(s))} {
			if got, err := ParseStopSignal(spelling); err != nil || got != s {
				t.Errorf("ParseStopSignal(%q) = %v, %v", spelling, got, err)
			}
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"8s", 8 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{" 2s ", 2 * time.Second, ""},
		{"0", 0, ""},
		{"0.0", 0, ""},
		{"0s", 0, ""},
		{"24h", 24 * time.Hour, ""},
		{"1439m", 1439 * time.Minute, ""},
		{"8", 0, "such as 8s or 8ms"},
		{"1600", 0, "such as 1600s or 1600ms"},
		{"1.5", 0, "such as 1.5s or 1.5ms"},
		{"86401", 0, "such as 86401ms"}, // seconds would pass the cap
		{"24h1ns", 0, "at most 24h"},
		{"25h", 0, "at most 24h"},
		{"2562047h", 0, "at most 24h"},
		{"9223372036854775807ns", 0, "at most 24h"},
		{"99999999999999999999h", 0, "accepted: a duration such as"}, // overflows ParseDuration
		{"99999999999999999999", 0, "accepted: a duration such as"},
		{"-1s", 0, "accepted: "},
		{"soon", 0, "accepted: "},
		{"", 0, "accepted: "},
		{"1..2", 0, "accepted: "},
		{"s", 0, "accepted: "},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			if err != nil {
				checkOneLine(t, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"8s", "0", "8", "25h", "-1s", "9223372036854775807ns", "1.5", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			checkOneLine(t, err)
			if !strings.HasPrefix(err.Error(), "accepted: ") {
				t.Fatalf("ParseDuration(%q): %v", s, err)
			}
			return
		}
		if d < 0 || d > MaxDuration {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
	})
}

func FuzzParseStopSignal(f *testing.F) {
	for _, s := range []string{"TERM", "15", "KILL", "TSTP", "CHLD", "32", "64", "", "sigint"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseStopSignal(s)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		for _, ok := range StopSignals {
			if sig == ok {
				return
			}
		}
		t.Fatalf("ParseStopSignal(%q) = %v, not a stop signal", s, sig)
	})
}

func TestWorkers(t *testing.T) {
	tests := []struct {
		inst     string
		minReady int
		cpus     int
		want     Count
		err      bool
	}{
		{"2", 1, 8, Count{N: 2}, false},
		{"2", 2, 8, Count{N: 2}, false},
		{"2", 0, 8, Count{N: 2}, false}, // 0 = all
		{"2", 5, 8, Count{N: 2}, true},
		{"max", 5, 2, Count{N: 2}, true}, // known only once the CPUs are
		{"max", 5, 8, Count{N: 8}, false},
		{"-1", 2, 2, Count{N: 1}, true},
		{"4", 1, 2, Count{N: 4, Oversubscribed: true}, false},
		{"max", 1, 100000, Count{N: MaxWorkers, Capped: true}, false},
		{"-10", 1, 1034, Count{N: 1024}, false},
		{"-10", 1, 1035, Count{N: 1024, Capped: true}, false},
		{"max", 1, math.MinInt, Count{N: 1}, false},
		{"-1024", 1, math.MaxInt, Count{N: MaxWorkers, Capped: true}, false},
	}
	for _, tt := range tests {
		inst, err := ParseInstances(tt.inst)
		if err != nil {
			t.Fatal(err)
		}
		a := App{Name: "web", Instances: inst, MinReady: tt.minReady}
		got, err := a.Workers(tt.cpus)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("-i %s --min-ready %d on %d CPUs: %+v, %v; want %+v, error %v", tt.inst, tt.minReady, tt.cpus, got, err, tt.want, tt.err)
		}
		if err != nil {
			var mr *MinReadyError
			if !errors.As(err, &mr) || mr.MinReady != tt.minReady || mr.Workers != got.N || !strings.Contains(err.Error(), `app "web": min ready`) {
				t.Errorf("error %T %v", err, err)
			}
			checkOneLine(t, err)
		}
	}
}

// TestForkMinReady: a fork app's one process is enough, whatever larger
// default the cluster apps get; all (0) stays all, which --dry-run shows.
func TestForkMinReady(t *testing.T) {
	for in, want := range map[int]int{0: 0, 1: 1, 2: 1, MaxWorkers: 1} {
		if got := ForkMinReady(in); got != want {
			t.Errorf("ForkMinReady(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestCheckTotal(t *testing.T) {
	if err := CheckTotal([]int{512, 512}); err != nil {
		t.Errorf("1024 workers in all: %v", err)
	}
	if err := CheckTotal([]int{512, 512, 1}); err == nil || !strings.Contains(err.Error(), "1024") {
		t.Errorf("1025 workers in all: %v", err)
	}
	if err := CheckTotal([]int{math.MaxInt, math.MaxInt}); err == nil {
		t.Error("an overflowing sum was accepted")
	}
	if err := CheckTotal(nil); err != nil {
		t.Error(err)
	}
}

func TestWorstCaseStop(t *testing.T) {
	a := App{KillTimeout: 8 * time.Second}
	b := App{KillTimeout: 20 * time.Second}
	if got := WorstCaseStop(0, a); got != 9*time.Second {
		t.Errorf("defaults: %v", got)
	}
	if got := WorstCaseStop(5*time.Second, a, b); got != 26*time.Second {
		t.Errorf("5s delay, kill timeouts 8s and 20s: %v", got)
	}
	if got := WorstCaseStop(MaxDuration, App{KillTimeout: MaxDuration}); got != 2*MaxDuration+StopSweep {
		t.Errorf("largest accepted values: %v", got)
	}
	huge := time.Duration(math.MaxInt64)
	if got := WorstCaseStop(huge, App{KillTimeout: huge}); got != huge {
		t.Errorf("saturation: %v", got)
	}
	if got := WorstCaseStop(-time.Second, App{KillTimeout: -time.Hour}); got != StopSweep {
		t.Errorf("negative values: %v", got)
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"api", true}, {"api:v2", true}, {"worker@eu", true}, {"web.1_x-y", true}, {"café", true},
		{strings.Repeat("x", 100), true}, {strings.Repeat("x", 101), false},
		{"", false}, {"my api", false}, {"a,b", false}, {`a"b`, false}, {"a'b", false}, {`a\b`, false},
		{"a\tb", false}, {"a\x01b", false}, {"a\xffb", false},
	} {
		err := CheckName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && err.Error() != NameAccepted {
			t.Errorf("CheckName(%q) = %v", tc.name, err)
		}
		if c := CleanName(tc.name); CheckName(c) != nil && tc.name != "" {
			t.Errorf("CleanName(%q) = %q breaks the rule", tc.name, c)
		}
	}
}

func TestDurationAndRestartRanges(t *testing.T) {
	for _, tc := range []struct {
		d, least time.Duration
		ok       bool
	}{
		{0, 0, true}, {MaxDuration, 0, true}, {MaxDuration + 1, 0, false}, {-1, 0, false},
		{time.Millisecond, time.Millisecond, true}, {0, time.Millisecond, false},
	} {
		if err := CheckDuration(tc.d, tc.least); (err == nil) != tc.ok {
			t.Errorf("CheckDuration(%v, %v) = %v", tc.d, tc.least, err)
		}
	}
	for _, tc := range []struct {
		n  int
		ok bool
	}{{0, true}, {16, true}, {1_000_000, true}, {1_000_001, false}, {-1, false}} {
		if err := CheckMaxRestarts(tc.n); (err == nil) != tc.ok {
			t.Errorf("CheckMaxRestarts(%d) = %v", tc.n, err)
		}
	}
}

func TestParseListen(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want int    // addresses
		err  string // "" = accepted
	}{
		{[]string{":8080"}, 1, ""},
		{[]string{":8080,:8081,"}, 2, ""},
		{[]string{":8080", " ", ":8081"}, 2, ""},
		{[]string{","}, 0, "no address; accepted: "},
		{[]string{""}, 0, "no address"},
		{nil, 0, "no address"},
		{[]string{" , "}, 0, "no address"},
		{[]string{":99999"}, 0, ":99999"},
	} {
		specs, err := ParseListen(tc.in...)
		switch {
		case tc.err == "" && (err != nil || len(specs) != tc.want):
			t.Errorf("ParseListen(%q) = %v, %v", tc.in, specs, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseListen(%q) = %v, %v; want an error with %q", tc.in, specs, err, tc.err)
		}
		var na *NoListenAddressError
		if tc.err != "" && err != nil && errors.As(err, &na) != strings.HasPrefix(tc.err, "no address") {
			t.Errorf("ParseListen(%q): %T %v", tc.in, err, err)
		}
	}
}

func TestMaxRestartsAccepted(t *testing.T) {
	if want := "a whole number from 0 to " + strconv.Itoa(MaxRestartsLimit); MaxRestartsAccepted != want {
		t.Errorf("MaxRestartsAccepted %q, want %q", MaxRestartsAccepted, want)
	}
	if _, err := ParseMaxRestarts("x"); err == nil || err.Error() != "accepted: "+MaxRestartsAccepted {
		t.Errorf("ParseMaxRestarts(x): %v", err)
	}
}
