package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxInstances bounds -i N: a typo (-i 1000000) must not fork-bomb the host.
const MaxInstances = 1024

// InstanceSpec is the parsed -i value, resolved against the CPU count later.
type InstanceSpec struct {
	// Relative is true for max, 0 and -N: the count follows the usable CPUs.
	Relative bool
	// N is the fixed count (Relative false) or the number of CPUs to leave
	// free (Relative true: 0 for max, 1 for -1 …).
	N int
}

// String gives back the canonical spelling.
func (s InstanceSpec) String() string {
	switch {
	case s.Relative && s.N == 0:
		return "max"
	case s.Relative:
		return "-" + strconv.Itoa(s.N)
	}
	return strconv.Itoa(s.N)
}

// ParseInstances parses max, 0, -N and N.
func ParseInstances(s string) (InstanceSpec, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	const accepted = "accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to 1024)"
	if v == "max" {
		return InstanceSpec{Relative: true}, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return InstanceSpec{}, errors.New(accepted)
	}
	switch {
	case n == 0:
		return InstanceSpec{Relative: true}, nil
	case n < 0 && n >= -MaxInstances:
		return InstanceSpec{Relative: true, N: -n}, nil
	case n > 0 && n <= MaxInstances:
		return InstanceSpec{N: n}, nil
	}
	return InstanceSpec{}, errors.New(accepted)
}

// Resolve turns the spec into a worker count given the usable CPUs (≥ 1).
// The second result is true when a fixed N exceeds the CPUs (worth a warning:
// extra workers only compete for the same quota).
func (s InstanceSpec) Resolve(maxCPUs int) (n int, oversubscribed bool) {
	if maxCPUs < 1 {
		maxCPUs = 1
	}
	if s.Relative {
		return max(1, maxCPUs-s.N), false
	}
	return s.N, s.N > maxCPUs
}

// ParseSignal accepts TERM, SIGTERM, sigterm and 15, and real-time signals as
// numbers. SIGKILL and SIGSTOP are refused: they cannot be handled, so they
// can never mean "stop gracefully".
func ParseSignal(s string) (syscall.Signal, error) {
	const accepted = "accepted: a signal name (TERM, SIGINT, QUIT, USR2 …) or number (15)"
	v := strings.ToUpper(strings.TrimSpace(s))
	var sig syscall.Signal
	if n, err := strconv.Atoi(v); err == nil {
		if n < 1 || n > 64 || (n < 32 && unix.SignalName(syscall.Signal(n)) == "") {
			return 0, errors.New(accepted)
		}
		sig = syscall.Signal(n)
	} else {
		if !strings.HasPrefix(v, "SIG") {
			v = "SIG" + v
		}
		sig = unix.SignalNum(v)
		if sig == 0 {
			return 0, errors.New(accepted)
		}
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGSTOP {
		return 0, fmt.Errorf("%s cannot be caught, so it cannot ask for a graceful stop; %s", unix.SignalName(sig), accepted)
	}
	return sig, nil
}
