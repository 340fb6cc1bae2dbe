package portcheck

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary play a worker (see helper).
const helperEnv = "GM2_PORTCHECK_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helper(mode)
		return
	}
	os.Exit(m.Run())
}

// helper is a worker that got a listening socket as fd 3:
//
//	hold    keeps it (a good worker)
//	own     closes it and listens on 127.0.0.1:0 itself (puma without
//	        --bind-to-activated-sockets=only)
//	ignore  keeps it unused and listens on 127.0.0.1:0 itself (a server
//	        that ignores LISTEN_FDS: gunicorn behind a shell that forked it)
//
// It prints "ready ADDR" and waits for its stdin to close.
func helper(mode string) {
	addr := "-"
	if mode == "own" {
		if err := syscall.Close(3); err != nil {
			fmt.Println("close fd 3:", err)
			os.Exit(1)
		}
	}
	if mode == "own" || mode == "ignore" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		defer ln.Close()
		addr = ln.Addr().String()
	}
	fmt.Println("ready", addr)
	io.Copy(io.Discard, os.Stdin)
}

// passedListener is what gm2-init holds: a listening socket and its inode.
func passedListener(t *testing.T) (*os.File, Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ino, err := InodeOf(f.Fd())
	if err != nil {
		t.Fatal(err)
	}
	return f, Listener{Name: "tcp-test", Addr: ln.Addr().String(), Inode: ino}
}

// startWorker starts argv with the passed socket as fd 3, waits for the
// helper's "ready" line, and returns the process and the address the
// helper listens on itself ("-" for none).
func startWorker(t *testing.T, fd3 *os.File, mode string, argv ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{fd3}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		f := strings.Fields(s)
		if len(f) != 2 || f[0] != "ready" {
			t.Fatalf("helper said %q", s)
		}
		return cmd, f[1]
	case <-time.After(10 * time.Second):
		t.Fatal("the helper did not start within 10 s")
	}
	return nil, ""
}

func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestCheckRealWorkerHoldingThePassedSocket(t *testing.T) {
	fd3, l := passedListener(t)
	cmd, _ := startWorker(t, fd3, "hold", self(t))
	r := Check("/proc", cmd.Process.Pid, []Listener{l})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if !r.Checked || !slices.Equal(r.Held, []Listener{l}) || len(r.Missing) != 0 || len(r.OwnPorts) != 0 {
		t.Errorf("report %+v, want the passed socket held and nothing else", r)
	}
	if !r.Ready() || !r.OK() || r.Wrong() || r.Message() != "" || r.Hint() != "" {
		t.Errorf("Ready %v OK %v Wrong %v Message %q Hint %q; want ready and nothing to say", r.Ready(), r.OK(), r.Wrong(), r.Message(), r.Hint())
	}
	if r.Server != Go {
		t.Errorf("server %q, want %q (the helper is the Go test binary)", r.Server, Go)
	}
}

func TestCheckRealWorkerThatBoundItsOwnPort(t *testing.T) {
	fd3, l := passedListener(t)
	cmd, addr := startWorker(t, fd3, "own", self(t))
	pid := cmd.Process.Pid
	r := Check("/proc", pid, []Listener{l})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	want := []OwnPort{{Addr: netip.MustParseAddrPort(addr), Pid: pid, Inode: r.OwnPorts[0].Inode}}
	if len(r.Held) != 0 || !slices.Equal(r.Missing, []Listener{l}) || !slices.Equal(r.OwnPorts, want) {
		t.Errorf("report %+v; want the passed socket missing and own port %v", r, want)
	}
	if r.Ready() || r.OK() || !r.Wrong() {
		t.Errorf("Ready %v OK %v Wrong %v; want not ready, wrong", r.Ready(), r.OK(), r.Wrong())
	}
	msg := r.Message()
	for _, s := range []string{"holds none", l.Name, addr, "fd 3"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q does not mention %q", msg, s)
		}
	}
}

