package nodeipc

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Lines as Node 18, 20 and 22 write them (captured from real workers).
const (
	lineQuery    = `{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":null,"port":3000,"addressType":4,"flags":0,"backlog":511,"gm2":{"pid":42,"ref":1},"seq":1}`
	lineQueryUDP = `{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"0.0.0.0","port":"5353","addressType":"udp4","fd":-1,"flags":4,"seq":2}`
	lineOnline   = `{"cmd":"NODE_CLUSTER","act":"online","seq":0}`
)

func TestParseLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		kind Kind
		cmd  string
		seq  string
		q    Query
		key  string
	}{
		{`"ready"`, KindReady, "", "", Query{}, ""},
		{` "\u0072eady" `, KindReady, "", "", Query{}, ""},
		{`"readyy"`, KindOther, "", "", Query{}, ""},
		{`{"hello":"app"}`, KindOther, "", "", Query{}, ""},
		{`42`, KindOther, "", "", Query{}, ""},
		{lineOnline, KindOnline, "NODE_CLUSTER", "0", Query{}, ""},
		{lineQuery, KindQuery, "NODE_CLUSTER", "1", Query{Network: "tcp", Family: 4, Port: 3000, FD: -1, Tag: &Tag{Pid: 42, Ref: 1}}, ""},
		{lineQueryUDP, KindQuery, "NODE_CLUSTER", "2", Query{Network: "udp", Family: 4, Address: "0.0.0.0", Port: 5353, FD: -1, Flags: 4}, ""},
		{`{"cmd":"NODE_GM2","act":"queryServer","address":"::","port":80,"addressType":6,"seq":7,"data":{"ticketKeys":"ab"}}`, KindQuery, "NODE_GM2", "7",
			Query{Relayed: true, Network: "tcp", Family: 6, Address: "::", Port: 80, FD: -1, Data: []byte(`{"ticketKeys":"ab"}`)}, ""},
		{`{"cmd":"NODE_CLUSTER","act":"queryServer","address":null,"port":null,"addressType":null,"fd":3,"seq":3}`, KindQuery, "NODE_CLUSTER", "3",
			Query{Network: "tcp", FD: 3}, ""},
		{`{"cmd":"NODE_CLUSTER","act":"queryServer","address":"/run/a.sock","port":-1,"addressType":-1,"seq":4}`, KindQuery, "NODE_CLUSTER", "4",
			Query{Network: "pipe", Address: "/run/a.sock", Port: -1, FD: -1}, ""},
		{`{"cmd":"NODE_CLUSTER","act":"listening","address":null,"port":3000,"addressType":4,"seq":5}`, KindListening, "NODE_CLUSTER", "5",
			Query{Network: "tcp", Family: 4, Port: 3000, FD: -1}, ""},
		{`{"cmd":"NODE_CLUSTER","act":"close","key":"1:2","seq":6}`, KindClose, "NODE_CLUSTER", "6", Query{}, "1:2"},
		{`{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect","seq":8}`, KindDisconnecting, "NODE_CLUSTER", "8", Query{}, ""},
		{`{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"x":1}}`, KindHandle, "", "", Query{}, ""},
		{`{"cmd":"NODE_HANDLE_ACK"}`, KindHandleAck, "", "", Query{}, ""},
		{`{"cmd":"NODE_HANDLE_NACK"}`, KindHandleNack, "", "", Query{}, ""},
		{`{"cmd":"NODE_CLUSTER","act":"whatever","seq":9}`, KindOther, "", "", Query{}, ""},
		{`{"cmd":"NODE_OTHER","act":"queryServer","seq":9}`, KindOther, "", "", Query{}, ""},
		// A relay's seq may be a string, echoed as it came; a tag without a
		// pid is no tag.
		{`{"cmd":"NODE_GM2","act":"queryServer","port":3000,"addressType":4,"gm2":{"pid":0,"ref":1},"seq":"relay-0123456789abcdef"}`, KindQuery, "NODE_GM2", `"relay-0123456789abcdef"`,
			Query{Relayed: true, Network: "tcp", Family: 4, Port: 3000, FD: -1}, ""},
		// listen({fd: 0}): descriptor 0 is a descriptor like any other.
		{`{"cmd":"NODE_CLUSTER","act":"queryServer","address":null,"port":null,"addressType":null,"fd":0,"seq":10}`, KindQuery, "NODE_CLUSTER", "10",
			Query{Network: "tcp", FD: 0}, ""},
		// dgram takes the port as the app gave it, and Node's validatePort
		// reads " 5353 " as 5353.
		{`{"cmd":"NODE_CLUSTER","act":"queryServer","address":"0.0.0.0","port":" 5353 ","addressType":"udp4","seq":11}`, KindQuery, "NODE_CLUSTER", "11",
			Query{Network: "udp", Family: 4, Address: "0.0.0.0", Port: 5353, FD: -1}, ""},
	}
	for _, tt := range tests {
		m, err := ParseLine([]byte(tt.line))
		if err != nil {
			t.Errorf("ParseLine(%s): %v", tt.line, err)
			continue
		}
		if m.Kind != tt.kind || m.Cmd != tt.cmd || string(m.Seq) != tt.seq || m.Key != tt.key {
			t.Errorf("ParseLine(%s) = %v %q seq %s key %q, want %v %q %s %q", tt.line, m.Kind, m.Cmd, m.Seq, m.Key, tt.kind, tt.cmd, tt.seq, tt.key)
		}
		if !sameQuery(m.Query, tt.q) {
			t.Errorf("ParseLine(%s).Query = %+v, want %+v", tt.line, m.Query, tt.q)
		}
	}
}

