package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/control"
	"github.com/gm2-init/gm2-init/internal/echo"
	"github.com/gm2-init/gm2-init/internal/health"
)

// runCommand runs the command that args[0] names, if it names one:
// healthcheck, the control commands (status and its PM2 spellings ls and
// list, reload, scale) and help. Only the very first argument is looked
// at: after a flag or after --, a word is the program to supervise
// (`gm2-init -- ls` runs /bin/ls as a worker). ran is false when args[0]
// is no command.
func runCommand(args []string, version string, stdout, stderr io.Writer) (status int, ran bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch {
	case args[0] == "healthcheck":
		// For Docker HEALTHCHECK in images without curl.
		return health.CheckCommand(args[1:], config.HealthCheckAddr(), stderr), true
	case control.IsCommand(args[0]):
		// docker exec, kubectl exec: ask the gm2-init of this PID
		// namespace over its control socket.
		return control.Main(args, stdout, stderr), true
	case args[0] == "help":
		return help(args[1:], version, stdout, stderr), true
	}
	return 0, false
}

// help runs `gm2-init help [COMMAND]`: gm2-init's help (the same as -h),
// or a control command's.
func help(args []string, version string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		config.Usage(stdout, version)
		return 0
	case len(args) == 1 && control.IsCommand(args[0]):
		fmt.Fprintln(stdout, control.Usage)
		return 0
	}
	fmt.Fprintf(stderr, "gm2-init help: no help for %s; accepted: gm2-init help, or gm2-init help status|ls|list|reload|scale\n",
		echo.Quote(strings.Join(args, " ")))
	return exitUsage
}