// A shell that runs the server without exec: the shell is the worker (it
// got LISTEN_PID = its pid), the server its child with the shell's
// LISTEN_PID, holding fd 3 unused and listening on a port of its own.
func TestCheckRealServerBehindANonExecWrapper(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	fd3, l := passedListener(t)
	cmd, addr := startWorker(t, fd3, "ignore", sh, "-c", `LISTEN_PID=$$ "$0"; exit $?`, self(t))
	shPid := cmd.Process.Pid
	r := Check("/proc", shPid, []Listener{l})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if len(r.Tree) != 2 || len(r.OwnPorts) != 1 {
		t.Fatalf("report %+v; want a tree of sh and the server, and one own port", r)
	}
	server := r.Tree[1]
	if !slices.Equal(r.Held, []Listener{l}) || r.OwnPorts[0].Addr.String() != addr || r.OwnPorts[0].Pid != server {
		t.Errorf("report %+v; want fd 3 held and %s listened on by pid %d", r, addr, server)
	}
	if want := []WrongListenPid{{Pid: server, ListenPid: strconv.Itoa(shPid)}}; !slices.Equal(r.WrongListenPid, want) {
		t.Errorf("WrongListenPid %v, want %v", r.WrongListenPid, want)
	}
	if !r.Ready() || r.OK() || !r.Wrong() || r.Server != Go {
		t.Errorf("Ready %v OK %v Wrong %v Server %q; want ready (it holds fd 3) but wrong, Go", r.Ready(), r.OK(), r.Wrong(), r.Server)
	}
	t.Logf("message: %s", r.Message())
	if msg := r.Message(); !strings.Contains(msg, "did not exec") || !strings.Contains(msg, "LISTEN_PID="+strconv.Itoa(shPid)) {
		t.Errorf("message %q does not explain the wrapper", msg)
	}
}

func TestCheckWorkerThatIsGone(t *testing.T) {
	cmd := exec.Command(self(t))
	cmd.Env = append(os.Environ(), helperEnv+"=hold") // exits at once: stdin is /dev/null
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	r := Check("/proc", cmd.Process.Pid, []Listener{{Name: "tcp-1", Inode: 1}})
	if r.Checked || !r.Ready() || !r.OK() || r.Err() == nil {
		t.Errorf("report %+v (err %v); want unchecked, ready, OK, with the read error", r, r.Err())
	}
}

func TestInodeOf(t *testing.T) {
	f, l := passedListener(t)
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Ino != l.Inode {
		t.Errorf("InodeOf = %d, fstat says %d (%v)", l.Inode, st.Ino, err)
	}
	file, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := InodeOf(file.Fd()); err == nil {
		t.Error("InodeOf a regular file: no error")
	}
	if _, err := InodeOf(1 << 20); err == nil {
		t.Error("InodeOf a closed fd: no error")
	}
}

// fakeProc is a process of a fake /proc tree.
type fakeProc struct {
	children []int
	fds      map[int]uint64 // fd → socket inode
	cmdline  []string
	env      []string
	exe      string
}

// tcpRow is a LISTEN row of the fake net/tcp.
type tcpRow struct {
	addr  string
	inode uint64
}

func hexV4(t *testing.T, s string) string {
	a := netip.MustParseAddrPort(s)
	b := a.Addr().As4()
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(b[:]), a.Port())
}

