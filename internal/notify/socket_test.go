package notify

import (
	"github.com/gm2-init/gm2-init/internal/procfs"

	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 20 * time.Second

type received struct {
	m   Message
	err error
}

// receiveAsync runs Receive in a goroutine and returns its result channel.
// The goroutine ends when Receive returns; the socket's cleanup Close
// guarantees that.
func receiveAsync(s *Socket) <-chan received {
	ch := make(chan received, 1)
	go func() {
		m, err := s.Receive()
		ch <- received{m, err}
	}()
	return ch
}

// receive waits, bounded, for the next message.
func receive(t *testing.T, s *Socket) Message {
	t.Helper()
	select {
	case r := <-receiveAsync(s):
		if r.err != nil {
			t.Fatalf("Receive: %v", r.err)
		}
		return r.m
	case <-time.After(waitTimeout):
		_ = s.Close()
		t.Fatalf("no datagram within %v", waitTimeout)
		return Message{}
	}
}

func listen(t *testing.T, cfg Config) *Socket {
	t.Helper()
	s, err := cfg.Listen()
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// send sends one datagram to the socket from this process, the way
// go-systemd does (the kernel attaches the credentials).
func send(t *testing.T, s *Socket, payload string) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.Env(), Net: "unixgram"})
	if err != nil {
		t.Fatalf("dial %s: %v", s.Env(), err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatalf("send to %s: %v", s.Env(), err)
	}
}

func TestListenPrivateDirectory(t *testing.T) {
	base := t.TempDir()
	s, err := Listen(base)
	if err != nil {
		t.Fatal(err)
	}
	env := s.Env()
	if s.Abstract() || s.FallbackReason() != nil {
		t.Fatalf("fell back (%v) although %s is writable", s.FallbackReason(), base)
	}
	if !filepath.IsAbs(env) || filepath.Dir(filepath.Dir(env)) != base {
		t.Fatalf("Env() = %q, want an absolute path in a directory under %s", env, base)
	}
	dir := filepath.Dir(env)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o711 || !fi.IsDir() {
		t.Errorf("directory mode %v, want drwx--x--x", fi.Mode())
	}
	si, err := os.Stat(env)
	if err != nil {
		t.Fatal(err)
	}
	if si.Mode().Type() != os.ModeSocket || si.Mode().Perm() != 0o666 {
		t.Errorf("%s is %v, want a socket with mode 0666", env, si.Mode())
	}
	if fd := socketFD(t, s); fd >= 0 {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("socket fd flags %#x, %v: want FD_CLOEXEC", flags, err)
		}
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private directory still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Receive(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close = %v, want net.ErrClosed", err)
	}
}

