package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gm2-init/gm2-init/internal/echo"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/appspec"
)

// Exit statuses of the client commands.
const (
	exitOK     = 0
	exitFailed = 1 // refused, failed, or no gm2-init to talk to
	exitUsage  = 2
)

const (
	// maxResponse bounds the answer read (a snapshot of 1,024 workers is
	// well under 1 MB).
	maxResponse = 16 << 20
	// statusTimeout bounds a status command from connect to answer.
	statusTimeout = 10 * time.Second
)

// IsCommand tells whether a first argument is one of the control commands
// Main runs: status (and its PM2 spellings ls and list), reload, scale.
func IsCommand(arg string) bool {
	switch arg {
	case "status", "ls", "list", "reload", "scale":
		return true
	}
	return false
}

// Usage is the help of the control commands.
const Usage = `usage: gm2-init status [--json]       the apps' workers: pid, state, uptime, restarts, CPU, memory
                                      (--json: the document GET /status serves); also ls, list
       gm2-init reload [APP...|all]   rolling reload of these apps (api web, or api,web), every app
                                      without APP or with all, as SIGHUP does
       gm2-init scale APP N|+N|-N     set, add or remove workers of APP (1 to 1024); APP all: the one app
Run inside the container of a gm2-init (docker exec, kubectl exec). Exit status: 0 done,
1 refused or failed, 2 bad usage.`

// Main runs `gm2-init status|ls|list|reload|scale …` (args[0] is the
// command) and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(args, stdout, stderr, clientOptions{dirs: DefaultDirs()})
}

type clientOptions struct {
	dirs []string
}

func run(args []string, stdout, stderr io.Writer, o clientOptions) int {
	if len(args) == 0 || !IsCommand(args[0]) {
		fmt.Fprintln(stderr, "gm2-init: "+strings.ReplaceAll(Usage, "\n", "\n  "))
		return exitUsage
	}
	// Messages name the command as typed (gm2-init ls: …).
	typed, rest := args[0], args[1:]
	cmd := typed
	if cmd == "ls" || cmd == "list" {
		cmd = "status"
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "gm2-init %s: %s\n", typed, echo.Line(fmt.Sprintf(format, a...)))
		return code
	}
	for _, a := range rest {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprintln(stdout, Usage)
			return exitOK
		}
	}
	req := request{Cmd: cmd}
	asJSON := false
	switch cmd {
	case "status":
		for _, a := range rest {
			if a != "--json" && a != "-json" {
				return fail(exitUsage, "unexpected argument %q; usage: gm2-init %s [--json]", a, typed)
			}
			asJSON = true
		}
	case "reload":
		for _, a := range rest {
			if strings.HasPrefix(a, "-") {
				return fail(exitUsage, "unknown flag %q; usage: gm2-init reload [APP...|all]", a)
			}
			// api,web as --only takes them; empty parts are nothing.
			names := 0
			for _, part := range strings.Split(a, ",") {
				if part = strings.TrimSpace(part); part != "" {
					req.Apps = append(req.Apps, part)
					names++
				}
			}
			if names == 0 {
				return fail(exitUsage, "no app name in %q; usage: gm2-init reload [APP...|all] (apps separated by spaces or commas)", a)
			}
		}
	case "scale":
		if len(rest) != 2 {
			return fail(exitUsage, "usage: gm2-init scale APP N (N: a count from 1 to %d, or +N / -N to add or remove workers)", appspec.MaxWorkers)
		}
		req.App = rest[0]
		v := rest[1]
		req.Delta = strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-")
		n, err := strconv.Atoi(v)
		if err != nil || (!req.Delta && (n < 1 || n > appspec.MaxWorkers)) || (req.Delta && (n == 0 || n < -appspec.MaxWorkers || n > appspec.MaxWorkers)) {
			return fail(exitUsage, "invalid count %q: accepted: a count from 1 to %d, or +N / -N to add or remove workers", v, appspec.MaxWorkers)
		}
		req.N = n
	}

	conn, err := dial(o.dirs)
	if err != nil {
		return fail(exitFailed, "%v", err)
	}
	defer conn.Close()
	deadline := statusTimeout
	if cmd != "status" {
		deadline = DefaultWaitTimeout + time.Minute
	}
	conn.SetDeadline(time.Now().Add(deadline))
	b, _ := json.Marshal(req)
	_, werr := conn.Write(append(b, '\n'))
	// Read even when the write failed: a server that refuses (busy, another
	// uid) answers and hangs up without reading.
	line, err := bufio.NewReader(io.LimitReader(conn, maxResponse)).ReadBytes('\n')
	if err != nil {
		if werr != nil {
			return fail(exitFailed, "send to gm2-init: %v", werr)
		}
		return fail(exitFailed, "no answer from gm2-init: %v", err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fail(exitFailed, "unreadable answer from gm2-init: %v", err)
	}
	if !resp.OK {
		return fail(exitFailed, "%s", resp.Error)
	}
	switch {
	case cmd == "status" && asJSON:
		// Indented as GET /status serves it (the answer line carries it
		// compacted): byte for byte the same document.
		var doc bytes.Buffer
		if err := json.Indent(&doc, resp.Status, "", "  "); err != nil {
			return fail(exitFailed, "unreadable status from gm2-init: %v", err)
		}
		doc.WriteByte('\n')
		stdout.Write(doc.Bytes())
	case cmd == "status":
		if err := renderTable(stdout, resp.Status); err != nil {
			return fail(exitFailed, "%v", err)
		}
	default:
		fmt.Fprintln(stdout, resp.Message)
	}
	return exitOK
}

