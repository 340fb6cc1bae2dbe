package spawn

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 15 * time.Second, 15 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(1 << 30); got != backoffMax {
		t.Errorf("backoff(huge) = %v, want the cap", got)
	}
	if got := backoff(0); got != backoffMin {
		t.Errorf("backoff(0) = %v", got)
	}
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
		if p.restarts(0) != tc.on0 || p.restarts(137) != tc.on1 {
			t.Errorf("%s: restarts(0)=%v restarts(137)=%v", p, p.restarts(0), p.restarts(137))
		}
	}
}

func TestSetEnvReplaces(t *testing.T) {
	env := setEnv([]string{"A=1", "LISTEN_PID=9", "LISTEN_PIDX=2", "B=3"}, "LISTEN_PID", "42")
	want := []string{"A=1", "LISTEN_PIDX=2", "B=3", "LISTEN_PID=42"}
	if len(env) != len(want) {
		t.Fatalf("%v", env)
	}
	for i := range want {
		if env[i] != want[i] {
			t.Fatalf("setEnv = %v, want %v", env, want)
		}
	}
}