func writeFakeProc(t *testing.T, worker int, procs map[int]fakeProc, rows []tcpRow) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pid, p := range procs {
		dir := strconv.Itoa(pid)
		var kids []string
		for _, c := range p.children {
			kids = append(kids, strconv.Itoa(c))
		}
		write(filepath.Join(dir, "task", dir, "children"), strings.Join(kids, " "))
		write(filepath.Join(dir, "cmdline"), strings.Join(p.cmdline, "\x00")+"\x00")
		write(filepath.Join(dir, "environ"), strings.Join(p.env, "\x00")+"\x00")
		if err := os.MkdirAll(filepath.Join(root, dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, ino := range p.fds {
			if err := os.Symlink(fmt.Sprintf("socket:[%d]", ino), filepath.Join(root, dir, "fd", strconv.Itoa(fd))); err != nil {
				t.Fatal(err)
			}
		}
		exe := p.exe
		if exe == "" {
			exe = "/nonexistent/" + filepath.Base(p.cmdline[0])
		}
		if err := os.Symlink(exe, filepath.Join(root, dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	for i, r := range rows {
		tcp += fmt.Sprintf("%4d: %s 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 %d 1 0 100 0 0 10 0\n", i, hexV4(t, r.addr), r.inode)
	}
	write(filepath.Join(strconv.Itoa(worker), "net", "tcp"), tcp)
	return root
}

// The known servers, each misconfigured the way the README warns about,
// and two healthy workers, on fake /proc trees.
func TestCheckFakeTrees(t *testing.T) {
	l := Listener{Name: "tcp-8080", Addr: "0.0.0.0:8080", Inode: 1001}
	gm2Row := tcpRow{"0.0.0.0:8080", 1001} // gm2-init's listener: in the namespace's table, held by the worker too
	tests := []struct {
		name       string
		procs      map[int]fakeProc
		rows       []tcpRow
		server     Server
		ready, ok  bool
		wrong      bool
		wrongPid   []WrongListenPid
		msgHas     []string
		msgHasNot  []string
		ownPortPid int
	}{
		{
			name: "puma without --bind-to-activated-sockets=only",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{5: 1002},
				cmdline: []string{"puma 5.6.5 (tcp://0.0.0.0:9292) [rack]"},
				env:     []string{"LISTEN_PID=10", "LISTEN_FDS=1"},
			}},
			rows:   []tcpRow{gm2Row, {"0.0.0.0:9292", 1002}},
			server: Puma, ready: false, ok: false, wrong: true, ownPortPid: 10,
			msgHas: []string{"holds none", "tcp-8080 0.0.0.0:8080", "0.0.0.0:9292 (pid 10)", "--bind-to-activated-sockets=only"},
		},
		{
			name: "gunicorn behind a shell that does not exec it",
			procs: map[int]fakeProc{
				10: {children: []int{11}, fds: map[int]uint64{3: 1001}, cmdline: []string{"sh", "-c", "gunicorn app:app; exit $?"}, env: []string{"LISTEN_PID=10"}},
				11: {children: []int{12}, fds: map[int]uint64{3: 1001, 5: 1003}, cmdline: []string{"/usr/bin/python3", "/usr/bin/gunicorn", "app:app"}, env: []string{"LISTEN_PID=10"}},
				12: {fds: map[int]uint64{3: 1001, 5: 1003}, cmdline: []string{"/usr/bin/python3", "/usr/bin/gunicorn", "app:app"}, env: []string{"LISTEN_PID=10"}},
			},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:8000", 1003}},
			server: Gunicorn, ready: true, ok: false, wrong: true, ownPortPid: 11,
			wrongPid:  []WrongListenPid{{Pid: 11, ListenPid: "10"}},
			msgHas:    []string{"process 11 of worker 10 listens on 127.0.0.1:8000", "LISTEN_PID=10", "drop --bind", "execs gunicorn"},
			msgHasNot: []string{"also listens"}, // said once, as the wrapper's fault
		},
		{
			name: "a node launcher whose gunicorn listens itself: the listener names the server",
			procs: map[int]fakeProc{
				10: {children: []int{11}, fds: map[int]uint64{3: 1001}, cmdline: []string{"node", "start.js"}, env: []string{"LISTEN_PID=10"}},
				11: {fds: map[int]uint64{3: 1001, 5: 1008}, cmdline: []string{"/usr/bin/python3", "/usr/bin/gunicorn", "app:app"}, env: []string{"LISTEN_PID=10"}},
			},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:8000", 1008}},
			server: Gunicorn, ready: true, ok: false, wrong: true, ownPortPid: 11,
			wrongPid:  []WrongListenPid{{Pid: 11, ListenPid: "10"}},
			msgHas:    []string{"drop --bind"},
			msgHasNot: []string{"node:"},
		},
		{
			name: "puma on the activated socket and on its default port too",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001, 6: 1007},
				cmdline: []string{"puma 6.4.0 (tcp://0.0.0.0:9292) [app]"},
				env:     []string{"LISTEN_PID=10", "LISTEN_FDS=1"},
			}},
			rows:   []tcpRow{gm2Row, {"0.0.0.0:9292", 1007}},
			server: Puma, ready: true, ok: false, wrong: true, ownPortPid: 10,
			msgHas: []string{"puma's default port", "--bind-to-activated-sockets=only"},
		},
		{
			name: "uvicorn without --fd 3 (a rewritten title is not needed: python3 -m uvicorn)",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001, 6: 1004},
				cmdline: []string{"python3", "-m", "uvicorn", "app:app"},
				env:     []string{"LISTEN_PID=10"},
			}},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:8000", 1004}},
			server: Uvicorn, ready: true, ok: false, wrong: true, ownPortPid: 10,
			msgHas: []string{"uvicorn's default port", "use --fd 3"},
		},
		{
			name: "uvicorn without --fd on a port of its choosing: not its default, still wrong",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001, 6: 1004},
				cmdline: []string{"uvicorn", "--port", "18501", "app:app"},
				env:     []string{"LISTEN_PID=10"},
			}},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:18501", 1004}},
			server: Uvicorn, ready: true, ok: false, wrong: true, ownPortPid: 10,
			msgHas:    []string{"127.0.0.1:18501 (pid 10)", "uvicorn serves no inherited socket without --fd", "use --fd 3"},
			msgHasNot: []string{"admin or metrics port"},
		},
		{
			name: "uvicorn --fd 3 with a metrics port of its own: fine",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001, 6: 1004},
				cmdline: []string{"uvicorn", "--fd", "3", "app:app"},
				env:     []string{"LISTEN_PID=10"},
			}},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:9100", 1004}},
			server: Uvicorn, ready: true, ok: false, wrong: false, ownPortPid: 10,
			msgHas: []string{"admin or metrics port"},
		},
		{
			name: "uvicorn --fd=3 with a metrics port of its own: fine",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001, 6: 1004},
				cmdline: []string{"uvicorn", "--fd=3", "app:app"},
				env:     []string{"LISTEN_PID=10"},
			}},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:9100", 1004}},
			server: Uvicorn, ready: true, ok: false, wrong: false, ownPortPid: 10,
			msgHas: []string{"admin or metrics port"},
		},
		{
			name: "uvicorn given its fd by UVICORN_FD, no port of its own: fine",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001},
				cmdline: []string{"uvicorn", "app:app"},
				env:     []string{"LISTEN_PID=10", "UVICORN_FD=3"},
			}},
			rows:   []tcpRow{gm2Row},
			server: Uvicorn, ready: true, ok: true,
		},
		{
			name: "gunicorn with setproctitle, healthy",
			procs: map[int]fakeProc{
				10: {children: []int{11}, fds: map[int]uint64{3: 1001}, cmdline: []string{"gunicorn: master [app:app]"}, env: []string{"LISTEN_PID=10"}},
				11: {fds: map[int]uint64{3: 1001}, cmdline: []string{"gunicorn: worker [app:app]"}, env: []string{"LISTEN_PID=10"}},
			},
			rows:   []tcpRow{gm2Row},
			server: Gunicorn, ready: true, ok: true,
		},
		{
			name: "node with an admin port of its own",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{3: 1001, 21: 1005},
				cmdline: []string{"my-app", "--flag"},
				exe:     "/usr/bin/node",
			}},
			rows:   []tcpRow{gm2Row, {"127.0.0.1:9229", 1005}},
			server: Node, ready: true, ok: false, wrong: false, ownPortPid: 10,
			msgHas:    []string{"also listens on 127.0.0.1:9229", "admin or metrics port"},
			msgHasNot: []string{"listen({ fd: 3 })"},
		},
		{
			name: "an unknown server that closed the socket, other sockets of the namespace ignored",
			procs: map[int]fakeProc{10: {
				fds:     map[int]uint64{4: 1006},
				cmdline: []string{"/usr/local/bin/server"},
			}},
			rows:   []tcpRow{gm2Row, {"0.0.0.0:5432", 2000}}, // another process's port: not the worker's
			server: Unknown, ready: false, ok: false, wrong: true,
			msgHas:    []string{"holds none", "a wrapper must exec the server"},
			msgHasNot: []string{"5432", "listens on"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeFakeProc(t, 10, tt.procs, tt.rows)
			r := Check(root, 10, []Listener{l})
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			if r.Server != tt.server || r.Ready() != tt.ready || r.OK() != tt.ok || r.Wrong() != tt.wrong {
				t.Errorf("server %q ready %v ok %v wrong %v; want %q %v %v %v (report %+v)",
					r.Server, r.Ready(), r.OK(), r.Wrong(), tt.server, tt.ready, tt.ok, tt.wrong, r)
			}
			if !slices.Equal(r.WrongListenPid, tt.wrongPid) {
				t.Errorf("WrongListenPid %v, want %v", r.WrongListenPid, tt.wrongPid)
			}
			if tt.ownPortPid != 0 && (len(r.OwnPorts) != 1 || r.OwnPorts[0].Pid != tt.ownPortPid) {
				t.Errorf("own ports %v, want one held by pid %d", r.OwnPorts, tt.ownPortPid)
			}
			msg := r.Message()
			t.Logf("message: %s", msg)
			if tt.ok != (msg == "") {
				t.Errorf("message %q with OK %v", msg, tt.ok)
			}
			for _, s := range tt.msgHas {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not mention %q", msg, s)
				}
			}
			for _, s := range tt.msgHasNot {
				if strings.Contains(msg, s) {
					t.Errorf("message %q mentions %q", msg, s)
				}
			}
		})
	}
}

