package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gm2-init/gm2-init/internal/status"
)

// check is one named condition of a probe, named as in kube-apiserver's
// "[+]name ok" lines. A check that reads the supervisor's state gets it from
// snap, which the probe takes only when a check first needs it.
type check struct {
	name string
	run  func(ctx context.Context, snap func() *status.Snapshot) error
}

// livezChecks decide whether the kubelet should restart the container. They
// look only at gm2-init itself, never at the app's downstream services: a
// database outage must not restart every pod at once.
func (s *Server) livezChecks() []check {
	return []check{
		{name: "ping", run: func(ctx context.Context, _ func() *status.Snapshot) error {
			err := s.pinger.ping(ctx)
			switch {
			case err == nil:
				return nil
			case errors.Is(err, context.DeadlineExceeded):
				return fmt.Errorf("supervisor loop did not answer within %s", s.opts.pingTimeout)
			default:
				return fmt.Errorf("supervisor loop: %w", err)
			}
		}},
		{name: "slots", run: func(_ context.Context, snap func() *status.Snapshot) error {
			st := snap()
			if len(st.Apps) <= 1 {
				if bad := st.ErroredSlots(); len(bad) > 0 {
					return fmt.Errorf("slot(s) %s errored (crash-looped past --max-restarts)", joinInts(bad))
				}
				return nil
			}
			// Each app numbers its slots from 0: name the app.
			var bad []string
			for _, a := range st.Apps {
				if e := st.ErroredIn(a.Name); len(e) > 0 {
					bad = append(bad, fmt.Sprintf("app %s slot(s) %s", a.Name, joinInts(e)))
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s errored (crash-looped past --max-restarts)", strings.Join(bad, ", "))
			}
			return nil
		}},
	}
}

// readyzChecks decide whether the Service sends traffic to this pod. They
// read only the snapshot, never a worker.
func readyzChecks() []check {
	return []check{
		{name: "shutdown", run: func(_ context.Context, snap func() *status.Snapshot) error {
			if snap().ShuttingDown {
				return errors.New("shutting down")
			}
			return nil
		}},
		{name: "workers", run: func(_ context.Context, snap func() *status.Snapshot) error {
			return readyShortfall(snap())
		}},
	}
}

// readyShortfall says which app has fewer ready workers than it requires,
// or nil. Each app is held to its own min_ready: with a process file, an
// app whose every worker is down fails readiness however many workers the
// others have ready. A slot paused on purpose (stopped for good by its
// restart policy, a one-shot task of a process file; or stopped to be
// started again, a fork app's reload) is not waited for, but a pod with no
// ready worker at all is never ready: a MinReady below 1 would let the
// Service send it traffic that nothing can serve.
func readyShortfall(st *status.Snapshot) error {
	if len(st.Apps) == 0 {
		// A snapshot from before the apps were known.
		if want, got := max(st.MinReady, 1), st.ReadyWorkers(); got < want {
			return fmt.Errorf("%d worker(s) ready, %d required", got, want)
		}
		return nil
	}
	var short []string
	for _, a := range st.Apps {
		want := min(max(a.MinReady, 1), a.Instances-a.Paused)
		if a.Ready >= want {
			continue
		}
		msg := fmt.Sprintf("%d worker(s) ready, %d required", a.Ready, want)
		if len(st.Apps) > 1 {
			msg = "app " + a.Name + ": " + msg
		}
		short = append(short, msg)
	}
	if len(short) == 0 && st.ReadyWorkers() == 0 {
		return errors.New("0 worker(s) ready, 1 required")
	}
	if len(short) > 0 {
		return errors.New(strings.Join(short, "; "))
	}
	return nil
}

// handleProbe runs checks and answers as kube-apiserver does: "ok" when all
// pass; with ?verbose, one "[+]name ok" / "[-]name failed: reason" line per
// check and a last "<probe> check passed|failed" line.
//
// Without ?verbose a failure lists only the failed checks, so that the first
// line of the body is the reason (Check and most probe logs show only that).
// kube-apiserver withholds reasons because its endpoint is public; ours only
// tells what /status already tells.
//
// /healthz runs the liveness checks. It is deprecated in kube-apiserver but
// many Helm charts still probe it, mostly as a livenessProbe; were it an
// alias of /readyz, every shutdown and every dip below MinReady would count
// toward restarting the container. As liveness, the worst a chart that uses it
// for readiness gets is a weaker readiness check, never a restart.
func (s *Server) handleProbe(ctx context.Context, req *request, probe string, checks []check) reply {
	// Taken when a check first needs it, so that /livez pings first: a
	// ping that succeeds has brought the snapshot up to date, and one that
	// fails has marked the supervisor stuck, so that the snapshot after it
	// does not wait again.
	var taken *status.Snapshot
	snap := func() *status.Snapshot {
		if taken == nil {
			taken = s.snapshot()
		}
		return taken
	}
	verbose := queryHas(req.query, "verbose")

	var out bytes.Buffer
	var failed []string
	for _, c := range checks {
		err := c.run(ctx, snap)
		if err != nil {
			failed = append(failed, c.name+": "+err.Error())
			fmt.Fprintf(&out, "[-]%s failed: %s\n", c.name, singleSpaced(err.Error()))
		} else if verbose {
			fmt.Fprintf(&out, "[+]%s ok\n", c.name)
		}
	}
	s.logTransition(probe, failed)

	code := statusOK
	switch {
	case len(failed) > 0:
		code = statusServiceUnavailable
		fmt.Fprintf(&out, "%s check failed\n", probe)
	case verbose:
		fmt.Fprintf(&out, "%s check passed\n", probe)
	default:
		out.WriteString("ok")
	}
	return bodyReply(code, "text/plain; charset=utf-8", out.Bytes())
}

// logTransition logs when a probe starts or stops failing, not at every
// probe: the kubelet probes every few seconds.
func (s *Server) logTransition(probe string, failed []string) {
	ok := len(failed) == 0
	s.probeMu.Lock()
	prev, seen := s.probeState[probe]
	s.probeState[probe] = ok
	s.probeMu.Unlock()
	if seen && prev == ok || !seen && ok {
		return
	}
	if ok {
		s.log.Info().Str("probe", probe).Msg("probe passing again")
		return
	}
	ev := s.log.Info()
	if probe != "readyz" {
		// Failing liveness gets the container restarted: worth a warning.
		// Failing readiness is routine at start and during shutdown.
		ev = s.log.Warn()
	}
	ev.Str("probe", probe).Strs("failed", failed).Msg("probe failing")
}

// singleSpaced keeps a reason on its "[-]name failed: reason" line
// whatever the error text contains, its words joined by single spaces (as
// kube-apiserver writes them, unlike echo.Line's escapes).
func singleSpaced(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}
