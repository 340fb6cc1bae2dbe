package status

import (
	"encoding/json"
	"slices"
	"testing"
)

// snapshot: app "api" with a slot in a reload (its old worker ready, its
// replacement ready too), a slot in backoff and an errored one; app "web"
// with a ready slot and an errored one.
func snapshot() *Snapshot {
	return &Snapshot{Slots: []Slot{
		{App: "api", Index: 0, State: Ready, Workers: []Worker{{Pid: 10, State: Ready}, {Pid: 11, State: Ready}}},
		{App: "api", Index: 1, State: Backoff},
		{App: "api", Index: 2, State: Errored},
		{App: "api", Index: 3, State: Starting, Workers: []Worker{{Pid: 12, State: Starting}}},
		{App: "web", Index: 0, State: Ready, Workers: []Worker{{Pid: 20, State: Ready}, {Pid: 21, State: Draining}}},
		{App: "web", Index: 1, State: Errored},
	}}
}

// Ready workers are counted by process, not by slot: a slot in a reload
// has two; a draining one is not ready.
func TestReadyWorkers(t *testing.T) {
	if n := snapshot().ReadyWorkers(); n != 3 {
		t.Errorf("ReadyWorkers = %d, want 3", n)
	}
	if n := (&Snapshot{}).ReadyWorkers(); n != 0 {
		t.Errorf("no slot: %d", n)
	}
}

// Errored means crash-looped past --max-restarts: a slot in backoff is
// not (it would fail /livez and have the container restarted); each app
// numbers its own slots.
func TestErrored(t *testing.T) {
	s := snapshot()
	if got := s.ErroredSlots(); !slices.Equal(got, []int{2, 1}) {
		t.Errorf("ErroredSlots = %v, want [2 1]", got)
	}
	if got := s.ErroredIn("api"); !slices.Equal(got, []int{2}) {
		t.Errorf("ErroredIn(api) = %v, want [2]", got)
	}
	if got := s.ErroredIn("web"); !slices.Equal(got, []int{1}) {
		t.Errorf("ErroredIn(web) = %v, want [1]", got)
	}
	if got := s.ErroredIn("nope"); len(got) != 0 {
		t.Errorf("ErroredIn(nope) = %v", got)
	}
}

// AllStates lists every state once, in the order /metrics shows them.
func TestAllStates(t *testing.T) {
	want := []State{"starting", "ready", "draining", "backoff", "errored", "stopped"}
	if !slices.Equal(AllStates, want) {
		t.Errorf("AllStates = %q, want %q", AllStates, want)
	}
}

// Reload is the one type of this package that /status shows as it is
// (health's status view embeds it): its field names, last_result only
// once a reload has ended.
func TestReloadJSON(t *testing.T) {
	for _, tt := range []struct {
		r    Reload
		want string
	}{
		{Reload{}, `{"generation":0,"in_progress":false}`},
		{Reload{Generation: 2, InProgress: true, LastResult: "ok"}, `{"generation":2,"in_progress":true,"last_result":"ok"}`},
	} {
		if b, err := json.Marshal(tt.r); err != nil || string(b) != tt.want {
			t.Errorf("%+v: %s, %v; want %s", tt.r, b, err, tt.want)
		}
	}
}
