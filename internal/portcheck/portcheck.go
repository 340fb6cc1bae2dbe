// Package portcheck tells, from /proc, whether a worker serves the sockets
// gm2-init passed it or listens somewhere else.
//
// Why: gm2-init holds every listening socket, so a worker that ignores the
// passed socket (puma without --bind-to-activated-sockets=only, gunicorn
// with --bind fd://3 or behind a shell that did not exec it, uvicorn
// without --fd 3) is not refused by anyone: it binds a port of its own,
// says READY=1, and the clients of the real port wait in gm2-init's accept
// queue until they time out. Checking once, after the worker is ready,
// which sockets its process tree holds and which TCP ports it listens on
// turns that silent hang into one log line that names the port and, for
// the servers we know, the fix.
//
// The check compares socket inodes: /proc/PID/fd/N of every process of the
// worker's tree links to "socket:[INODE]", gm2-init knows the inodes of its
// own listeners (InodeOf), and /proc/PID/net/tcp{,6} rows in the LISTEN
// state carry the inode of the socket that listens.
package portcheck

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/procfs"
)

// Listener is one socket gm2-init passes to its workers.
type Listener struct {
	Name  string // its LISTEN_FDNAMES name: "tcp-8080"
	Addr  string // the address it is bound to, for messages: "0.0.0.0:8080"
	Inode uint64 // the socket's inode (InodeOf)
}

// InodeOf returns the inode of the socket behind fd — the number that
// /proc/PID/fd links show as "socket:[INODE]" in every process holding it.
func InodeOf(fd uintptr) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		return 0, fmt.Errorf("fstat fd %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return 0, fmt.Errorf("fd %d is not a socket", fd)
	}
	return st.Ino, nil
}

// OwnPort is a TCP socket that listens in the worker's process tree and
// that gm2-init did not pass.
type OwnPort struct {
	Addr  netip.AddrPort
	Pid   int // a process of the tree that holds it
	Inode uint64
}

// Server names the servers the check knows a fix for.
type Server string

const (
	Gunicorn Server = "gunicorn"
	Puma     Server = "puma"
	Uvicorn  Server = "uvicorn"
	Node     Server = "node"
	Go       Server = "go"
	Unknown  Server = ""
)

// hints are the fixes, one line each, for a worker that does not serve
// the passed sockets (see the README's recipes).
var hints = map[Server]string{
	Gunicorn: "gunicorn: drop --bind (gunicorn reads LISTEN_FDS itself) and make sure a wrapper execs gunicorn",
	Puma:     "puma: add --bind-to-activated-sockets=only (and exec puma from any wrapper)",
	Uvicorn:  "uvicorn: use --fd 3 instead of --host/--port/--uds",
	Node:     "node: listen on the --listen port (the preload redirects it) or listen({ fd: 3 })",
	Go:       "Go: serve on fd 3 (net.FileListener(os.NewFile(3, …)) or go-systemd's activation.Listeners()), and exec the binary from any wrapper",
	Unknown:  "serve on the passed sockets (fd 3 on, LISTEN_FDS of them; LISTEN_PID is the pid gm2-init started, so a wrapper must exec the server)",
}

// WrongListenPid is a process that listens on a port of its own although
// it was started with the sockets of another process: its LISTEN_PID is
// not its pid, so libsystemd, gunicorn, puma and go-systemd in it ignore
// the passed sockets. That is what a wrapper that does not exec the server
// (`sh -c "gunicorn app:app; …"`) looks like.
type WrongListenPid struct {
	Pid       int
	ListenPid string // the LISTEN_PID it was started with
}

// Report is what Check found.
type Report struct {
	Pid int // the worker gm2-init started
	// Checked is false when the worker's own descriptors could not be read
	// (it exited, or /proc hides it): the check then has no evidence, and
	// Ready says true.
	Checked  bool
	Tree     []int      // the worker and its descendants at the time of the check
	Held     []Listener // passed sockets some process of the tree holds
	Missing  []Listener // passed sockets no process of the tree holds
	OwnPorts []OwnPort  // TCP ports the tree listens on that gm2-init did not pass
	// WrongListenPid lists the processes among OwnPorts' holders that were
	// started with another process's LISTEN_PID.
	WrongListenPid []WrongListenPid
	Server         Server  // the server detected in the tree (command line, executable)
	Errs           []error // what could not be read; the report is partial then
	// noFd: the server is uvicorn without --fd, which never serves an
	// inherited socket: a port of its own is where it serves, whatever
	// the port (see servesOwnPort).
	noFd bool
}