func TestCheckNothingPassed(t *testing.T) {
	root := writeFakeProc(t, 10, map[int]fakeProc{10: {cmdline: []string{"tini"}}}, nil)
	r := Check(root, 10, nil)
	if !r.Checked || !r.Ready() || !r.OK() || r.Message() != "" {
		t.Errorf("pure init mode: report %+v, message %q; want ready and OK", r, r.Message())
	}
}

func TestServerOf(t *testing.T) {
	tests := []struct {
		cmdline []string
		exe     string
		want    Server
	}{
		{[]string{"/usr/bin/python3", "/usr/bin/gunicorn", "app:app"}, "", Gunicorn},
		{[]string{"gunicorn", "-w", "4", "app:app"}, "", Gunicorn},
		{[]string{"gunicorn: master [app:app]"}, "", Gunicorn},
		{[]string{"puma 5.6.5 (tcp://0.0.0.0:9292) [app]"}, "", Puma},
		{[]string{"/usr/bin/ruby", "/usr/bin/puma", "config.ru"}, "", Puma},
		{[]string{"python3", "-m", "uvicorn", "app:app"}, "", Uvicorn},
		{[]string{"/usr/bin/uvicorn", "--fd", "3", "app:app"}, "", Uvicorn},
		{[]string{"node", "app.js"}, "", Node},
		{[]string{"my-title"}, "/usr/bin/nodejs", Node},
		{[]string{"python3", "manage.py", "gunicorn"}, "", Unknown}, // an argument, not the program
		{[]string{"python3", "-m", "x", "gunicorn"}, "", Unknown},
		{[]string{"sh", "-c", "exec puma"}, "", Unknown},
		{[]string{"/app/server"}, "", Unknown},
	}
	for _, tt := range tests {
		root := writeFakeProc(t, 10, map[int]fakeProc{10: {cmdline: tt.cmdline, exe: tt.exe}}, nil)
		if got := serverOf(root, 10); got != tt.want {
			t.Errorf("serverOf(%q, exe %q) = %q, want %q", tt.cmdline, tt.exe, got, tt.want)
		}
	}
}

