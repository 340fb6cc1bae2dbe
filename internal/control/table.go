package control

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// view is the part of the /status document (health's statusView) the
// table shows. The usage figures (rss_bytes, cpu_seconds) are those of each
// worker and its descendants, read from /proc when the document was built;
// a worker whose tree could not be read has a usage_error instead, and the
// table shows "-" for it.
type view struct {
	ShuttingDown bool `json:"shutting_down"`
	// Apps, with a reload state each, when the document lists them; the
	// document's own reload state otherwise.
	Apps []struct {
		Name   string      `json:"name"`
		Reload reloadState `json:"reload"`
	} `json:"apps"`
	Reload reloadState `json:"reload"`
	Slots  []slotView  `json:"slots"`
}

type reloadState struct {
	InProgress bool   `json:"in_progress"`
	LastResult string `json:"last_result"`
}

type slotView struct {
	App           string       `json:"app"`
	Index         int          `json:"instance"`
	State         string       `json:"state"`
	Pid           int          `json:"pid"`
	Restarts      int          `json:"restarts"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	Workers       []workerView `json:"workers"`
}

type workerView struct {
	Pid        int      `json:"pid"`
	RSSBytes   *uint64  `json:"rss_bytes"`
	CPUSeconds *float64 `json:"cpu_seconds"`
}

// renderTable writes the /status document as `pm2 ls` shows it: one row per
// worker slot, with the CPU and memory of the slot's current worker.
func renderTable(w io.Writer, status json.RawMessage) error {
	var v view
	if err := json.Unmarshal(status, &v); err != nil {
		return fmt.Errorf("unreadable status from gm2-init: %w", err)
	}
	rows := [][]string{{"APP", "INSTANCE", "PID", "STATE", "UPTIME", "RESTARTS", "CPU", "MEMORY"}}
	for _, s := range v.Slots {
		app, pid, uptime, cpu, mem := s.App, "-", "-", "-", "-"
		if app == "" {
			app = "-"
		}
		if s.Pid > 0 {
			pid = strconv.Itoa(s.Pid)
			uptime = compactDuration(time.Duration(s.UptimeSeconds * float64(time.Second)))
			for _, wk := range s.Workers {
				if wk.Pid != s.Pid {
					continue
				}
				if wk.CPUSeconds != nil {
					cpu = cpuTime(*wk.CPUSeconds)
				}
				if wk.RSSBytes != nil {
					mem = bytesText(float64(*wk.RSSBytes))
				}
			}
		}
		rows = append(rows, []string{app, strconv.Itoa(s.Index), pid, s.State, uptime, strconv.Itoa(s.Restarts), cpu, mem})
	}
	if _, err := io.WriteString(w, columns(rows)); err != nil {
		return err
	}
	reloadLine := func(prefix string, r reloadState) {
		switch {
		case r.InProgress:
			fmt.Fprintf(w, "%sreload in progress\n", prefix)
		case strings.HasPrefix(r.LastResult, "failed"):
			fmt.Fprintf(w, "%slast reload %s\n", prefix, r.LastResult)
		}
	}
	if v.Apps == nil {
		reloadLine("", v.Reload)
	}
	for _, a := range v.Apps {
		reloadLine(a.Name+": ", a.Reload)
	}
	if v.ShuttingDown {
		fmt.Fprintln(w, "gm2-init is shutting down")
	}
	return nil
}

// columns lines rows up: each cell but a row's last is padded to its
// column's widest cell plus two blanks (what text/tabwriter does, for one
// table and without its 12 kB in the binary).
func columns(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for i, c := range r[:len(r)-1] {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
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