// Check reads procRoot ("/proc") for the process tree of pid and compares
// what it holds and listens on with the passed listeners. It reads, once:
// the tree (task/*/children), each process's fd links, the worker's
// net/tcp and net/tcp6, and the command line, executable and environment
// of the few processes that matter. A process that exits meanwhile is
// skipped.
func Check(procRoot string, pid int, passed []Listener) Report {
	r := Report{Pid: pid}
	r.Tree = procfs.Tree(procRoot, pid)

	holder := map[uint64]int{} // socket inode → a pid of the tree holding it
	for _, p := range r.Tree {
		socks, err := procfs.SocketInodes(procRoot, p)
		if err != nil {
			if p == pid {
				r.Errs = append(r.Errs, err)
			}
			continue // a descendant that exited since the walk
		}
		if p == pid {
			r.Checked = true
		}
		for ino := range socks {
			if _, ok := holder[ino]; !ok {
				holder[ino] = p
			}
		}
	}

	passedInode := map[uint64]bool{}
	for _, l := range passed {
		passedInode[l.Inode] = true
		if _, ok := holder[l.Inode]; ok {
			r.Held = append(r.Held, l)
		} else {
			r.Missing = append(r.Missing, l)
		}
	}

	rows, err := procfs.ListeningTCP(procRoot, pid)
	if err != nil {
		r.Errs = append(r.Errs, err)
	}
	for _, row := range rows {
		p, inTree := holder[row.Inode]
		if !inTree || passedInode[row.Inode] || row.Inode == 0 {
			continue
		}
		r.OwnPorts = append(r.OwnPorts, OwnPort{Addr: row.Local, Pid: p, Inode: row.Inode})
	}
	// sort.Slice, not slices.SortFunc: a generic sort of this struct
	// would be compiled for it alone (10 kB of the binary).
	sort.Slice(r.OwnPorts, func(i, j int) bool {
		a, b := r.OwnPorts[i], r.OwnPorts[j]
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Inode, b.Inode)) < 0
	})

	// The processes that listen on their own: was each started with its
	// own pid in LISTEN_PID?
	var listeners []int
	for _, o := range r.OwnPorts {
		if !slices.Contains(listeners, o.Pid) {
			listeners = append(listeners, o.Pid)
		}
	}
	for _, p := range listeners {
		v, ok, err := procfs.EnvValue(procRoot, p, "LISTEN_PID")
		if err == nil && ok && v != strconv.Itoa(p) {
			r.WrongListenPid = append(r.WrongListenPid, WrongListenPid{Pid: p, ListenPid: v})
		}
	}

	// The server: look first at the processes that listen on their own
	// (the one that got it wrong), then at the tree in order.
	order := append(slices.Clone(listeners), r.Tree...)
	r.Server = detect(procRoot, order)
	if r.Server == Uvicorn && len(r.OwnPorts) > 0 {
		r.noFd = !slices.ContainsFunc(order, func(p int) bool {
			args, err := procfs.Cmdline(procRoot, p)
			return err == nil && slices.ContainsFunc(args, func(a string) bool { return a == "--fd" || strings.HasPrefix(a, "--fd=") })
		})
	}
	return r
}

// detect names the first known server among pids: by command line (also
// a rewritten process title: "puma 5.6.5 (tcp://…)", "gunicorn: master
// [app]") or executable, and else a Go program by its build ID note.
func detect(procRoot string, pids []int) Server {
	for _, p := range pids {
		if s := serverOf(procRoot, p); s != Unknown {
			return s
		}
	}
	for _, p := range pids {
		if procfs.IsGoBinary(procRoot, p) {
			return Go
		}
	}
	return Unknown
}

func serverOf(procRoot string, pid int) Server {
	var words []string
	if args, err := procfs.Cmdline(procRoot, pid); err == nil {
		// The program, the script an interpreter runs (python3
		// /usr/bin/gunicorn, ruby /usr/bin/puma), a module (python3 -m
		// uvicorn), and the first word of a rewritten title.
		for i, a := range args {
			if i > 2 || (i == 2 && args[1] != "-m") {
				break
			}
			words = append(words, filepath.Base(a))
			if i == 0 {
				if f := strings.Fields(a); len(f) > 1 {
					words = append(words, filepath.Base(f[0]))
				}
			}
		}
	}
	words = append(words, procfs.ExeName(procRoot, pid))
	for _, w := range words {
		w = strings.TrimSuffix(w, ":")
		switch {
		case w == "gunicorn":
			return Gunicorn
		case w == "puma":
			return Puma
		case w == "uvicorn":
			return Uvicorn
		case w == "node" || w == "nodejs":
			return Node
		}
	}
	return Unknown
}

