package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

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
