package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

func countReady(t *testing.T, r io.Reader) (int, error) {
	t.Helper()
	n := 0
	err := ReadNode(r, func() { n++ })
	return n, err
}

func TestReadNode(t *testing.T) {
	pad := func(n int, msg string) string { return strings.Repeat(" ", n-len(msg)) + msg }
	tests := []struct {
		name  string
		input string
		want  int
	}{
		{"empty", "", 0},
		{"ready", "\"ready\"\n", 1},
		{"twice", "\"ready\"\n\"ready\"\n", 2},
		{"among others", "{\"x\":1}\n\"ready\"\n\"online\"\n[\"ready\"]\n", 1},
		{"unterminated at EOF", "\"ready\"", 0},
		{"crlf", "\"ready\"\r\n", 1},
		{"json whitespace", " \t\"ready\" \n", 1},
		{"escaped", "\"\\u0072eady\"\n", 1},
		{"fully escaped", "\"\\u0072\\u0065\\u0061\\u0064\\u0079\"\n", 1},
		{"case matters", "\"Ready\"\n", 0},
		{"not json", "ready\n", 0},
		{"trailing junk", "\"ready\"x\n", 0},
		{"two strings", "\"ready\" \"ready\"\n", 0},
		{"object with ready", "{\"type\":\"ready\"}\n", 0},
		{"readyx", "\"readyx\"\n", 0},
		{"unterminated string", "\"ready\n", 0},
		{"empty lines", "\n\n\n", 0},
		{"invalid utf8 around", "\xff\xfe\n\"ready\"\n", 1},
		{"long line then ready", strings.Repeat("x", maxNodeLine+1) + "\n\"ready\"\n", 1},
		{"very long line then ready", "\"" + strings.Repeat("x", 5*maxNodeLine) + "\"\n\"ready\"\n", 1},
		{"ready padded to the limit", pad(maxNodeLine, `"ready"`) + "\n", 1},
		{"ready padded past the limit", pad(maxNodeLine+1, `"ready"`) + "\n", 0},
		{"line of exactly the buffer", pad(nodeReadBuf, `"ready"`) + "\n", 1},
		{"line one past the buffer", pad(nodeReadBuf+1, `"ready"`) + "\n", 1},
		{"long line unterminated", strings.Repeat("y", 3*maxNodeLine), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, r := range map[string]io.Reader{
				"whole":    strings.NewReader(tt.input),
				"one byte": iotest.OneByteReader(strings.NewReader(tt.input)),
				"half":     iotest.HalfReader(strings.NewReader(tt.input)),
			} {
				got, err := countReady(t, r)
				if err != nil {
					t.Errorf("%s: ReadNode error %v", name, err)
				}
				if got != tt.want {
					t.Errorf("%s: onReady called %d times, want %d", name, got, tt.want)
				}
			}
		})
	}
}

// stuckReader returns no data and no error, forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestReadNodeErrors(t *testing.T) {
	boom := errors.New("boom")
	n, err := countReady(t, io.MultiReader(strings.NewReader("\"ready\"\n\"rea"), iotest.ErrReader(boom)))
	if n != 1 || !errors.Is(err, boom) {
		t.Errorf("got %d, %v; want 1 and an error wrapping boom", n, err)
	}
	if n, err := countReady(t, iotest.ErrReader(syscall.ECONNRESET)); n != 0 || err != nil {
		t.Errorf("ECONNRESET: got %d, %v; want 0, nil (the worker is gone)", n, err)
	}
	// A reader that makes no progress must not hang ReadNode.
	if _, err := countReady(t, stuckReader{}); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("stuck reader: %v, want io.ErrNoProgress", err)
	}
}

