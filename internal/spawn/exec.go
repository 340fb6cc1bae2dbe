package spawn

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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
const ExecArg = "__gm2_exec__"

// The shim is a Go program, and the Go runtime starts a few threads before
// main: in a container whose pids cgroup is full, that fails and the runtime
// throws, by default with a dump of every goroutine — hundreds of lines per
// attempt on the app's stderr. gm2-init therefore starts the shim with
// GOTRACEBACK=none (two lines: "runtime: failed to create new OS thread"),
// and the shim gives the app back the GOTRACEBACK it had: envShimTraceback
// carries it, or envShimNoTraceback says there was none.
const (
	envShimTraceback   = "GM2_SHIM_GOTRACEBACK"
	envShimNoTraceback = "GM2_SHIM_NO_GOTRACEBACK"
)

// shimEnv returns env for the shim: GOTRACEBACK=none, with the app's own
// value kept aside for ExecMain.
func shimEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	orig, had := "", false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOTRACEBACK="); ok {
			orig, had = v, true
			continue
		}
		out = append(out, kv)
	}
	if had {
		out = append(out, envShimTraceback+"="+orig)
	} else {
		out = append(out, envShimNoTraceback+"=1")
	}
	return append(out, "GOTRACEBACK=none")
}

// appEnv undoes shimEnv.
func appEnv(env []string) []string {
	orig, had, marked := "", false, false
	out := env[:0:0]
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "GOTRACEBACK="):
			continue
		case strings.HasPrefix(kv, envShimTraceback+"="):
			orig, had, marked = kv[len(envShimTraceback)+1:], true, true
			continue
		case strings.HasPrefix(kv, envShimNoTraceback+"="):
			marked = true
			continue
		}
		out = append(out, kv)
	}
	if had || !marked {
		// Not started by a gm2-init that set the marks: leave it as found.
		if !marked {
			return env
		}
		out = append(out, "GOTRACEBACK="+orig)
	}
	return out
}

// ExecMain is the whole program of the re-executed child. It only returns
// (with the status a shell would use) when the execve fails.
func ExecMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "gm2-init: internal exec: missing command")
		return 127
	}
	path, argv := args[0], args[1:]
	env := preload.ExpandImport(preload.RestoreFile(appEnv(os.Environ())))
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
