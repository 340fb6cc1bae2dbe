// Package notify speaks the systemd notify protocol: the unix datagram socket
// named by NOTIFY_SOCKET through which a worker tells gm2-init that it is
// ready (--wait-ready), and the same protocol one level up (Parent): what
// gm2-init tells its own service manager. (PM2's Node handshake,
// process.send('ready'), arrives on the worker's IPC channel, which
// internal/nodeipc serves.)
//
// The package only moves and decodes messages. Deciding which worker a message
// belongs to, and what "ready" does to a rolling reload, is the supervisor's
// job: it gets the sender's pid (Message.Pid) and procfs.FindAncestor to map a
// wrapper's child (`sh -c`, `npm start`) back to the worker it started.
//
// Nothing in this package starts a goroutine: Receive and Parent.Watchdog
// block in the caller's goroutine and are stopped by closing
// what they read from or by their context. The one exception is Parent's
// retry timer, which exists only while a message waits for a busy receiver
// and is stopped by Parent.Close.
package notify

import (
	"bytes"
	"strings"

	"github.com/gm2-init/gm2-init/internal/procfs"
)

// Message is one notify datagram, already parsed.
type Message struct {
	// Pid is the sender's pid from SCM_CREDENTIALS, as seen in gm2-init's
	// pid namespace.
	Pid int

	Ready     bool // READY=1
	Reloading bool // RELOADING=1
	Stopping  bool // STOPPING=1

	// Status is the STATUS= value, made valid UTF-8 so that it can be logged
	// and served as JSON as is. When a datagram carries several STATUS=
	// lines the first one counts, as in systemd (strv_find_startswith).
	Status    string
	HasStatus bool // a STATUS= line was present (it may be empty: "clear the status")

	// MainPid is the first MAINPID= when it is a valid pid, else 0.
	MainPid int
}

// Parse decodes a notify datagram payload: KEY=VALUE lines separated by '\n'.
//
// It follows systemd where systemd has a rule and is lenient where being
// strict would only lose readiness from sloppy hand-written senders:
//   - flags count only with the exact value "1" (READY=1, not READY=yes), as
//     systemd does; keys are case-sensitive;
//   - unknown keys (WATCHDOG=, ERRNO=, FDSTORE=, …), lines without '=' and
//     empty lines are ignored; a missing final newline is fine;
//   - one '\r' before the '\n' is removed (CRLF senders), since no key or
//     value of the protocol ends in '\r';
//   - NUL bytes at the very end are dropped (C senders that count the string
//     terminator); a line with a NUL anywhere else is ignored, because systemd
//     treats embedded NULs as malformed.
//
// Parse never panics and never fails: a payload with nothing it knows yields
// the zero Message.
func Parse(payload []byte) Message {
	var m Message
	seenMainPid := false
	payload = bytes.TrimRight(payload, "\x00")
	for len(payload) > 0 {
		var line []byte
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			line, payload = payload[:i], payload[i+1:]
		} else {
			line, payload = payload, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 || bytes.IndexByte(line, 0) >= 0 {
			continue
		}
		key, value, ok := bytes.Cut(line, []byte{'='})
		if !ok {
			continue
		}
		switch string(key) {
		case "READY":
			m.Ready = m.Ready || string(value) == "1"
		case "RELOADING":
			m.Reloading = m.Reloading || string(value) == "1"
		case "STOPPING":
			m.Stopping = m.Stopping || string(value) == "1"
		case "STATUS":
			if !m.HasStatus {
				m.Status = strings.ToValidUTF8(string(value), "\uFFFD")
				m.HasStatus = true
			}
		case "MAINPID":
			if !seenMainPid {
				m.MainPid, seenMainPid = parsePid(value), true
			}
		}
	}
	return m
}

// parsePid accepts only plain decimal digits (no sign, no spaces) for a value
// in 1..procfs.MaxPid, and returns 0 for anything else: a pid that is "almost" valid
// is more likely garbage than intent.
func parsePid(b []byte) int {
	n, ok := procfs.ParseDecimal(b)
	if !ok || n == 0 {
		return 0
	}
	return n
}