// dial finds and checks the control socket of this PID namespace (see the
// package comment).
func dial(dirs []string) (*net.UnixConn, error) {
	key, err := namespaceKey()
	if err != nil {
		return nil, err
	}
	var refused, others []error
	for _, base := range dirs {
		dir := dirName(base, key)
		path := filepath.Join(dir, socketName)
		if _, err := os.Lstat(path); err != nil {
			if isRefused(err) {
				refused = append(refused, permissionError(dir))
			}
			continue
		}
		// A connect to a unix socket never waits (a full backlog is
		// EAGAIN), so it needs no timeout; DialUnix, unlike net.Dial,
		// does not link net's name resolver.
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			if isRefused(err) {
				refused = append(refused, permissionError(dir))
			} else if errors.Is(err, syscall.ECONNREFUSED) {
				others = append(others, fmt.Errorf("no gm2-init answers at %s (left by a gm2-init that was killed?)", path))
			} else {
				others = append(others, fmt.Errorf("connect to %s: %w", path, err))
			}
			continue
		}
		if err := verifyServer(c, dir); err != nil {
			c.Close()
			others = append(others, fmt.Errorf("%s: %w", path, err))
			continue
		}
		return c, nil
	}
	switch {
	case len(refused) > 0:
		return nil, refused[0]
	case len(others) > 0:
		return nil, others[0]
	}
	return nil, fmt.Errorf("no gm2-init control socket for this PID namespace (looked for gm2-init-ctl.%s in %s): run the command inside the container of a gm2-init (docker exec, kubectl exec); a gm2-init that found none of these directories writable has none (its log says so: use kill -HUP 1 to reload, /status on its health port)", key, strings.Join(dirs, ", "))
}

// permissionError says who may control the gm2-init whose directory this
// user cannot enter.
func permissionError(dir string) error {
	var st unix.Stat_t
	owner := ""
	if unix.Stat(dir, &st) == nil {
		owner = fmt.Sprintf(" and uid %d, the user gm2-init runs as,", st.Uid)
	}
	return fmt.Errorf("permission denied: only root%s may control gm2-init (you are uid %d)", owner, os.Geteuid())
}

// verifyServer checks that the process at the other end is of this very
// PID namespace, and that the socket's directory belongs to it and to no
// one else.
func verifyServer(c *net.UnixConn, dir string) error {
	cred, err := peerCred(c)
	if err != nil {
		return fmt.Errorf("cannot read the server's credentials: %w", err)
	}
	if cred.Pid == 0 {
		return errors.New("served by a process outside this PID namespace; not this container's gm2-init")
	}
	same, err := sameNamespace(int(cred.Pid))
	if err != nil {
		return fmt.Errorf("cannot check the server (pid %d): %w", cred.Pid, err)
	}
	if !same {
		return fmt.Errorf("served by pid %d of a nested PID namespace; not this container's gm2-init", cred.Pid)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != cred.Uid || st.Mode&0o022 != 0 {
		return fmt.Errorf("directory %s is not private to the server's user (uid %d); not trusted", dir, cred.Uid)
	}
	return nil
}
