package sockets

// WaitingConnections tells which connections wait in a listener's accept
// queue, through the kernel's socket diagnostics (NETLINK_SOCK_DIAG, what
// `ss` uses). The queue's length (ReadAcceptQueue) says how many wait, not
// which; a queue that stays at 20 may be stuck, or busy with every accept
// refilled at once by a new client. Which connections wait tells them apart.
//
// A connection that no process has accepted yet has no socket inode: its
// struct socket is made by accept(2). So the listener's waiting connections
// are its established (or CLOSE_WAIT: the client already gave up)
// connections with inode 0. Each is named by its socket cookie, a number
// the kernel never gives to another socket while it lives, so a connection
// seen waiting at one reading and gone at a later one was accepted (or,
// rarely, reset by its client).
//
// The request asks the kernel to filter by local port and state, so the
// answer holds only the listener's connections; the kernel walks its
// connection hash table, skipping empty buckets (about a millisecond on a
// host with 262,144 buckets, where reading /proc/net/tcp takes 20 ms).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// MaxWaitingConnections bounds what WaitingConnections returns (8 bytes
// each): a longer queue is reported by its first MaxWaitingConnections.
const MaxWaitingConnections = 8192

// Sizes and offsets of the kernel's structures (linux/inet_diag.h).
const (
	sizeofSockID  = 48 // struct inet_diag_sockid
	sizeofDiagReq = 8 + sizeofSockID
	sizeofDiagMsg = 4 + sizeofSockID + 20 // struct inet_diag_msg
	// Within struct inet_diag_msg.
	offMsgState  = 1
	offMsgSport  = 4
	offMsgSrc    = 8
	offMsgCookie = 4 + 40
	offMsgInode  = 4 + sizeofSockID + 16
)

// TCP states (include/net/tcp_states.h) and their bits in idiag_states.
const (
	tcpEstablished = 1
	tcpCloseWait   = 8
)

// WaitingConnections returns the socket cookies of the connections waiting
// in the accept queue of the listening TCP socket f, sorted, at most
// MaxWaitingConnections of them.
func WaitingConnections(f *os.File) ([]uint64, error) {
	local, family, err := localAddr(f)
	if err != nil {
		return nil, fmt.Errorf("waiting connections of %s: %w", f.Name(), err)
	}
	cookies, err := dumpWaiting(family, local)
	if err != nil {
		return nil, fmt.Errorf("waiting connections of %s: %w", f.Name(), err)
	}
	return cookies, nil
}

// localAddr returns the address f is bound to and its family.
func localAddr(f *os.File) (netip.AddrPort, uint8, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return netip.AddrPort{}, 0, err
	}
	if serr != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("getsockname: %w", serr)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), unix.AF_INET, nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)), unix.AF_INET6, nil
	}
	return netip.AddrPort{}, 0, ErrNotTCPListener
}

// dumpWaiting asks the kernel for the family's TCP connections on local's
// port and keeps those waiting for accept.
func dumpWaiting(family uint8, local netip.AddrPort) ([]uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	// The kernel answers at once; the timeout only bounds a broken one.
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("sock_diag timeout: %w", err)
	}
	const seq = 1
	if err := unix.Sendto(fd, diagRequest(family, local.Port(), seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	var out []uint64
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag answer: %w", err)
		}
		var done bool
		out, done, err = parseDiag(buf[:n], seq, local, out)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// diagRequest is a SOCK_DIAG_BY_FAMILY dump request for TCP connections of
// family on local port port, established or in CLOSE_WAIT.
func diagRequest(family uint8, port uint16, seq uint32) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+sizeofDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	r := b[unix.SizeofNlMsghdr:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 1<<tcpEstablished|1<<tcpCloseWait)
	binary.BigEndian.PutUint16(r[8:], port) // id.idiag_sport, network order
	return b
}

// errDiagTruncated: a message shorter than it says, or than its type needs.
var errDiagTruncated = errors.New("sock_diag: truncated message")

// parseDiag parses one datagram of the kernel's answer, appending the
// cookies of waiting connections on local's address to out; done at the
// end of the dump.
func parseDiag(b []byte, seq uint32, local netip.AddrPort, out []uint64) ([]uint64, bool, error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < unix.SizeofNlMsghdr {
			return out, false, errDiagTruncated
		}
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		mseq := ne.Uint32(b[8:])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return out, false, errDiagTruncated
		}
		msg := b[unix.SizeofNlMsghdr:l]
		b = b[min(len(b), (l+3)&^3):] // messages are 4-byte aligned
		if mseq != seq {
			continue // not an answer to this request
		}
		switch typ {
		case unix.NLMSG_DONE:
			return out, true, nil
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return out, false, errDiagTruncated
			}
			if e := int32(ne.Uint32(msg)); e != 0 {
				return out, false, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
			}
			return out, true, nil
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(msg) < sizeofDiagMsg {
				return out, false, errDiagTruncated
			}
			if c, ok := waitingCookie(msg, local); ok && len(out) < MaxWaitingConnections {
				out = append(out, c)
			}
		}
	}
	return out, false, nil
}

// waitingCookie returns the cookie of the connection an inet_diag_msg
// describes, if it waits in the accept queue of the listener bound to
// local.
func waitingCookie(m []byte, local netip.AddrPort) (uint64, bool) {
	ne := binary.NativeEndian
	state := m[offMsgState]
	if state != tcpEstablished && state != tcpCloseWait || ne.Uint32(m[offMsgInode:]) != 0 {
		return 0, false
	}
	if binary.BigEndian.Uint16(m[offMsgSport:]) != local.Port() {
		return 0, false
	}
	if !local.Addr().IsUnspecified() {
		var a netip.Addr
		if m[0] == unix.AF_INET {
			a = netip.AddrFrom4([4]byte(m[offMsgSrc : offMsgSrc+4]))
		} else {
			a = netip.AddrFrom16([16]byte(m[offMsgSrc : offMsgSrc+16]))
		}
		if a.Unmap() != local.Addr().Unmap() {
			return 0, false
		}
	}
	return ne.Uint64(m[offMsgCookie:]), true
}
