package health

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"time"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/status"
)

// statusView is the JSON document of GET /status. It is a view built from the
// snapshot rather than the snapshot itself so that it can carry uptimes
// computed at request time (a snapshot is published at changes only, so its
// own timestamps are all it can hold) and so that its shape is this
// endpoint's contract, not a side effect of the supervisor's struct tags.
type statusView struct {
	Version       string         `json:"version"`
	StartedAt     time.Time      `json:"started_at,omitzero"`
	UptimeSeconds float64        `json:"uptime_seconds"`
	Instances     int            `json:"instances"`
	MinReady      int            `json:"min_ready"`
	ReadyWorkers  int            `json:"ready_workers"`
	ShuttingDown  bool           `json:"shutting_down"`
	Slots         []slotView     `json:"slots"`
	Reload        status.Reload  `json:"reload"`
	Counters      countersView   `json:"counters"`
	States        map[string]int `json:"slots_by_state"`
	Errored       []int          `json:"errored_slots"`
	// Apps has each app's own figures: with a process file of several
	// apps the totals above mix them (their instance numbers each start
	// at 0), and /readyz checks each app on its own.
	Apps []appView `json:"apps"`
	// Listeners are the sockets passed to the workers, in fd order (3, 4, …).
	Listeners []status.Listener `json:"listeners"`
}

type appView struct {
	Name         string        `json:"name"`
	Instances    int           `json:"instances"`
	MinReady     int           `json:"min_ready"`
	ReadyWorkers int           `json:"ready_workers"`
	Paused       int           `json:"paused"`
	Errored      []int         `json:"errored_slots"`
	Reload       status.Reload `json:"reload"`
}

type slotView struct {
	App           string       `json:"app"`
	Instance      int          `json:"instance"`
	State         status.State `json:"state"`
	Pid           int          `json:"pid"`
	Restarts      int          `json:"restarts"`
	StartedAt     time.Time    `json:"started_at,omitzero"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	LastExit      string       `json:"last_exit"`
	LastStatus    string       `json:"last_status"`
	Workers       []workerView `json:"workers"`
}

type workerView struct {
	Pid           int          `json:"pid"`
	State         status.State `json:"state"`
	Generation    uint64       `json:"generation"`
	StartedAt     time.Time    `json:"started_at,omitzero"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	Status        string       `json:"status"`
	// The usage figures appear inline when the worker's tree was read.
	*UsageView
	// UsageError says why they are missing: the worker is gone (the
	// snapshot is a moment old) or the read hit its deadline.
	UsageError string `json:"usage_error,omitempty"`
}

