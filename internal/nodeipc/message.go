package nodeipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Commands of the messages Serve understands. Node routes every message
// whose cmd starts with "NODE_" to its internal listeners, never to the
// app's process.on('message').
const (
	cmdCluster   = "NODE_CLUSTER"    // Node's cluster module
	cmdRelay     = "NODE_GM2"        // the preload of a wrapper relaying its children's queries
	cmdHandle    = "NODE_HANDLE"     // a message that carries a descriptor
	cmdHandleAck = "NODE_HANDLE_ACK" // the descriptor arrived
	cmdHandleNak = "NODE_HANDLE_NACK"
)

// Kind says what a line from a worker is.
type Kind int

// Kinds of messages.
const (
	KindOther         Kind = iota // anything else: the app's own process.send messages
	KindReady                     // process.send('ready'): PM2's readiness handshake
	KindQuery                     // queryServer: a listen() or bind() asks for a socket
	KindListening                 // the server of an earlier query listens
	KindClose                     // the server of an earlier query closed
	KindOnline                    // the cluster worker started
	KindDisconnecting             // exitedAfterDisconnect: the worker disconnects on purpose and waits for an ack
	KindHandle                    // the worker sent a descriptor (process.send(msg, handle))
	KindHandleAck                 // the worker received a descriptor
	KindHandleNack                // the worker could not receive a descriptor
)

var kindNames = [...]string{"other", "ready", "query", "listening", "close", "online", "disconnecting", "handle", "handle-ack", "handle-nack"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Message is one decoded line.
type Message struct {
	Kind Kind
	// Cmd is NODE_CLUSTER, or NODE_GM2 for a relayed message; replies use
	// the same.
	Cmd string
	// Seq is the sender's sequence number, echoed as "ack" in the reply:
	// kept as the JSON text it was (a number from Node, any scalar from a
	// relay).
	Seq json.RawMessage
	// Query is set for KindQuery; Address, Port and Network also describe
	// the server of a KindListening message.
	Query Query
	// Key is the key of a KindClose message (as Serve made it: "ID:N").
	Key string
}

// Query is what a worker's listen() or bind() asks for.
type Query struct {
	// Relayed is true when a wrapper's preload relayed the query from a
	// child (npm start).
	Relayed bool
	// Network is "tcp", "udp" or "pipe" (a unix socket path).
	Network string
	// Address is the IP address asked for, "" for every interface; the
	// path for a pipe.
	Address string
	// Family is 4 or 6 (from Node's addressType), 0 when unknown.
	Family int
	// Port is the port, 0 for an ephemeral one, -1 for none (pipes, fds).
	Port int
	// FD is the descriptor the worker named (listen({fd})), -1 for none.
	FD int
	// Flags are libuv's: for TCP 1 = IPv6 only; for UDP 1 = IPv6 only,
	// 4 = SO_REUSEADDR.
	Flags int
	// Data is the server's data, JSON (a TLS server's ticket keys), or nil.
	Data json.RawMessage
	// Tag is the preload's {pid, ref}, nil when the query has none.
	Tag *Tag
}

// Tag identifies a query in the process that sent it. The preload adds it;
// Serve echoes it with the socket's registry ID.
type Tag struct {
	Pid int   `json:"pid"`
	Ref int64 `json:"ref"`
}

// libuv flags in a query.
const (
	uvIPv6Only  = 1
	uvReuseAddr = 4
)

// maxLine bounds a line Serve looks at. Queries are a few hundred bytes;
// an app that sends big objects over the channel with process.send must not
// make gm2-init buffer them.
const maxLine = 64 << 10

// maxReadyJSON is the longest JSON text that can decode to "ready": five
// characters written as \uXXXX escapes, plus the quotes.
const maxReadyJSON = 2 + 5*6

// wire is the union of the fields of the messages Serve reads.
type wire struct {
	Cmd         string          `json:"cmd"`
	Act         string          `json:"act"`
	Seq         json.RawMessage `json:"seq"`
	Address     json.RawMessage `json:"address"`
	Port        json.RawMessage `json:"port"`
	AddressType json.RawMessage `json:"addressType"`
	FD          json.RawMessage `json:"fd"`
	Flags       json.RawMessage `json:"flags"`
	Data        json.RawMessage `json:"data"`
	Key         json.RawMessage `json:"key"`
	GM2         json.RawMessage `json:"gm2"`
}

// errMessage is wrapped by ParseLine's errors.
var errMessage = errors.New("not a message gm2-init acts on")

// ParseLine decodes one line (without its '\n') of Node's JSON
// serialization. Lines that are no JSON object, the app's own messages and
// malformed cluster messages are KindOther, with an error saying why for
// the cluster ones; a caller just ignores them.
func ParseLine(line []byte) (Message, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Message{}, fmt.Errorf("empty line: %w", errMessage)
	}
	if line[0] == '"' {
		if isReady(line) {
			return Message{Kind: KindReady}, nil
		}
		return Message{}, nil
	}
	if line[0] != '{' || len(line) > maxLine {
		return Message{}, nil
	}
	var w wire
	if err := json.Unmarshal(line, &w); err != nil {
		return Message{}, fmt.Errorf("json: %v: %w", err, errMessage)
	}
	switch w.Cmd {
	case cmdHandle:
		return Message{Kind: KindHandle}, nil
	case cmdHandleAck:
		return Message{Kind: KindHandleAck}, nil
	case cmdHandleNak:
		return Message{Kind: KindHandleNack}, nil
	case cmdCluster, cmdRelay:
	default:
		return Message{}, nil
	}
	m := Message{Cmd: w.Cmd, Seq: scalar(w.Seq)}
	switch w.Act {
	case "queryServer", "listening":
		q, err := parseQuery(&w)
		if err != nil {
			return Message{}, fmt.Errorf("%s %s: %w", w.Cmd, w.Act, err)
		}
		q.Relayed = w.Cmd == cmdRelay
		m.Query = q
		m.Kind = KindListening
		if w.Act == "queryServer" {
			if m.Seq == nil {
				return Message{}, fmt.Errorf("%s queryServer without seq: %w", w.Cmd, errMessage)
			}
			m.Kind = KindQuery
		}
	case "close":
		var k string
		if json.Unmarshal(w.Key, &k) == nil {
			m.Key = k
		}
		m.Kind = KindClose
	case "online":
		m.Kind = KindOnline
	case "exitedAfterDisconnect":
		if m.Seq == nil {
			return Message{}, fmt.Errorf("%s exitedAfterDisconnect without seq: %w", w.Cmd, errMessage)
		}
		m.Kind = KindDisconnecting
	default:
		return Message{}, nil
	}
	return m, nil
}

