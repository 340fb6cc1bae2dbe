package main

import (
	"slices"
	"strconv"
	"testing"
)

type lifecycleCalls struct{ calls []string }

func (l *lifecycleCalls) Ready(ready, total int) {
	l.calls = append(l.calls, "ready", itoa(ready), itoa(total))
}
func (l *lifecycleCalls) Reloading() { l.calls = append(l.calls, "reloading") }
func (l *lifecycleCalls) Stopping()  { l.calls = append(l.calls, "stopping") }
func (l *lifecycleCalls) Status(ready, total int) {
	l.calls = append(l.calls, "status", itoa(ready), itoa(total))
}

func itoa(n int) string { return strconv.Itoa(n) }

// returnMemory passes every event on to gm2-init's own supervisor (READY=1,
// RELOADING=1, STOPPING=1, STATUS=), and needs none.
func TestReturnMemoryForwards(t *testing.T) {
	next := &lifecycleCalls{}
	r := returnMemory{next: next}
	r.Ready(2, 3)
	r.Reloading()
	r.Status(1, 3)
	r.Stopping()
	want := []string{"ready", "2", "3", "reloading", "status", "1", "3", "stopping"}
	if !slices.Equal(next.calls, want) {
		t.Errorf("forwarded %q, want %q", next.calls, want)
	}
	none := returnMemory{}
	none.Ready(1, 1)
	none.Reloading()
	none.Status(1, 1)
	none.Stopping()
}
