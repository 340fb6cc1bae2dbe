// Command minreaper is the smallest Go init that reaps: it starts its
// command, and on every SIGCHLD calls wait4(-1, WNOHANG) until nothing is
// left to reap, exiting when the command exits. No supervision, no logging.
//
// The reaping benchmark runs it next to gm2-init and tini: the gap between
// it and tini is what Go itself costs (its signal delivery and syscall
// path), the floor for any init written in Go; the gap between gm2-init
// and it is gm2-init's own.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: minreaper COMMAND [ARGS...]")
		os.Exit(2)
	}
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "minreaper:", err)
		os.Exit(127)
	}
	for range sigchld {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if pid == cmd.Process.Pid {
				os.Exit(ws.ExitStatus())
			}
		}
	}
}