func sameQuery(a, b Query) bool {
	if (a.Tag == nil) != (b.Tag == nil) || (a.Tag != nil && *a.Tag != *b.Tag) {
		return false
	}
	return a.Relayed == b.Relayed && a.Network == b.Network && a.Address == b.Address && a.Family == b.Family &&
		a.Port == b.Port && a.FD == b.FD && a.Flags == b.Flags && string(a.Data) == string(b.Data)
}

func TestParseLineRefuses(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		``, `   `, `{`, `{"cmd":"NODE_CLUSTER",`,
		`{"cmd":"NODE_CLUSTER","act":"queryServer","port":3000,"addressType":4}`,             // no seq to answer
		`{"cmd":"NODE_CLUSTER","act":"queryServer","port":3000,"addressType":"tcp","seq":1}`, // unknown type
		`{"cmd":"NODE_CLUSTER","act":"queryServer","port":3000,"addressType":5,"seq":1}`,     // unknown type
		`{"cmd":"NODE_CLUSTER","act":"queryServer","port":"x","addressType":4,"seq":1}`,      // port
		`{"cmd":"NODE_CLUSTER","act":"queryServer","port":{},"addressType":4,"seq":1}`,       // port
		`{"cmd":"NODE_CLUSTER","act":"queryServer","address":7,"port":1,"addressType":4,"seq":1}`,
		`{"cmd":"NODE_CLUSTER","act":"exitedAfterDisconnect"}`,
		`{"cmd":"NODE_CLUSTER","act":"queryServer","port":1,"addressType":4,"seq":{"a":1}}`, // seq not a scalar
	} {
		m, err := ParseLine([]byte(line))
		if err == nil && m.Kind != KindOther {
			t.Errorf("ParseLine(%s) = %v, want an error or KindOther", line, m.Kind)
		}
		if m.Kind == KindQuery {
			t.Errorf("ParseLine(%s) is a query", line)
		}
	}
}

func TestQuerySpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		q    Query
		want sockets.Spec
	}{
		// listen(3000): no address, Node binds :: dual-stack (0.0.0.0 without IPv6).
		{Query{Network: "tcp", Family: 4, Port: 3000, FD: -1}, sockets.Spec{Network: sockets.TCP, Addr: ":3000"}},
		// listen({port, ipv6Only: true})
		{Query{Network: "tcp", Family: 4, Port: 3000, FD: -1, Flags: 1}, sockets.Spec{Network: sockets.TCP, Family: "6", Addr: "[::]:3000"}},
		{Query{Network: "tcp", Family: 4, Address: "127.0.0.1", Port: 80, FD: -1}, sockets.Spec{Network: sockets.TCP, Family: "4", Addr: "127.0.0.1:80"}},
		{Query{Network: "tcp", Family: 6, Address: "::", Port: 80, FD: -1}, sockets.Spec{Network: sockets.TCP, Family: "6", Addr: "[::]:80", DualStack: true}},
		{Query{Network: "tcp", Family: 6, Address: "::", Port: 80, FD: -1, Flags: 1}, sockets.Spec{Network: sockets.TCP, Family: "6", Addr: "[::]:80"}},
		{Query{Network: "tcp", Family: 6, Address: "::1", Port: 80, FD: -1}, sockets.Spec{Network: sockets.TCP, Family: "6", Addr: "[::1]:80"}},
		{Query{Network: "udp", Family: 4, Address: "0.0.0.0", Port: 53, FD: -1, Flags: 4}, sockets.Spec{Network: sockets.UDP, Family: "4", Addr: "0.0.0.0:53", ReuseAddr: true}},
		{Query{Network: "udp", Family: 6, Address: "::", Port: 53, FD: -1}, sockets.Spec{Network: sockets.UDP, Family: "6", Addr: "[::]:53", DualStack: true}},
		{Query{Network: "udp", Family: 6, Port: 53, FD: -1, Flags: 1}, sockets.Spec{Network: sockets.UDP, Family: "6", Addr: "[::]:53"}},
		{Query{Network: "tcp", Family: 4, Port: 65535, FD: -1}, sockets.Spec{Network: sockets.TCP, Addr: ":65535"}},
		{Query{Network: "tcp", Family: 4, Port: 1, FD: -1}, sockets.Spec{Network: sockets.TCP, Addr: ":1"}},
	}
	for _, tt := range tests {
		got, err := tt.q.Spec()
		if err != nil {
			t.Errorf("%+v.Spec(): %v", tt.q, err)
			continue
		}
		if got.Network != tt.want.Network || got.Family != tt.want.Family || got.Addr != tt.want.Addr ||
			got.DualStack != tt.want.DualStack || got.ReuseAddr != tt.want.ReuseAddr || got.Raw == "" || got.Name == "" {
			t.Errorf("%+v.Spec() = %+v, want %+v", tt.q, got, tt.want)
		}
	}
	for _, q := range []Query{
		{Network: "tcp", Family: 4, Port: 0, FD: -1},
		{Network: "tcp", Port: -1, FD: 3},
		{Network: "tcp", Family: 4, Port: 3000, FD: 3},
		{Network: "pipe", Address: "/run/a.sock", Port: -1, FD: -1},
		{Network: "tcp", Family: 4, Port: 70000, FD: -1},
		{Network: "tcp", Family: 4, Address: "localhost", Port: 80, FD: -1},
		{Network: "udp", Family: 6, Address: "127.0.0.1", Port: 80, FD: -1},
		{Network: "udp", Family: 4, Address: "::1", Port: 80, FD: -1},
	} {
		_, err := q.Spec()
		var errno unixErrno
		if err == nil || !errors.As(err, &errno) {
			t.Errorf("%+v.Spec() = %v, want an error with an errno", q, err)
		}
	}
}

type unixErrno = unix.Errno

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{lineQuery, lineQueryUDP, lineOnline, `"ready"`, `{"cmd":"NODE_HANDLE_ACK"}`,
		`{"cmd":"NODE_CLUSTER","act":"close","key":"1:2","seq":6}`, strings.Repeat("{", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := ParseLine(line)
		if err != nil && m.Kind != KindOther {
			t.Fatalf("error %v with kind %v", err, m.Kind)
		}
		if m.Kind == KindQuery {
			if m.Seq == nil {
				t.Fatal("a query without seq")
			}
			// Spec must never panic, and only return specs it can bind.
			if s, err := m.Query.Spec(); err == nil {
				if p := s.Port(); p < 1 || p > 65535 {
					t.Fatalf("spec %+v with port %d", s, p)
				}
			}
		}
	})
}
