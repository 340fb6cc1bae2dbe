package config

import (
	"fmt"
	"io"
)

// Usage writes the help text, from the options table.
func Usage(w io.Writer, version string) {
	fmt.Fprintf(w, "gm2-init %s — PID 1 for containers, with PM2-style cluster mode for any language\n\n", version)
	fmt.Fprintf(w, "Usage: gm2-init [flags] -- COMMAND [ARGS...]\n")
	fmt.Fprintf(w, "       gm2-init --config FILE [flags] [-- COMMAND [ARGS...]]   (the apps of a PM2 process file)\n")
	fmt.Fprintf(w, "       gm2-init status|ls|list [--json]     (inside the container: the running gm2-init's workers)\n")
	fmt.Fprintf(w, "       gm2-init reload [APP...|all]         (rolling reload of these apps, every app without APP)\n")
	fmt.Fprintf(w, "       gm2-init scale APP N|+N|-N           (set, add or remove workers of APP)\n")
	fmt.Fprintf(w, "       gm2-init healthcheck [PATH [ADDR]]   (probe the health endpoint, for Docker HEALTHCHECK)\n")
	fmt.Fprintf(w, "       gm2-init help [COMMAND]              (this help, or a command's)\n")
	fmt.Fprintf(w, "A first argument that names a command runs it; to supervise a program of that name, put -- first: gm2-init -- ls\n\n")
	fmt.Fprintf(w, "Flags (each also read from the environment variable shown; a flag wins over the variable):\n")
	for _, o := range options {
		name := "    --" + o.long
		if o.short != "" {
			name = "-" + o.short + ", --" + o.long
		}
		switch {
		case o.kind == switchKind && o.scope != actionScope:
			name += "[=false]"
		case o.arg != "":
			name += " " + o.arg
		}
		line := o.help
		if o.def != "" && o.kind != switchKind {
			line += " (default " + o.def + ")"
		}
		if e := o.env(); e != "" {
			line += " [" + e + "]"
		}
		fmt.Fprintf(w, "  %s\n      %s\n", name, line)
	}
	fmt.Fprintf(w, "\nA switch takes its value after '=': --wait-ready, --wait-ready=false (never --wait-ready false).\n")
	fmt.Fprintf(w, "An option is given once; only --listen repeats.\n")
	fmt.Fprintf(w, "Durations take a unit (500ms, 8s, 1m30s) and are at most 24h.\n")
	fmt.Fprintf(w, "Bad input: one line on stderr, exit status 2, nothing started.\n")
	fmt.Fprintf(w, "\nSignals: TERM/INT graceful shutdown, HUP rolling reload, TTIN/TTOU one worker more/less,\nQUIT/USR1/USR2/WINCH forwarded to every worker (QUIT then shuts down).\n")
}
