package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gm2-init/gm2-init/internal/control"
)

// The first argument alone is looked at: ls and list are status (pm2 ls),
// help is -h; after -- or a flag, a word is the program to supervise.
func TestRunCommand(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		ran       bool
		status    int
		stdout    string // a prefix
		stderr    string // a prefix
		stdoutHas string
	}{
		{args: []string{"help"}, ran: true, stdout: "gm2-init v1 — PID 1 for containers", stdoutHas: "\n       gm2-init status|ls|list [--json] "},
		{args: []string{"help", "reload"}, ran: true, stdout: control.Usage + "\n"},
		{args: []string{"help", "frob"}, ran: true, status: 2,
			stderr: "gm2-init help: no help for \"frob\"; accepted: gm2-init help, or gm2-init help status|ls|list|reload|scale\n"},
		// No control socket here (the test's PID namespace has no
		// gm2-init with one, or not in these directories): the answer
		// proves the word was taken for the command, not a program.
		{args: []string{"ls", "--bogus"}, ran: true, status: 2, stderr: "gm2-init ls: unexpected argument \"--bogus\"; usage: gm2-init ls [--json]\n"},
		{args: []string{"list", "--bogus"}, ran: true, status: 2, stderr: "gm2-init list: unexpected argument \"--bogus\"; usage: gm2-init list [--json]\n"},
		{args: []string{"help", "reload", "now"}, ran: true, status: 2,
			stderr: "gm2-init help: no help for \"reload now\"; accepted: gm2-init help, or gm2-init help status|ls|list|reload|scale\n"},
		{args: []string{"healthcheck", "readyz"}, ran: true, status: 2, stderr: "gm2-init healthcheck: PATH \"readyz\" must start with /"},
		{args: []string{"--", "ls"}},
		{args: []string{"--", "healthcheck"}},
		{args: []string{"-i", "2", "ls"}},
		{args: []string{"lsof"}},
		{args: nil},
	} {
		var out, errb bytes.Buffer
		status, ran := runCommand(tc.args, "v1", &out, &errb)
		if ran != tc.ran || status != tc.status || !strings.HasPrefix(out.String(), tc.stdout) || !strings.HasPrefix(errb.String(), tc.stderr) ||
			(tc.stderr == "" && errb.Len() > 0) || !strings.Contains(out.String(), tc.stdoutHas) {
			t.Errorf("%q: ran %v, status %d, stdout %q, stderr %q", tc.args, ran, status, out.String(), errb.String())
		}
	}
}
