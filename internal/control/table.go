package control

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Per-worker CPU and memory come from the procfs stats in the snapshot
// when the supervisor publishes them (the /status of that version); the
// table shows "-" where a figure is absent. These are the JSON names read,
// first the worker's (the slot's current process), then the slot's.
var (
	memoryKeys = []string{"memory_bytes", "rss_bytes", "pss_bytes"}
	cpuKeys    = []string{"cpu_seconds", "cpu_seconds_total"}
)

// view is the part of a status.Snapshot the table shows.
type view struct {
	ShuttingDown bool `json:"shutting_down"`
	Apps         []struct {
		Name      string `json:"name"`
		Instances int    `json:"instances"`
		Ready     int    `json:"ready"`
		Reload    struct {
			InProgress bool   `json:"in_progress"`
			LastResult string `json:"last_result"`
		} `json:"reload"`
	} `json:"apps"`
	Slots []json.RawMessage `json:"slots"`
}

type slotView struct {
	App       string                       `json:"app"`
	Index     int                          `json:"instance"`
	State     string                       `json:"state"`
	Pid       int                          `json:"pid"`
	Restarts  int                          `json:"restarts"`
	StartedAt time.Time                    `json:"started_at"`
	Workers   []map[string]json.RawMessage `json:"workers"`
}

// renderTable writes the status as `pm2 ls` shows it: one row per worker
// slot.
func renderTable(w io.Writer, status json.RawMessage, now time.Time) error {
	var v view
	if err := json.Unmarshal(status, &v); err != nil {
		return fmt.Errorf("unreadable status from gm2-init: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tINSTANCE\tPID\tSTATE\tUPTIME\tRESTARTS\tCPU\tMEMORY")
	for _, raw := range v.Slots {
		var s slotView
		var flat map[string]json.RawMessage
		if json.Unmarshal(raw, &s) != nil || json.Unmarshal(raw, &flat) != nil {
			return fmt.Errorf("unreadable slot in gm2-init's status: %s", raw)
		}
		pid, uptime := "-", "-"
		if s.Pid > 0 {
			pid = strconv.Itoa(s.Pid)
			if !s.StartedAt.IsZero() {
				uptime = compactDuration(now.Sub(s.StartedAt))
			}
		}
		var sources []map[string]json.RawMessage
		for _, wk := range s.Workers {
			var p int
			if json.Unmarshal(wk["pid"], &p) == nil && p == s.Pid && p > 0 {
				sources = append(sources, wk)
			}
		}
		sources = append(sources, flat)
		cpu, mem := "-", "-"
		if f, ok := figure(sources, cpuKeys); ok {
			cpu = cpuTime(f)
		}
		if f, ok := figure(sources, memoryKeys); ok {
			mem = bytesText(f)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", s.App, s.Index, pid, s.State, uptime, s.Restarts, cpu, mem)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range v.Apps {
		switch r := a.Reload; {
		case r.InProgress:
			fmt.Fprintf(w, "%s: reload in progress\n", a.Name)
		case strings.HasPrefix(r.LastResult, "failed"):
			fmt.Fprintf(w, "%s: last reload %s\n", a.Name, r.LastResult)
		}
	}
	if v.ShuttingDown {
		fmt.Fprintln(w, "gm2-init is shutting down")
	}
	return nil
}

func figure(sources []map[string]json.RawMessage, keys []string) (float64, bool) {
	for _, src := range sources {
		for _, k := range keys {
			var f float64
			if raw, ok := src[k]; ok && json.Unmarshal(raw, &f) == nil {
				return f, true
			}
		}
	}
	return 0, false
}

// compactDuration is pm2's style of uptime: one unit, 45s, 12m, 5h, 3d.
func compactDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// cpuTime renders CPU seconds used since the worker started.
func cpuTime(sec float64) string {
	if sec < 60 {
		return strconv.FormatFloat(sec, 'f', 2, 64) + "s"
	}
	return (time.Duration(sec) * time.Second).String()
}

// bytesText renders a size in binary units with one decimal.
func bytesText(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