// socketFD peeks at the socket's descriptor; only valid while s is open.
func socketFD(t *testing.T, s *Socket) int {
	t.Helper()
	raw, err := s.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestListenEmptyBaseUsesTMPDIR(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s, err := Listen("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.Env(), tmp+string(filepath.Separator)) {
		t.Errorf("Env() = %q, want it under TMPDIR %s", s.Env(), tmp)
	}
}

func TestReceiveCredentialsAndParse(t *testing.T) {
	s := listen(t, Config{Dirs: []string{t.TempDir()}})
	send(t, s, "READY=1\nSTATUS=serving\nMAINPID=77\nWATCHDOG=1\n")
	m := receive(t, s)
	want := Message{Pid: os.Getpid(), Ready: true, Status: "serving", HasStatus: true, MainPid: 77}
	if m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}

	// Explicit credentials, the way libsystemd's sd_pid_notify does it.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cred := unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
	if err := unix.Sendmsg(fd, []byte("STOPPING=1"), cred, &unix.SockaddrUnix{Name: s.Env()}, 0); err != nil {
		t.Fatalf("sendmsg with SCM_CREDENTIALS: %v", err)
	}
	m = receive(t, s)
	if want := (Message{Pid: os.Getpid(), Stopping: true}); m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}

	// A datagram with nothing Message knows is still delivered: the caller
	// may count it as a sign of life.
	send(t, s, "WATCHDOG=1")
	if m := receive(t, s); m != (Message{Pid: os.Getpid()}) {
		t.Errorf("got %+v for WATCHDOG=1", m)
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	s := listen(t, Config{Dirs: []string{t.TempDir()}})
	results := make(chan received, 2)
	go func() { // two Receives: the second is blocked when Close comes
		for range 2 {
			m, err := s.Receive()
			results <- received{m, err}
		}
	}()
	send(t, s, "READY=1")
	select {
	case r := <-results:
		if r.err != nil || !r.m.Ready {
			t.Fatalf("first Receive = %+v, %v", r.m, r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("first datagram not received")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Receive after Close = %+v, %v; want net.ErrClosed", r.m, r.err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not unblock Receive")
	}
}

func TestLongDatagramDropped(t *testing.T) {
	var mu sync.Mutex
	var drops []error
	s := listen(t, Config{Dirs: []string{t.TempDir()}, OnDrop: func(d Drop) {
		mu.Lock()
		defer mu.Unlock()
		drops = append(drops, d.Err)
	}})
	send(t, s, "READY=1\nSTATUS="+strings.Repeat("x", 3*recvBufSize))
	send(t, s, "STATUS=small")
	m := receive(t, s)
	if m.Ready || m.Status != "small" {
		t.Errorf("got %+v, want only the small datagram", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(drops) != 1 || !strings.Contains(drops[0].Error(), "longer than") {
		t.Errorf("drops = %v, want one 'longer than' drop", drops)
	}

	// The largest datagram that fits is accepted whole.
	status := strings.Repeat("y", recvBufSize-len("STATUS="))
	send(t, s, "STATUS="+status)
	if m := receive(t, s); m.Status != status {
		t.Errorf("datagram of exactly %d bytes: status length %d", recvBufSize, len(m.Status))
	}
}

// TestPassedDescriptorsAreNotKept sends a pipe's write end along with a
// datagram; once the sender closes its copy, the reader must see EOF, which
// proves gm2-init kept no copy of the descriptor.
func TestPassedDescriptorsAreNotKept(t *testing.T) {
	s := listen(t, Config{Dirs: []string{t.TempDir()}})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	rights := unix.UnixRights(int(w.Fd()))
	if err := unix.Sendmsg(fd, []byte("READY=1\nFDSTORE=1"), rights, &unix.SockaddrUnix{Name: s.Env()}, 0); err != nil {
		t.Fatalf("sendmsg with SCM_RIGHTS: %v", err)
	}
	w.Close()
	if m := receive(t, s); !m.Ready || m.Pid != os.Getpid() {
		t.Fatalf("got %+v", m)
	}
	expectEOF(t, r)
}

// expectEOF reads r (bounded) and fails unless it reports EOF: a leaked
// copy of the pipe's write end would keep it open.
func expectEOF(t *testing.T, r *os.File) {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("pipe read = %d, %v; want EOF (the passed descriptor was kept open)", n, err)
	}
}

func TestSenderPid(t *testing.T) {
	t.Run("credentials", func(t *testing.T) {
		pid, err := senderPid(unix.UnixCredentials(&unix.Ucred{Pid: 123}))
		if err != nil || pid != 123 {
			t.Errorf("senderPid = %d, %v; want 123", pid, err)
		}
	})
	t.Run("none", func(t *testing.T) {
		if _, err := senderPid(nil); !errors.Is(err, errNoCredentials) {
			t.Errorf("senderPid(nil) error = %v, want errNoCredentials", err)
		}
		if _, err := senderPid([]byte{1, 2, 3}); err == nil {
			t.Error("senderPid(garbage) succeeded")
		}
	})
	t.Run("pid 0", func(t *testing.T) {
		if _, err := senderPid(unix.UnixCredentials(&unix.Ucred{Pid: 0})); err == nil {
			t.Error("senderPid accepted pid 0")
		}
	})
	t.Run("rights are closed", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		dup, err := unix.FcntlInt(w.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		oob := append(unix.UnixRights(dup), unix.UnixCredentials(&unix.Ucred{Pid: 9})...)
		if pid, err := senderPid(oob); err != nil || pid != 9 {
			t.Errorf("senderPid = %d, %v; want 9", pid, err)
		}
		expectEOF(t, r)
	})
}

func TestFallbackToNextDirWhenPathTooLong(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", maxSunPath))
	if err := os.Mkdir(long, 0o755); err != nil {
		t.Skipf("cannot make a long directory: %v", err)
	}
	short := t.TempDir()
	s := listen(t, Config{Dirs: []string{long, short}})
	if !strings.HasPrefix(s.Env(), short+string(filepath.Separator)) {
		t.Fatalf("Env() = %q, want it under %s", s.Env(), short)
	}
	if err := s.FallbackReason(); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("FallbackReason() = %v, want the path length", err)
	}
	left, _ := os.ReadDir(long)
	if len(left) != 0 {
		t.Errorf("left %d entries in the directory it gave up on", len(left))
	}
	send(t, s, "READY=1")
	if m := receive(t, s); !m.Ready {
		t.Errorf("got %+v", m)
	}
}

func TestFallbackToAbstract(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := listen(t, Config{Dirs: []string{filepath.Join(notADir, "tmp")}})
	if !s.Abstract() || !strings.HasPrefix(s.Env(), "@gm2-init-") || len(s.Env()) < len("@gm2-init-")+20 {
		t.Fatalf("Env() = %q, want an abstract name with a random part", s.Env())
	}
	if s.FallbackReason() == nil {
		t.Error("FallbackReason() = nil after falling back")
	}
	other := listen(t, Config{Dirs: []string{filepath.Join(notADir, "tmp")}})
	if other.Env() == s.Env() {
		t.Errorf("two abstract sockets got the same name %q", s.Env())
	}
	send(t, s, "READY=1")
	if m := receive(t, s); !m.Ready || m.Pid != os.Getpid() {
		t.Errorf("got %+v", m)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// pythonSender is a worker that sends one notify datagram the way sdnotify
// and gunicorn do, then waits for its stdin to close so that its pid stays
// valid while the test looks at it.
const pythonSender = `import os, socket, sys
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=hi", addr)
sys.stdin.read()
`

// startWorker starts argv with NOTIFY_SOCKET set and stdin a pipe that is
// closed at cleanup (which ends pythonSender); the process is killed by pid
// if it is still there.
func startWorker(t *testing.T, s *Socket, argv ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), EnvNotifySocket+"="+s.Env())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

func lookPython(t *testing.T) string {
	t.Helper()
	return testtool.Require(t, "python3", "Debian package python3")
}

func TestReceiveFromChildProcess(t *testing.T) {
	py := lookPython(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"filesystem", Config{Dirs: []string{t.TempDir()}}},
		{"abstract", Config{Dirs: []string{filepath.Join(os.DevNull, "x")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := listen(t, tc.cfg)
			if (tc.name == "abstract") != s.Abstract() {
				t.Fatalf("Env() = %q", s.Env())
			}
			cmd := startWorker(t, s, py, "-c", pythonSender)
			m := receive(t, s)
			want := Message{Pid: cmd.Process.Pid, Ready: true, Status: "hi", HasStatus: true}
			if m != want {
				t.Errorf("got %+v, want %+v", m, want)
			}
		})
	}
}

// TestReceiveFromWrappedChild is the `sh -c` / `npm start` case: the
// datagram comes from the worker's child, and procfs.FindAncestor credits it
// to the worker.
func TestReceiveFromWrappedChild(t *testing.T) {
	py := lookPython(t)
	s := listen(t, Config{Dirs: []string{t.TempDir()}})
	// "; true" keeps sh from exec'ing python, so python is sh's child.
	cmd := startWorker(t, s, "sh", "-c", `"$0" -c "$1"; true`, py, pythonSender)
	m := receive(t, s)
	worker := cmd.Process.Pid
	if !m.Ready || m.Pid == worker {
		t.Fatalf("got %+v; want READY=1 from a child of sh %d", m, worker)
	}
	got, ok := procfs.FindAncestor("/proc", m.Pid, func(p int) bool { return p == worker })
	if !ok || got != worker {
		t.Errorf("procfs.FindAncestor(%d) = %d, %v; want %d", m.Pid, got, ok, worker)
	}
}

func TestDefaultDirs(t *testing.T) {
	if got := DefaultDirs("/srv/run"); strings.Join(got, " ") != "/srv/run /dev/shm" {
		t.Errorf("DefaultDirs(/srv/run) = %q", got)
	}
	if got := DefaultDirs("/dev/shm/"); len(got) != 1 {
		t.Errorf("DefaultDirs(/dev/shm/) = %q, want it once", got)
	}
	t.Setenv("TMPDIR", "/var/tmp")
	if got := DefaultDirs(""); got[0] != "/var/tmp" {
		t.Errorf("DefaultDirs(\"\") = %q, want TMPDIR first", got)
	}
}

// TestUnwritableBaseFallsBackToShm is the read-only root filesystem case:
// the base directory cannot hold the private directory, /dev/shm can.
func TestUnwritableBaseFallsBackToShm(t *testing.T) {
	if unix.Access(shmDir, unix.W_OK) != nil {
		t.Skipf("%s is not writable here", shmDir)
	}
	s, err := Listen(filepath.Join(os.DevNull, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.Env(), shmDir+"/gm2-init-") || s.FallbackReason() == nil {
		t.Fatalf("Env() = %q, FallbackReason() = %v; want a socket under %s and a reason", s.Env(), s.FallbackReason(), shmDir)
	}
	send(t, s, "READY=1")
	if m := receive(t, s); !m.Ready {
		t.Errorf("got %+v", m)
	}
	dir := filepath.Dir(s.Env())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}

// TestWorkerOfAnotherUserCanSend is issue 12's privilege drop: a worker
// that switched to another uid (setpriv, gosu, su-exec) still reaches the
// socket — and cannot list the directory nor remove the socket.
func TestWorkerOfAnotherUserCanSend(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process of another uid")
	}
	// A copy of this test binary that uid 65534 may execute.
	dir, err := os.MkdirTemp("", "gm2-notify-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "notify.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parents are 0700: use a base others can pass through,
	// as /tmp and /dev/shm are.
	base, err := os.MkdirTemp("", "gm2-notify-base-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	s := listen(t, Config{Dirs: []string{base}})
	cmd := exec.Command(bin, "-test.run=^TestHelperSendAsOtherUser$")
	cmd.Env = append(os.Environ(), EnvNotifySocket+"="+s.Env(), "GM2_NOTIFY_HELPER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid 65534: %v\n%s", err, out)
	}
	m := receive(t, s)
	if !m.Ready || m.Pid != cmd.Process.Pid {
		t.Errorf("got %+v, want READY=1 from the helper %d", m, cmd.Process.Pid)
	}
	for _, want := range []string{"list: permission denied", "remove: permission denied"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(s.Env()); err != nil {
		t.Errorf("socket gone: %v", err)
	}
}

// TestHelperSendAsOtherUser is the child of TestWorkerOfAnotherUserCanSend.
func TestHelperSendAsOtherUser(t *testing.T) {
	if os.Getenv("GM2_NOTIFY_HELPER") == "" {
		t.Skip("helper process for TestWorkerOfAnotherUserCanSend")
	}
	addr := os.Getenv(EnvNotifySocket)
	dir := filepath.Dir(addr)
	if _, err := os.ReadDir(dir); err != nil {
		fmt.Println("list:", errors.Unwrap(err))
	}
	if err := os.Remove(addr); err != nil {
		fmt.Println("remove:", errors.Unwrap(err))
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		t.Fatal(err)
	}
}