// scalar keeps raw if it is a JSON number or string (what may be echoed as
// an ack), nil otherwise.
func scalar(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || len(raw) > 64 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	switch v.(type) {
	case float64, string:
		return raw
	}
	return nil
}

func parseQuery(w *wire) (Query, error) {
	q := Query{Port: -1, FD: -1}
	if s, ok := jsonString(w.Address); ok {
		q.Address = s
	} else if !jsonNull(w.Address) {
		return q, fmt.Errorf("address %.40s: %w", w.Address, errMessage)
	}
	if t, ok := jsonString(w.AddressType); ok {
		switch t {
		case "udp4":
			q.Network, q.Family = "udp", 4
		case "udp6":
			q.Network, q.Family = "udp", 6
		default:
			return q, fmt.Errorf("addressType %q: %w", t, errMessage)
		}
	} else if n, ok := jsonInt(w.AddressType); ok {
		switch n {
		case 4, 6:
			q.Network, q.Family = "tcp", n
		case -1:
			q.Network = "pipe"
		default:
			return q, fmt.Errorf("addressType %d: %w", n, errMessage)
		}
	} else if jsonNull(w.AddressType) {
		q.Network = "tcp" // listen({fd}): Node sends null
	} else {
		return q, fmt.Errorf("addressType %.40s: %w", w.AddressType, errMessage)
	}
	if n, ok := jsonInt(w.Port); ok {
		q.Port = n
	} else if s, ok := jsonString(w.Port); ok {
		// dgram passes the port as the app gave it, a string included.
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return q, fmt.Errorf("port %q: %w", s, errMessage)
		}
		q.Port = n
	} else if jsonNull(w.Port) {
		q.Port = 0 // dgram bind() without a port
	} else {
		return q, fmt.Errorf("port %.40s: %w", w.Port, errMessage)
	}
	if n, ok := jsonInt(w.FD); ok && n >= 0 {
		q.FD = n
	}
	if n, ok := jsonInt(w.Flags); ok {
		q.Flags = n
	}
	if d := bytes.TrimSpace(w.Data); len(d) > 0 && !jsonNull(d) {
		q.Data = d
	}
	if len(w.GM2) > 0 && !jsonNull(w.GM2) {
		var t Tag
		if err := json.Unmarshal(w.GM2, &t); err == nil && t.Pid > 0 {
			q.Tag = &t
		}
	}
	return q, nil
}

func jsonNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func jsonString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonInt accepts a JSON number that is an integer of a sane size.
func jsonInt(raw json.RawMessage) (int, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || len(raw) > 24 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return 0, false
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || f != float64(int64(f)) || f > 1<<31 || f < -(1<<31) {
		return 0, false
	}
	return int(f), true
}

// isReady reports whether msg is a JSON text equal to the string "ready",
// what process.send('ready') writes.
func isReady(msg []byte) bool {
	if string(msg) == `"ready"` {
		return true
	}
	if len(msg) > maxReadyJSON {
		return false
	}
	var s string
	return json.Unmarshal(msg, &s) == nil && s == "ready"
}

// Spec turns q into what gm2-init binds, with Node's meaning of each field:
// no address is every interface, dual-stack (Node binds "::" and falls back
// to 0.0.0.0); "::" without the IPv6-only flag accepts IPv4 too. It refuses,
// with an error wrapping unix.EINVAL, what a worker keeps for itself: port 0,
// pipes and fds (the preload makes those exclusive, so they never get here).
func (q Query) Spec() (sockets.Spec, error) {
	var s sockets.Spec
	switch {
	case q.Network == "pipe":
		return s, fmt.Errorf("unix socket %q: a path is never shared on demand: %w", q.Address, unix.EINVAL)
	case q.FD >= 0:
		return s, fmt.Errorf("fd %d: a descriptor of the worker is never shared on demand: %w", q.FD, unix.EINVAL)
	case q.Network != "tcp" && q.Network != "udp":
		return s, fmt.Errorf("network %q: %w", q.Network, unix.EINVAL)
	case q.Port < 1 || q.Port > 65535:
		return s, fmt.Errorf("port %d: an ephemeral or invalid port is never shared: %w", q.Port, unix.EINVAL)
	}
	s.Network = sockets.Network(q.Network)
	v6only := q.Flags&uvIPv6Only != 0
	host := ""
	if q.Address != "" {
		ip := net.ParseIP(q.Address)
		if ip == nil {
			return s, fmt.Errorf("address %q is not an IP address: %w", q.Address, unix.EINVAL)
		}
		if ip.To4() != nil {
			if q.Network == "udp" && q.Family == 6 {
				return s, fmt.Errorf("udp6 socket on IPv4 address %s: %w", q.Address, unix.EAFNOSUPPORT)
			}
			s.Family, host = "4", ip.To4().String()
		} else {
			if q.Network == "udp" && q.Family == 4 {
				return s, fmt.Errorf("udp4 socket on IPv6 address %s: %w", q.Address, unix.EAFNOSUPPORT)
			}
			s.Family, host = "6", ip.String()
			s.DualStack = ip.Equal(net.IPv6unspecified) && !v6only
		}
	} else {
		switch {
		case q.Network == "udp" && q.Family == 6:
			s.Family, host, s.DualStack = "6", "::", !v6only
		case q.Network == "udp":
			s.Family, host = "4", "0.0.0.0"
		case v6only:
			s.Family, host = "6", "::"
		}
	}
	if q.Network == "udp" {
		s.ReuseAddr = q.Flags&uvReuseAddr != 0
	}
	s.Addr = net.JoinHostPort(host, strconv.Itoa(q.Port))
	s.Raw = s.String()
	s.Name = fmt.Sprintf("%s-%d", q.Network, q.Port)
	return s, nil
}
