package appspec

import (
	"fmt"
	"time"
)

// Count is an app's worker count once the usable CPUs are known.
type Count struct {
	N int
	// Oversubscribed: a fixed N above the usable CPUs (worth a warning:
	// the extra workers only compete for the same quota).
	Oversubscribed bool
	// Capped: max or -N asked for more than MaxWorkers CPUs' worth of
	// workers and got MaxWorkers (worth a warning too).
	Capped bool
}

// Workers resolves the app's instance count against the usable CPUs and
// checks the settings that depend on it, which before CPU detection are
// unknown for max and -N: MinReady may not exceed the count (/readyz would
// never answer 200). The error is a *MinReadyError; the caller names the
// flag or key the values came from.
func (a *App) Workers(maxCPUs int) (Count, error) {
	n, over := a.Instances.Resolve(maxCPUs)
	c := Count{N: n, Oversubscribed: over, Capped: a.Instances.Capped(maxCPUs)}
	if a.MinReady > n {
		return c, &MinReadyError{App: a.Name, MinReady: a.MinReady, Workers: n, Instances: a.Instances}
	}
	return c, nil
}

// MinReadyError: more ready workers are required than the app has.
type MinReadyError struct {
	App       string
	MinReady  int
	Workers   int
	Instances Instances
	// Source names where MinReady came from (--min-ready, GM2_MIN_READY);
	// "" says "min ready".
	Source string
}

func (e *MinReadyError) Error() string {
	src, s := e.Source, "s"
	if src == "" {
		src = "min ready"
	}
	if e.Workers == 1 {
		s = ""
	}
	return fmt.Sprintf("app %q: %s %d is more than its %d worker%s (instances %s); accepted: a whole number from 1 to the worker count, or all",
		e.App, src, e.MinReady, e.Workers, s, e.Instances)
}

// ForkMinReady is the MinReady of a fork app, which runs exactly one
// process, given every app's default (--min-ready): at most 1, so that a
// default meant for the cluster apps (GM2_MIN_READY=2) leaves a fork app
// ready with its process; all (0) stays all, the same thing here.
func ForkMinReady(minReady int) int { return min(minReady, 1) }

// CheckTotal refuses a set of apps whose workers add up to more than
// MaxWorkers: the cap holds for the whole gm2-init, not only per app.
func CheckTotal(counts []int) error {
	total := 0
	for _, n := range counts {
		total += n
		if total > MaxWorkers {
			return fmt.Errorf("the apps ask for more than %d workers in all (gm2-init's cap); lower their instances", MaxWorkers)
		}
	}
	return nil
}

// StopSweep bounds what a shutdown takes after its kill timeout: the
// reaping after the final SIGKILL (ReapGrace), the answers gm2-init's own
// servers still owe (CloseGrace each: the health endpoints, the control
// socket), and the writing out of its last log lines to a stderr that
// takes no writes (LogFlush). The other processes of the container
// (orphans, daemons) get SIGTERM together with the workers and share
// their kill timeout, so only these are added.
const StopSweep = ReapGrace + 2*CloseGrace + LogFlush

// ReapGrace bounds the reaping after the final SIGKILL: a process in
// uninterruptible sleep may take its time, and the kernel kills what is
// left when PID 1 exits.
const ReapGrace = 500 * time.Millisecond

// CloseGrace bounds how long each of gm2-init's servers lets a request in
// flight be answered once the supervisor has ended (a client that does
// not read its answer).
const CloseGrace = 125 * time.Millisecond

// LogFlush bounds how long gm2-init's exit waits for its queued log lines
// when stderr takes no writes (its reader stopped reading).
const LogFlush = 250 * time.Millisecond

// WorstCaseStop is the longest a shutdown may take from SIGTERM to exit:
// the shutdown delay, the longest kill timeout of the apps, and the final
// reaping. It is what docker stop -t / terminationGracePeriodSeconds must
// exceed. The sum saturates instead of overflowing (the parsers bound each
// duration by MaxDuration; an App built by hand may not be).
func WorstCaseStop(shutdownDelay time.Duration, apps ...App) time.Duration {
	var kill time.Duration
	for _, a := range apps {
		kill = max(kill, a.KillTimeout)
	}
	return addSat(addSat(shutdownDelay, kill), StopSweep)
}

func addSat(a, b time.Duration) time.Duration {
	const maxD = time.Duration(1<<63 - 1)
	if a < 0 {
		a = 0
	}
	if b < 0 {
		b = 0
	}
	if a > maxD-b {
		return maxD
	}
	return a + b
}