// TestCheckSomeMissing: a worker that holds one passed socket and not the
// other is told which one it dropped, not that it holds none.
func TestCheckSomeMissing(t *testing.T) {
	l1 := Listener{Name: "tcp-8080", Addr: "0.0.0.0:8080", Inode: 1001}
	l2 := Listener{Name: "tcp-8443", Addr: "0.0.0.0:8443", Inode: 1009}
	root := writeFakeProc(t, 10, map[int]fakeProc{10: {fds: map[int]uint64{3: 1001}, cmdline: []string{"/app/server"}}}, nil)
	r := Check(root, 10, []Listener{l1, l2})
	msg := r.Message()
	if !r.Ready() || !r.Wrong() || !strings.Contains(msg, "closed or never took the passed sockets tcp-8443 0.0.0.0:8443") || strings.Contains(msg, "holds none") {
		t.Errorf("ready %v wrong %v message %q; want ready, wrong, tcp-8443 named as dropped", r.Ready(), r.Wrong(), msg)
	}
}

// TestCheckWorkerUnreadable: when the worker's own descriptors cannot be
// read, what its children hold is no evidence: unchecked, ready, nothing
// to say.
func TestCheckWorkerUnreadable(t *testing.T) {
	l := Listener{Name: "tcp-8080", Addr: "0.0.0.0:8080", Inode: 1001}
	root := writeFakeProc(t, 10, map[int]fakeProc{
		10: {children: []int{11}, cmdline: []string{"/app/server"}},
		11: {fds: map[int]uint64{4: 2000}, cmdline: []string{"/app/helper"}},
	}, nil)
	if err := os.RemoveAll(filepath.Join(root, "10", "fd")); err != nil {
		t.Fatal(err)
	}
	r := Check(root, 10, []Listener{l})
	if r.Checked || !r.Ready() || !r.OK() || r.Message() != "" || r.Err() == nil {
		t.Errorf("report %+v, message %q; want unchecked, ready, OK, with the read error", r, r.Message())
	}
}
