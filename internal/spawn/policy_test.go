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
