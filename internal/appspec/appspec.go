// Package appspec describes one app that gm2-init runs: what the command line
// (`gm2-init [flags] -- CMD`) or a PM2 process file (`--config FILE`)
// declares for it, validated.
//
// It sits between the parsers and the supervisor so that neither depends on
// the other: config and procfile produce Apps, main resolves their instance
// counts against the usable CPUs, and spawn runs them. It holds values only;
// nothing here touches the system.
package appspec

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// MaxWorkers bounds the number of workers of one gm2-init, whatever asks for
// them: -i N, -i max with --cpus, SIGTTIN, `gm2-init scale`, the sum over the
// apps of a process file. A typo (-i 1000000, --cpus 100000) must not
// fork-bomb the host.
const MaxWorkers = 1024

// ExecMode is PM2's exec_mode.
type ExecMode string

const (
	// Cluster runs Instances workers that share the app's ports.
	Cluster ExecMode = "cluster"
	// Fork runs exactly one instance and shares nothing (PM2's fork mode).
	Fork ExecMode = "fork"
)

// App is one validated app.
type App struct {
	// Name identifies the app in logs, /status, /metrics (label app) and
	// the control commands. Unique within one gm2-init. For a single
	// command it is derived from the command (see NameFromCommand).
	Name string

	Command []string // argv as the user wrote it; Command[0] is the program
	Path    string   // Command[0] resolved through PATH
	Dir     string   // working directory; "" = gm2-init's own
	// Env holds KEY=VALUE pairs set for this app's workers on top of the
	// environment gm2-init inherited (a process file's env / env_NAME).
	Env []string

	Instances Instances
	ExecMode  ExecMode
	// Listen are the sockets bound before any worker starts and passed
	// to every worker of this app (--listen, or the process file's listen
	// key).
	Listen []sockets.Spec

	StopSignal  syscall.Signal
	KillTimeout time.Duration
	Restart     RestartPolicy
	// StopExitCodes are exit codes after which the worker is not
	// restarted (PM2's stop_exit_codes), whatever Restart says.
	StopExitCodes []int
	MinUptime     time.Duration
	MaxRestarts   int
	// RestartDelay, when set, replaces the first step of the crash backoff
	// (PM2's restart_delay).
	RestartDelay  time.Duration
	WaitReady     bool
	ListenTimeout time.Duration
	ReloadBatch   int
	MinReady      int    // ready workers /readyz needs for this app; 0 = every slot
	NodePreload   string // auto, on or off
	// MaxMemory is --max-memory-restart in bytes; 0 = off.
	MaxMemory int64
	// InstanceVar names one more variable that carries the instance number
	// (PM2's instance_var); GM2_INSTANCE and NODE_APP_INSTANCE are always set.
	InstanceVar string
}

// NameFromCommand derives an app name from a command line, as PM2 names an
// app after its script: `node server.js` → "server", `npm start` → "npm",
// `gunicorn app:app` → "gunicorn".
func NameFromCommand(cmd []string) string {
	if len(cmd) == 0 {
		return "app"
	}
	prog := base(cmd[0])
	switch strings.TrimRight(prog, "0123456789.") {
	case "node", "nodejs", "python", "python3", "ruby", "bun", "deno", "php":
		for _, a := range cmd[1:] {
			if !strings.HasPrefix(a, "-") {
				return clean(strings.TrimSuffix(strings.TrimSuffix(base(a), ".js"), ".py"))
			}
		}
	}
	return clean(prog)
}

func base(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// clean keeps a name usable as a Prometheus label value and on a command
// line: letters, digits, '-', '_' and '.'.
func clean(s string) string {
	out := strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == '_' || r == '.', r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			return r
		}
		return '_'
	}, s)
	if out == "" {
		return "app"
	}
	return out
}

// Instances is a parsed instance count (-i, PM2's instances), resolved
// against the usable CPUs later.
type Instances struct {
	// Relative is true for max, 0 and -N: the count follows the usable CPUs.
	Relative bool
	// N is the fixed count (Relative false) or the number of CPUs to leave
	// free (Relative true: 0 for max, 1 for -1 …).
	N int
}

// String gives back the canonical spelling.
func (s Instances) String() string {
	switch {
	case s.Relative && s.N == 0:
		return "max"
	case s.Relative:
		return "-" + strconv.Itoa(s.N)
	}
	return strconv.Itoa(s.N)
}

// InstancesAccepted lists the forms ParseInstances takes, for messages.
var InstancesAccepted = fmt.Sprintf("accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to %d)", MaxWorkers)

// ParseInstances parses max, 0, -N and N (1…MaxWorkers).
func ParseInstances(s string) (Instances, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "max" {
		return Instances{Relative: true}, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return Instances{}, fmt.Errorf("%s", InstancesAccepted)
	}
	switch {
	case n == 0:
		return Instances{Relative: true}, nil
	case n < 0 && n >= -MaxWorkers:
		return Instances{Relative: true, N: -n}, nil
	case n > 0 && n <= MaxWorkers:
		return Instances{N: n}, nil
	}
	return Instances{}, fmt.Errorf("%s", InstancesAccepted)
}

// Resolve turns the spec into a worker count given the usable CPUs (≥ 1),
// never above MaxWorkers (a host with more CPUs than that gets MaxWorkers
// for max: see Capped). The second result is true when a fixed N exceeds
// the CPUs (worth a warning: extra workers only compete for the same quota).
func (s Instances) Resolve(maxCPUs int) (n int, oversubscribed bool) {
	if maxCPUs < 1 {
		maxCPUs = 1
	}
	if s.Relative {
		return min(MaxWorkers, max(1, maxCPUs-s.N)), false
	}
	return min(MaxWorkers, s.N), s.N > maxCPUs
}

// Capped tells whether Resolve(maxCPUs) cut the count to MaxWorkers.
func (s Instances) Capped(maxCPUs int) bool {
	if s.Relative {
		if maxCPUs < 1 {
			return false
		}
		return maxCPUs-s.N > MaxWorkers
	}
	return s.N > MaxWorkers
}

// RestartPolicy says when a worker that exited on its own is started again.
type RestartPolicy string

const (
	Always    RestartPolicy = "always"     // every exit (a server should never end)
	OnFailure RestartPolicy = "on-failure" // a non-zero status or a signal
	Never     RestartPolicy = "never"      // the slot stays empty
)

// ParseRestartPolicy accepts always, on-failure and never.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	switch p := RestartPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case Always, OnFailure, Never:
		return p, nil
	}
	return "", fmt.Errorf("unknown restart policy %q (accepted: always, on-failure, never)", s)
}

// Restarts tells whether an exit with this code is followed by a restart.
func (p RestartPolicy) Restarts(code int) bool {
	switch p {
	case Always:
		return true
	case OnFailure:
		return code != 0
	}
	return false
}