// UsageView is the resource usage of one worker and all its descendants
// (`sh -c`, `npm start` and the server they start), read from /proc when
// /status is requested. Memory is the resident set size, summed (see
// procfs.Stats for why RSS and not PSS).
type UsageView struct {
	RSSBytes   uint64  `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
	Threads    int     `json:"threads"`
	Processes  int     `json:"processes"`
	FDs        int     `json:"fds"`
	// Partial: part of the tree could not be read; the figures are a
	// lower bound.
	Partial bool `json:"usage_partial,omitempty"`
}

func usageView(trees map[int]procfs.TreeResult, pid int) (*UsageView, string) {
	r, ok := trees[pid]
	switch {
	case !ok:
		return nil, "not read: another read of /proc was still running"
	case r.Err != nil:
		if isGone(r.Err) {
			return nil, "process gone"
		}
		if errors.Is(r.Err, context.DeadlineExceeded) {
			return nil, "not read within " + usageTimeout.String()
		}
		return nil, r.Err.Error()
	}
	st := r.Stats
	return &UsageView{
		RSSBytes:   st.RSSBytes,
		CPUSeconds: math.Round(st.CPUSeconds()*1000) / 1000,
		Threads:    st.Threads,
		Processes:  st.Processes,
		FDs:        st.FDs,
		Partial:    st.Partial,
	}, ""
}

// countersView always lists both reload results, so that a consumer does not
// have to tell "no reload yet" from "field missing".
type countersView struct {
	Restarts       uint64            `json:"restarts_total"`
	Reloads        map[string]uint64 `json:"reloads_total"`
	OrphansReaped  uint64            `json:"orphans_reaped_total"`
	WorkersStarted uint64            `json:"workers_started_total"`
	MemoryRestarts uint64            `json:"memory_restarts_total"`
}

// uptime is the time since t in seconds, rounded to the millisecond; 0 for a
// zero t (not started) or a t in the future (clock stepped back).
func uptime(now, t time.Time) float64 {
	if t.IsZero() || now.Before(t) {
		return 0
	}
	return math.Round(now.Sub(t).Seconds()*1000) / 1000
}

// buildStatusView renders snap at now; trees holds the workers' usage (nil:
// none read, which leaves the usage fields out).
func buildStatusView(snap *status.Snapshot, now time.Time, trees map[int]procfs.TreeResult) statusView {
	v := statusView{
		Version:       snap.Version,
		StartedAt:     snap.StartedAt,
		UptimeSeconds: uptime(now, snap.StartedAt),
		Instances:     snap.Instances,
		MinReady:      snap.MinReady,
		ReadyWorkers:  snap.ReadyWorkers(),
		ShuttingDown:  snap.ShuttingDown,
		Slots:         make([]slotView, 0, len(snap.Slots)),
		Reload:        snap.Reload,
		Counters: countersView{
			Restarts:       snap.Counters.Restarts,
			Reloads:        reloadCounts(snap.Counters.Reloads),
			OrphansReaped:  snap.Counters.OrphansReaped,
			WorkersStarted: snap.Counters.WorkersStarted,
			MemoryRestarts: snap.Counters.MemoryRestarts,
		},
		States:  make(map[string]int, len(status.AllStates)),
		Errored: snap.ErroredSlots(),
	}
	if v.Errored == nil {
		v.Errored = []int{}
	}
	v.Apps = make([]appView, 0, len(snap.Apps))
	for _, a := range snap.Apps {
		errored := snap.ErroredIn(a.Name)
		if errored == nil {
			errored = []int{}
		}
		v.Apps = append(v.Apps, appView{Name: a.Name, Instances: a.Instances, MinReady: a.MinReady, ReadyWorkers: a.Ready, Paused: a.Paused, Errored: errored, Reload: a.Reload})
	}
	v.Listeners = snap.Listeners
	if v.Listeners == nil {
		v.Listeners = []status.Listener{}
	}
	for _, st := range status.AllStates {
		v.States[string(st)] = 0
	}
	for _, sl := range snap.Slots {
		v.States[string(sl.State)]++
		sv := slotView{
			App:           sl.App,
			Instance:      sl.Index,
			State:         sl.State,
			Pid:           sl.Pid,
			Restarts:      sl.Restarts,
			StartedAt:     sl.StartedAt,
			UptimeSeconds: uptime(now, sl.StartedAt),
			LastExit:      sl.LastExit,
			LastStatus:    sl.LastStatus,
			Workers:       make([]workerView, 0, len(sl.Workers)),
		}
		for _, w := range sl.Workers {
			wv := workerView{
				Pid:           w.Pid,
				State:         w.State,
				Generation:    w.Generation,
				StartedAt:     w.StartedAt,
				UptimeSeconds: uptime(now, w.StartedAt),
				Status:        w.Status,
			}
			if trees != nil && w.Pid > 0 {
				wv.UsageView, wv.UsageError = usageView(trees, w.Pid)
			}
			sv.Workers = append(sv.Workers, wv)
		}
		v.Slots = append(v.Slots, sv)
	}
	return v
}

// reloadCounts copies the reload counters with "ok" and "failed" always
// present.
func reloadCounts(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{"ok": 0, "failed": 0}
	for k, n := range m {
		out[k] = n
	}
	return out
}

// reloadResults lists the result labels of gm2_reloads_total: "ok" and
// "failed" first and always, then any other the supervisor reported, sorted
// so that the output is stable between scrapes.
func reloadResults(m map[string]uint64) []string {
	out := []string{"ok", "failed"}
	var extra []string
	for k := range m {
		if k != "ok" && k != "failed" {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

// statusBody renders snap at now as GET /status serves it: indented JSON
// and a final newline (StatusDocument.Body, which reads trees, is the one
// caller).
func statusBody(snap *status.Snapshot, now time.Time, trees map[int]procfs.TreeResult) ([]byte, error) {
	body, err := json.MarshalIndent(buildStatusView(snap, now, trees), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(body, '\n'), nil
}
