package sockets

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// AcceptQueue is what the kernel reports of a listening TCP socket's accept
// queue: connections whose handshake is complete and that no process has
// accepted yet.
type AcceptQueue struct {
	// Len is how many connections wait for accept(2) now.
	Len int
	// Backlog is the queue's capacity: listen(2)'s backlog, capped at
	// net.core.somaxconn. The kernel lets the queue reach Backlog+1; after
	// that it drops new handshakes, and clients retry their SYN.
	Backlog int
}

// ErrNotTCPListener is returned by ReadAcceptQueue for a socket that is not
// a listening TCP socket (a unix or UDP socket has no accept queue to read
// this way).
var ErrNotTCPListener = errors.New("not a listening TCP socket")

// tcpListen is TCP_LISTEN, the state of a listening socket
// (include/net/tcp_states.h); golang.org/x/sys does not name it.
const tcpListen = 10

// ReadAcceptQueue reads f's accept queue with getsockopt(TCP_INFO). On a
// listening socket the kernel reuses two fields of struct tcp_info: tcpi_unacked
// is the queue's length (sk_ack_backlog) and tcpi_sacked its capacity
// (sk_max_ack_backlog) — what `ss -lnt` shows as Recv-Q and Send-Q.
//
// gm2-init holds every listening socket it passes to workers, so it can read
// their queues without accepting anything: a queue that fills while no
// worker takes from it is the sign that the workers do not serve the socket
// (issue 16). The read is one system call and does not touch the queue.
//
// f stays the caller's: it is only used through its descriptor for the
// duration of the call, which os.File makes safe against a concurrent Close
// (the call then fails, and never reads another descriptor's queue).
func ReadAcceptQueue(f *os.File) (AcceptQueue, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return AcceptQueue{}, fmt.Errorf("accept queue of %s: %w", f.Name(), err)
	}
	var q AcceptQueue
	var qerr error
	if err := rc.Control(func(fd uintptr) { q, qerr = readAcceptQueueFD(int(fd)) }); err != nil {
		return AcceptQueue{}, fmt.Errorf("accept queue of %s: %w", f.Name(), err)
	}
	if qerr != nil {
		return AcceptQueue{}, fmt.Errorf("accept queue of %s: %w", f.Name(), qerr)
	}
	return q, nil
}

func readAcceptQueueFD(fd int) (AcceptQueue, error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.ENOTSOCK):
		// Not TCP (the protocol does not know TCP_INFO), or no socket.
		return AcceptQueue{}, fmt.Errorf("%w (%w)", ErrNotTCPListener, err)
	case err != nil:
		return AcceptQueue{}, fmt.Errorf("getsockopt TCP_INFO: %w", err)
	case info.State != tcpListen:
		return AcceptQueue{}, fmt.Errorf("%w (TCP state %d)", ErrNotTCPListener, info.State)
	}
	return AcceptQueue{Len: int(info.Unacked), Backlog: int(info.Sacked)}, nil
}
