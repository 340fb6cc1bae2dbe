package appspec

import (
	"math"
	"strings"
	"testing"
)

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
}

func TestParseInstances(t *testing.T) {
	tests := []struct {
		in   string
		want Instances
		ok   bool
	}{
		{"max", Instances{Relative: true}, true},
		{"MAX", Instances{Relative: true}, true},
		{" Max ", Instances{Relative: true}, true},
		{"0", Instances{Relative: true}, true},
		{"-0", Instances{Relative: true}, true},
		{"-1", Instances{Relative: true, N: 1}, true},
		{"-3", Instances{Relative: true, N: 3}, true},
		{"-1024", Instances{Relative: true, N: 1024}, true},
		{"1", Instances{N: 1}, true},
		{"4", Instances{N: 4}, true},
		{" 2 ", Instances{N: 2}, true},
		{"+3", Instances{N: 3}, true},
		{"007", Instances{N: 7}, true},
		{"1024", Instances{N: 1024}, true},
		{"1025", Instances{}, false},
		{"-1025", Instances{}, false},
		{"1000000", Instances{}, false},
		{"99999999999999999999999", Instances{}, false},
		{"-99999999999999999999999", Instances{}, false},
		{"abc", Instances{}, false},
		{"1.5", Instances{}, false},
		{"1e2", Instances{}, false},
		{"0x10", Instances{}, false},
		{"", Instances{}, false},
		{"   ", Instances{}, false},
		{"maximum", Instances{}, false},
		{"-max", Instances{}, false},
		{"--1", Instances{}, false},
		{"2 3", Instances{}, false},
	}
	for _, tt := range tests {
		got, err := ParseInstances(tt.in)
		if !tt.ok {
			if err == nil {
				t.Errorf("ParseInstances(%q) = %+v, want an error", tt.in, got)
				continue
			}
			if !strings.HasPrefix(err.Error(), "accepted: ") {
				t.Errorf("ParseInstances(%q) error %q should list the accepted forms", tt.in, err)
			}
			checkOneLine(t, err)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseInstances(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestInstancesString(t *testing.T) {
	for spec, want := range map[Instances]string{
		{Relative: true}:       "max",
		{Relative: true, N: 2}: "-2",
		{N: 3}:                 "3",
	} {
		if got := spec.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", spec, got, want)
		}
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		spec      string
		cpus      int
		want      int
		oversubed bool
	}{
		{"max", 1, 1, false},
		{"max", 8, 8, false},
		{"0", 4, 4, false},
		{"-1", 8, 7, false},
		{"-1", 2, 1, false},
		{"-1", 1, 1, false}, // never below 1
		{"-4", 4, 1, false},
		{"-8", 4, 1, false},
		{"-1024", 1, 1, false},
		{"1", 1, 1, false},
		{"4", 4, 4, false},
		{"3", 8, 3, false},
		{"5", 4, 5, true}, // more workers than CPUs: kept, but flagged
		{"1024", 1, 1024, true},
		// max follows the CPUs up to the cap on workers, never beyond.
		{"max", 1024, 1024, false},
		{"max", 1025, 1024, false},
		{"max", 100000, 1024, false},
		{"-1", 100000, 1024, false},
		// A CPU count below 1 (an undetectable quota) counts as 1.
		{"max", 0, 1, false},
		{"max", -3, 1, false},
		{"-1", 0, 1, false},
		{"2", 0, 2, true},
		{"1", 0, 1, false},
	}
	for _, tt := range tests {
		spec, err := ParseInstances(tt.spec)
		if err != nil {
			t.Fatalf("ParseInstances(%q): %v", tt.spec, err)
		}
		n, over := spec.Resolve(tt.cpus)
		if n != tt.want || over != tt.oversubed {
			t.Errorf("ParseInstances(%q).Resolve(%d) = %d, %v; want %d, %v", tt.spec, tt.cpus, n, over, tt.want, tt.oversubed)
		}
	}
}

func FuzzParseInstances(f *testing.F) {
	for _, s := range []string{"max", "MAX", "0", "-0", "-1", "-1024", "-1025", "1", "1024", "1025",
		"abc", "1.5", "", " 2 ", "+3", "99999999999999999999", "-9223372036854775808", "\u0663"} {
		f.Add(s, 4)
	}
	f.Fuzz(func(t *testing.T, s string, cpus int) {
		spec, err := ParseInstances(s)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		if spec.N < 0 || spec.N > MaxWorkers || (!spec.Relative && spec.N == 0) {
			t.Fatalf("ParseInstances(%q) = %+v: out of range", s, spec)
		}
		back, err := ParseInstances(spec.String())
		if err != nil || back != spec {
			t.Fatalf("ParseInstances(%q) = %+v, but its String %q parses to %+v, %v", s, spec, spec.String(), back, err)
		}
		for _, m := range []int{cpus, 1, 2, 64, MaxWorkers, math.MaxInt} {
			n, over := spec.Resolve(m)
			if n < 1 || n > max(m, MaxWorkers) {
				t.Fatalf("ParseInstances(%q).Resolve(%d) = %d", s, m, n)
			}
			if spec.Relative && (over || n > max(m, 1)) {
				t.Fatalf("ParseInstances(%q).Resolve(%d) = %d, %v: a relative count follows the CPUs", s, m, n, over)
			}
			if !spec.Relative && (n != spec.N || over != (spec.N > max(m, 1))) {
				t.Fatalf("ParseInstances(%q).Resolve(%d) = %d, %v", s, m, n, over)
			}
		}
	})
}

func TestRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     RestartPolicy
		ok       bool
		on0, on1 bool
	}{
		{"always", Always, true, true, true},
		{" Always ", Always, true, true, true},
		{"on-failure", OnFailure, true, false, true},
		{"never", Never, true, false, false},
		{"", "", false, false, false},
		{"unless-stopped", "", false, false, false},
	} {
		p, err := ParseRestartPolicy(tc.in)
		if (err == nil) != tc.ok || p != tc.want {
			t.Errorf("ParseRestartPolicy(%q) = %q, %v", tc.in, p, err)
			continue
		}
		if !tc.ok {
			continue
		}
		if p.Restarts(0) != tc.on0 || p.Restarts(137) != tc.on1 {
			t.Errorf("%s: restarts(0)=%v restarts(137)=%v", p, p.Restarts(0), p.Restarts(137))
		}
	}
}
