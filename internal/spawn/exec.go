package spawn

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/preload"
)

// ExecArg is the hidden first argument with which gm2-init re-executes
// itself to start a worker: `gm2-init ExecArg PATH ARGV0 ARGS...`.
//
// Why a re-exec: the socket-activation protocol wants LISTEN_PID to equal the
// pid of the process that reads the descriptors, and libsystemd, gunicorn,
// puma and go-systemd ignore the sockets otherwise. A worker's pid is only
// known after fork, and Go offers no hook between fork and exec to set an
// environment variable. So the child first runs gm2-init again, which sets
// LISTEN_PID to its own pid and execve()s the app in place: the pid stays the
// same, and the app is the worker gm2-init watches and signals.
//
// The shim is a Go program: in a container whose pids cgroup is full, its
// runtime cannot start the threads it needs before main and throws, with
// the runtime's stacks on the app's stderr (a few dozen lines), which no
// GOTRACEBACK setting shortens: a throw of the runtime always prints them.
// The worker then exits with status 2, and gm2-init's backoff spaces the
// attempts. Layout.NeedsShim keeps the shim to the workers that need it.
const ExecArg = "__gm2_exec__"

// ExecMain is the whole program of the re-executed child. It only returns
// (with the status a shell would use) when the execve fails.
func ExecMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "gm2-init: internal exec: missing command")
		return 127
	}
	path, argv := args[0], args[1:]
	env := preload.ExpandImport(preload.RestoreFile(os.Environ()))
	if _, ok := os.LookupEnv("LISTEN_FDS"); ok {
		env = setEnv(env, "LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	err := unix.Exec(path, argv, env)
	fmt.Fprintf(os.Stderr, "gm2-init: exec %s: %v\n", path, err)
	if errors.Is(err, unix.ENOENT) {
		return 127
	}
	return 126
}

// setEnv returns env with key set to value, replacing any earlier value.
func setEnv(env []string, key, value string) []string {
	prefix := key + "="
	out := env[:0:0]
	for _, kv := range env {
		if len(kv) >= len(prefix) && kv[:len(prefix)] == prefix {
			continue
		}
		out = append(out, kv)
	}
	return append(out, prefix+value)
}
