package preload

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Event kinds written by the preload.
const (
	// KindHello: the preload became active in process Pid.
	KindHello = "hello"
	// KindListening: a server or socket in process Pid listens on inherited
	// fd FD.
	KindListening = "listening"
	// KindShared: a server or socket in process Pid listens on the socket
	// gm2-init shares on demand with registry id ID (sockets.Shared.ID).
	KindShared = "shared"
)

// MaxLine bounds an event line, newline included. The preload's lines are
// far shorter; anything longer is not one of them and is skipped.
const MaxLine = 512

// Event is one line the preload wrote to the GM2_PRELOAD_FD pipe.
type Event struct {
	Kind string // KindHello, KindListening or KindShared
	FD   int    // the inherited fd (KindListening only)
	ID   int    // the on-demand socket's id (KindShared only)
	Pid  int    // the process that wrote the line
}

// ParseLine decodes "hello PID", "listening FD PID" or "shared ID PID", with
// or without the trailing newline. Numbers are plain decimal, PID and ID at
// least 1, FD at least 3.
func ParseLine(line string) (Event, error) {
	s := strings.TrimSuffix(line, "\n")
	f := strings.Split(s, " ")
	var ev Event
	var err error
	switch {
	case f[0] == KindHello && len(f) == 2:
		ev.Kind = KindHello
		ev.Pid, err = parseNumber(f[1], 1)
	case f[0] == KindListening && len(f) == 3:
		ev.Kind = KindListening
		if ev.FD, err = parseNumber(f[1], 3); err == nil {
			ev.Pid, err = parseNumber(f[2], 1)
		}
	case f[0] == KindShared && len(f) == 3:
		ev.Kind = KindShared
		if ev.ID, err = parseNumber(f[1], 1); err == nil {
			ev.Pid, err = parseNumber(f[2], 1)
		}
	default:
		err = errors.New("not a hello, listening or shared line")
	}
	if err != nil {
		return Event{}, fmt.Errorf("preload: event %q: %w", clip(s), err)
	}
	return ev, nil
}

// parseNumber accepts 1 to 9 decimal digits (pids and fds fit) and no sign.
func parseNumber(s string, min int) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, fmt.Errorf("number %q: want 1 to 9 digits", clip(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("number %q: not decimal", clip(s))
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("number %q: %w", clip(s), err)
	}
	if n < min {
		return 0, fmt.Errorf("number %d below %d", n, min)
	}
	return n, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Read calls fn for every event line read from r until EOF, and returns nil
// then, or the read error. Lines that are not events, lines longer than
// MaxLine and an unterminated last line are skipped: the preload writes
// whole lines atomically, so those come from something else, and the
// supervisor must not stop listening because of them. Memory stays within
// MaxLine whatever r delivers.
func Read(r io.Reader, fn func(Event)) error {
	br := bufio.NewReaderSize(r, MaxLine)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				continue // the overlong line ended; skip it
			}
			line = nil
		}
		if err == nil {
			if ev, perr := ParseLine(string(line)); perr == nil {
				fn(ev)
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("preload: read events: %w", err)
	}
}
