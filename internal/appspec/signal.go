package appspec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// StopSignals are the signals a worker may be asked to stop with. Each is
// one that servers and runtimes treat as "finish and exit" (or that an app
// can choose to: HUP, USR1, USR2, WINCH are what some servers use for a
// graceful stop — nginx QUIT, Apache WINCH). Others make no sense here: KILL
// and STOP cannot be caught; TSTP, TTIN and TTOU stop a process instead of
// ending it; CHLD and URG are ignored by default, and real-time signals
// mean whatever an app decides. With any of those,
// every stop would wait the whole kill timeout and end in a SIGKILL.
var StopSignals = []syscall.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// StopSignalAccepted lists the forms ParseStopSignal takes, for messages.
const StopSignalAccepted = "accepted: TERM, INT, QUIT, HUP, USR1, USR2 or WINCH (also as SIGTERM, term, or the number: 15, 2, 3, 1, 10, 12, 28)"

// ParseStopSignal accepts a signal of StopSignals in any usual spelling:
// TERM, SIGTERM, sigterm, 15.
func ParseStopSignal(s string) (syscall.Signal, error) {
	v := strings.ToUpper(strings.TrimSpace(s))
	var sig syscall.Signal
	if n, err := strconv.Atoi(v); err == nil {
		if n < 1 || n > 64 {
			return 0, errors.New(StopSignalAccepted)
		}
		sig = syscall.Signal(n)
	} else {
		if !strings.HasPrefix(v, "SIG") {
			v = "SIG" + v
		}
		if sig = unix.SignalNum(v); sig == 0 {
			return 0, errors.New(StopSignalAccepted)
		}
	}
	for _, ok := range StopSignals {
		if sig == ok {
			return sig, nil
		}
	}
	name := unix.SignalName(sig)
	if name == "" {
		name = "signal " + strconv.Itoa(int(sig))
	}
	switch sig {
	case syscall.SIGKILL, syscall.SIGSTOP:
		return 0, fmt.Errorf("%s cannot be caught, so it cannot ask for a graceful stop; %s", name, StopSignalAccepted)
	case syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return 0, fmt.Errorf("%s suspends a process instead of stopping it; %s", name, StopSignalAccepted)
	}
	return 0, fmt.Errorf("%s does not ask a server to stop; %s", name, StopSignalAccepted)
}