// Ready is false when listeners were passed and the worker's tree holds
// none of them: it cannot be serving them. A check that could not read the
// worker (Checked false) says true: no evidence is not a failure.
func (r Report) Ready() bool {
	return !r.Checked || len(r.Held) > 0 || len(r.Held)+len(r.Missing) == 0
}

// defaultPorts are the ports the known servers bind when they ignore the
// passed sockets: a port of the tree's own that is one of these is the
// server serving in the wrong place, not an admin port.
var defaultPorts = map[Server]uint16{Gunicorn: 8000, Uvicorn: 8000, Puma: 9292}

// servesOwnPort reports whether the detected server serves on a port of
// its own instead of the passed sockets: it listens on its default port,
// or it is uvicorn without --fd (which ignores inherited sockets, on
// whatever --port it was given).
func (r Report) servesOwnPort() bool { return r.noFd || r.onDefaultPort() }

// onDefaultPort reports whether the tree listens on the detected server's
// default port.
func (r Report) onDefaultPort() bool {
	want, ok := defaultPorts[r.Server]
	return ok && slices.ContainsFunc(r.OwnPorts, func(o OwnPort) bool { return o.Addr.Port() == want })
}

// Wrong is true when the worker most likely does not serve the passed
// sockets (log it as a warning): a passed socket is missing from its
// tree, a process in it ignores LISTEN_PID, or the known server listens on
// its default port. A port of its own next to the passed ones is not
// wrong by itself (an admin or metrics port): see OK.
func (r Report) Wrong() bool {
	return r.Checked && (len(r.Missing) > 0 || len(r.WrongListenPid) > 0 || r.servesOwnPort())
}

// OK is true when there is nothing to say: not Wrong, and no port of the
// tree's own listens.
func (r Report) OK() bool {
	return !r.Wrong() && (!r.Checked || len(r.OwnPorts) == 0)
}

// Hint is the fix for the detected server when the report is Wrong, else "".
func (r Report) Hint() string {
	if !r.Wrong() {
		return ""
	}
	return hints[r.Server]
}

// Message is one line for the log, naming the sockets and ports and ending
// with the hint; "" when OK.
func (r Report) Message() string {
	if r.OK() {
		return ""
	}
	var parts []string
	own := r.ownPortsText()
	switch {
	case len(r.Held) == 0 && len(r.Missing) > 0:
		s := fmt.Sprintf("worker %d holds none of the sockets gm2-init passed (%s), so it cannot be serving them", r.Pid, listenersText(r.Missing))
		if own != "" {
			s += "; it listens on " + own + " itself"
		}
		parts = append(parts, s)
	case len(r.Missing) > 0:
		parts = append(parts, fmt.Sprintf("worker %d closed or never took the passed sockets %s", r.Pid, listenersText(r.Missing)))
	}
	for _, w := range r.WrongListenPid {
		parts = append(parts, fmt.Sprintf("process %d of worker %d listens on %s and was started with LISTEN_PID=%s, not its own pid: "+
			"a wrapper did not exec it, so it ignores the passed sockets", w.Pid, r.Pid, r.portsOf(w.Pid), w.ListenPid))
	}
	if len(r.Held) > 0 && len(r.WrongListenPid) == 0 && own != "" {
		if r.servesOwnPort() {
			where := fmt.Sprintf("%s's default port", r.Server)
			if !r.onDefaultPort() {
				where = "uvicorn serves no inherited socket without --fd"
			}
			parts = append(parts, fmt.Sprintf("worker %d also listens on %s, which gm2-init did not pass: %s, "+
				"so it is probably serving there instead of on the passed sockets", r.Pid, own, where))
		} else {
			parts = append(parts, fmt.Sprintf("worker %d also listens on %s, which gm2-init did not pass "+
				"(fine for an admin or metrics port; a port meant for clients belongs in --listen)", r.Pid, own))
		}
	}
	if h := r.Hint(); h != "" {
		parts = append(parts, h)
	}
	return strings.Join(parts, "; ")
}

// Err joins what could not be read (nil when everything was).
func (r Report) Err() error { return errors.Join(r.Errs...) }

func (r Report) ownPortsText() string {
	var s []string
	for _, o := range r.OwnPorts {
		s = append(s, fmt.Sprintf("%s (pid %d)", o.Addr, o.Pid))
	}
	return strings.Join(s, ", ")
}

func (r Report) portsOf(pid int) string {
	var s []string
	for _, o := range r.OwnPorts {
		if o.Pid == pid {
			s = append(s, o.Addr.String())
		}
	}
	return strings.Join(s, ", ")
}

func listenersText(ls []Listener) string {
	var s []string
	for _, l := range ls {
		s = append(s, fmt.Sprintf("%s %s", l.Name, l.Addr))
	}
	return strings.Join(s, ", ")
}
