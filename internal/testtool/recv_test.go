package testtool

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRecvmsg(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := make([]byte, 16)

	// Nothing sent: the wait ends at its deadline, not before.
	t0 := time.Now()
	if _, _, err := Recvmsg(fds[0], buf, nil, 0, 50*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nothing sent: %v, want os.ErrDeadlineExceeded", err)
	}
	if waited := time.Since(t0); waited < 50*time.Millisecond {
		t.Errorf("gave up after %v, before its 50ms", waited)
	}

	// A datagram sent while it waits is received, with its ancillary data.
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = unix.Sendmsg(fds[1], []byte("hello"), unix.UnixRights(fds[1]), nil, 0)
	}()
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, err := Recvmsg(fds[0], buf, oob, unix.MSG_CMSG_CLOEXEC, 10*time.Second)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("got %q, %v; want hello", buf[:n], err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v: want the descriptor sent", msgs, err)
	}
	passed, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(passed) != 1 {
		t.Fatalf("rights %v, %v", passed, err)
	}
	unix.Close(passed[0])

	// An error of the socket is returned as it is.
	if _, _, err := Recvmsg(-1, buf, nil, 0, time.Second); !errors.Is(err, unix.EBADF) {
		t.Errorf("bad descriptor: %v, want EBADF", err)
	}
}
