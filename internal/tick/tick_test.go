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

// TestTickerPeriod: ticks come one interval apart, not sooner (the third
// tick needs three expirations) and not much later.
func TestTickerPeriod(t *testing.T) {
	const interval = 20 * time.Millisecond
	start := time.Now()
	tk := New(interval)
	defer tk.Stop()
	deadline := time.After(10 * time.Second)
	for i := 0; i < 3; i++ {
		select {
		case <-tk.C:
		case <-deadline:
			t.Fatalf("tick %d of a %v ticker did not come within 10 s", i+1, interval)
		}
	}
	if el := time.Since(start); el < 3*interval {
		t.Errorf("3 ticks of a %v ticker after %v", interval, el)
	}
}

// TestTickerStopsWithTicksUnread: ticks keep expiring while nobody reads
// C (one waits in C, the others are dropped); Stop must still end the
// ticker rather than wait for a reader.
func TestTickerStopsWithTicksUnread(t *testing.T) {
	tk := New(time.Millisecond)
	clock := New(time.Millisecond)
	defer func() {
		go func() { // ours may block on an unread C if the ticker is broken
			for range clock.C {
			}
		}()
		clock.Stop()
	}()
	deadline := time.After(10 * time.Second)
	// Wait for a tick to sit unread in C, then for three more periods.
	for len(tk.C) == 0 {
		select {
		case <-clock.C:
		case <-deadline:
			t.Fatal("no tick within 10 s")
		}
	}
	for i := 0; i < 3; i++ {
		select {
		case <-clock.C:
		case <-deadline:
			t.Fatal("the clock ticker stalled")
		}
	}
	stopped := make(chan struct{})
	go func() { tk.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop waited for a reader of C")
	}
}