// FuzzReadNode checks that ReadNode neither panics nor hangs on any input and
// that it counts exactly the complete lines that decode as the JSON string
// "ready", whatever the read sizes.
func FuzzReadNode(f *testing.F) {
	for _, s := range []string{
		"\"ready\"\n", "\"ready\"", "{\"cmd\":\"NODE_X\"}\n\"ready\"\n", "\"\\u0072eady\"\r\n",
		"\n\n", "\xff\"ready\"\n", " \"ready\" \n\"ready\"\n\"rea",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := 0
		lines := bytes.Split(data, []byte{'\n'})
		for _, line := range lines[:len(lines)-1] { // the last piece has no '\n'
			var v any
			if len(line) <= maxNodeLine && json.Unmarshal(line, &v) == nil && v == "ready" {
				want++
			}
		}
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(data),
			"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		} {
			got, err := countReady(t, r)
			if err != nil || got != want {
				t.Fatalf("%s: ReadNode(%q) = %d, %v; want %d", name, data, got, err, want)
			}
		}
	})
}

func TestNodeChannelEnds(t *testing.T) {
	parent, child, err := NodeChannel()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	for name, f := range map[string]*os.File{"parent": parent, "child": child} {
		fd := int(f.Fd()) // NewFile on a non-blocking fd: Fd leaves the mode alone
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: fd flags %#x, %v; want FD_CLOEXEC", name, flags, err)
		}
		typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil || typ != unix.SOCK_STREAM {
			t.Errorf("%s: socket type %d, %v; want SOCK_STREAM", name, typ, err)
		}
	}
	fl, err := unix.FcntlInt(child.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("child end flags %#x, %v; want blocking", fl, err)
	}
	fl, err = unix.FcntlInt(parent.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("parent end flags %#x, %v; want non-blocking", fl, err)
	}
	if got := NodeEnv(3); strings.Join(got, " ") != "NODE_CHANNEL_FD=3 NODE_CHANNEL_SERIALIZATION_MODE=json" {
		t.Errorf("NodeEnv(3) = %q", got)
	}
}

// TestCloseUnblocksReadNode: closing the parent end must wake a ReadNode
// blocked on it in another goroutine.
func TestCloseUnblocksReadNode(t *testing.T) {
	parent, child, err := NodeChannel()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- ReadNode(parent, func() { ready <- struct{}{} }) }()
	if _, err := child.Write([]byte("\"ready\"\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready: // ReadNode is now blocked waiting for more
	case <-time.After(waitTimeout):
		parent.Close()
		t.Fatal("no ready")
	}
	parent.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadNode after Close = %v, want os.ErrClosed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not unblock ReadNode")
	}
}

// runNode starts argv with the child end of a fresh NodeChannel at fd 3 and
// returns how many times ReadNode saw "ready" before EOF.
func runNode(t *testing.T, argv ...string) int {
	t.Helper()
	parent, child, err := NodeChannel()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.ExtraFiles = []*os.File{child} // fd 3
	cmd.Env = append(os.Environ(), NodeEnv(3)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		child.Close()
		t.Fatalf("start %v: %v", argv, err)
	}
	child.Close() // else EOF never comes: this process would hold the child end open
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}()

	readies := 0
	done := make(chan error, 1)
	go func() { done <- ReadNode(parent, func() { readies++ }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadNode: %v", err)
		}
	case <-time.After(waitTimeout):
		parent.Close()
		<-done
		t.Fatalf("%v did not close its IPC channel within %v", argv, waitTimeout)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("%v: %v", argv, err)
	}
	return readies // read after <-done: ReadNode's goroutine has finished
}

func TestNodeProcessSend(t *testing.T) {
	node := testtool.Require(t, "node", "Debian package nodejs")
	const app = `process.send('ready'); process.send({x: 1}); process.send('not ready'); process.disconnect()`
	t.Run("direct", func(t *testing.T) {
		if n := runNode(t, node, "-e", app); n != 1 {
			t.Errorf("onReady called %d times, want 1", n)
		}
	})
	t.Run("through sh", func(t *testing.T) {
		// A wrapper that forks node (no exec) passes fd 3 down as is.
		if n := runNode(t, "sh", "-c", `"$0" -e "$1"; true`, node, app); n != 1 {
			t.Errorf("onReady called %d times, want 1", n)
		}
	})
	t.Run("silent app", func(t *testing.T) {
		if n := runNode(t, node, "-e", `process.disconnect()`); n != 0 {
			t.Errorf("onReady called %d times, want 0", n)
		}
	})
}
