package tick

import (
	"os"
	"testing"
	"time"
)

func TestTickerFiresAndStops(t *testing.T) {
	tk := New(5 * time.Millisecond)
	for i := 0; i < 3; i++ {
		select {
		case <-tk.C:
		case <-time.After(10 * time.Second):
			t.Fatalf("tick %d did not come within 10 s", i+1)
		}
	}
	// Nobody reads C now: Stop must not wait on its reader.
	stopped := make(chan struct{})
	go func() { tk.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the ticker")
	}
	// C is closed once stopped (a pending tick may come first).
	for range tk.C {
	}
}

// The ticker comes from a timerfd, not a runtime timer: that is its point.
func TestTickerUsesATimerfd(t *testing.T) {
	before := timerfds(t)
	tk := New(time.Hour)
	if got := timerfds(t); got != before+1 {
		t.Errorf("%d timerfds open while a ticker runs, want %d", got, before+1)
	}
	tk.Stop()
	if got := timerfds(t); got != before {
		t.Errorf("%d timerfds open after Stop, want %d", got, before)
	}
}

// timerfds counts this process's open timerfds.
func timerfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:[timerfd]" {
			n++
		}
	}
	return n
}
