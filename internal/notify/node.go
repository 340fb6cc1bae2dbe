package notify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment variables that make Node open the IPC channel on the child end
// of NodeChannel (process.send exists only when NODE_CHANNEL_FD is set).
const (
	EnvNodeChannelFD            = "NODE_CHANNEL_FD"
	EnvNodeChannelSerialization = "NODE_CHANNEL_SERIALIZATION_MODE"
)

const (
	// maxNodeLine is the longest IPC message (without its '\n') that is
	// looked at. "ready" is 7 bytes on the wire; the limit only keeps an app
	// that sends big objects over the channel from making gm2-init buffer
	// them.
	maxNodeLine = 64 << 10

	// nodeReadBuf is the read buffer: a long line is gathered past it only
	// up to maxNodeLine, so memory stays small for the usual tiny messages.
	nodeReadBuf = 4 << 10

	// maxReadyJSON is the longest JSON text that can decode to "ready":
	// five characters written as \uXXXX escapes, plus the quotes.
	maxReadyJSON = 2 + 5*6
)

// NodeChannel creates the IPC channel for one Node worker: an AF_UNIX
// SOCK_STREAM socketpair, both ends close-on-exec. The caller passes child
// in exec.Cmd.ExtraFiles (the exec dups it to a non-close-on-exec fd), sets
// NodeEnv(3+index), closes child after Start, and runs ReadNode on parent.
//
// The parent end is non-blocking, so it sits in the runtime poller and
// closing it unblocks a ReadNode in another goroutine. The child end stays
// blocking: the flag belongs to the open file, which the worker shares, and
// a program that is not Node may not expect a non-blocking fd.
func NodeChannel() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("notify: node ipc socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		_ = unix.Close(fds[1])
		return nil, nil, fmt.Errorf("notify: node ipc socketpair: set non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "node-ipc"), os.NewFile(uintptr(fds[1]), "node-ipc-child"), nil
}

// NodeEnv returns the environment entries that make a Node worker use the
// channel whose child end it has at fd, with JSON serialization (the only
// one ReadNode understands).
func NodeEnv(fd int) []string {
	return []string{
		EnvNodeChannelFD + "=" + strconv.Itoa(fd),
		EnvNodeChannelSerialization + "=json",
	}
}

// ReadNode reads Node IPC messages (JSON serialization: each message is
// JSON.stringify(msg) followed by '\n') from r until EOF or an error, and
// calls onReady once for each message that is the JSON string "ready" — what
// process.send('ready') writes, PM2's readiness handshake. Every other
// message is ignored.
//
// A line longer than 64 KiB is skipped without being buffered whole, and an
// unterminated line at EOF is ignored (Node only delivers complete lines).
// ReadNode returns nil at EOF or when the peer reset the connection (the
// worker is gone), and otherwise an error wrapping the read error — after
// the caller closed r, one wrapping os.ErrClosed.
func ReadNode(r io.Reader, onReady func()) error {
	br := bufio.NewReaderSize(r, nodeReadBuf)
	var long []byte // the start of a line longer than br's buffer
	skipping := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			msg := chunk[:len(chunk)-1]
			if len(long) > 0 {
				long = append(long, msg...)
				msg = long
			}
			if !skipping && len(msg) <= maxNodeLine && isNodeReady(msg) {
				onReady()
			}
			skipping = false
			if cap(long) > nodeReadBuf {
				long = nil // give back the memory of a rare long line
			}
			long = long[:0]
		case errors.Is(err, bufio.ErrBufferFull):
			if skipping {
				continue
			}
			if len(long)+len(chunk) > maxNodeLine {
				skipping, long = true, nil
				continue
			}
			long = append(long, chunk...)
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			return nil
		default:
			return fmt.Errorf("notify: node ipc read: %w", err)
		}
	}
}

// isNodeReady reports whether msg (one line, without '\n') is a JSON text
// equal to the string "ready". JSON.stringify produces exactly `"ready"`;
// other spellings of the same value (escapes, surrounding whitespace) are
// accepted because they mean the same message.
func isNodeReady(msg []byte) bool {
	msg = bytes.Trim(msg, " \t\r\n")
	if string(msg) == `"ready"` {
		return true
	}
	if len(msg) > maxReadyJSON || len(msg) < 2 || msg[0] != '"' {
		return false
	}
	var s string
	return json.Unmarshal(msg, &s) == nil && s == "ready"
}
