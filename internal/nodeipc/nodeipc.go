// Package nodeipc is gm2-init's end of Node's IPC channel: it makes
// gm2-init the cluster primary of its Node workers, in the shared-handle
// mode, so that an unmodified app's listen(3000) gets a socket gm2-init binds
// on the first request and holds for its whole life.
//
// # Why
//
// PM2's cluster mode needs no port declared: the app runs as a cluster
// worker, and Node's cluster module asks the primary for every port the app
// listens on ("queryServer"); the primary binds it once and hands the same
// socket to every worker. A worker that calls listen(3000) without a primary
// binds the port itself, so the second worker of `gm2-init -i 4 -- node
// app.js` would die with EADDRINUSE. Speaking the primary's side of that
// protocol is what lets gm2-init share the app's own ports without --listen.
//
// The protocol is Node's own (lib/internal/cluster/child.js and primary.js,
// lib/internal/child_process.js, identical in Node 18, 20 and 22):
//
//   - the channel is an AF_UNIX SOCK_STREAM socketpair; the worker finds its
//     end in NODE_CHANNEL_FD, and with NODE_CHANNEL_SERIALIZATION_MODE=json
//     every message is JSON.stringify(msg) and '\n';
//   - a cluster worker's listen() or dgram bind() that is not exclusive
//     sends {cmd:"NODE_CLUSTER", act:"queryServer", seq, address, port,
//     addressType, fd, flags, backlog, index, data};
//   - the primary answers {cmd:"NODE_HANDLE", type:"net.Native" (or
//     "dgram.Native"), msg:{cmd:"NODE_CLUSTER", ack:seq, key, errno:0,
//     data}} with the listening socket in SCM_RIGHTS on the same sendmsg;
//     Node turns it into a server handle ("shared handle" mode: the worker
//     accepts on the socket itself, so gm2-init is never in the data path);
//   - or, on failure, {cmd:"NODE_CLUSTER", ack:seq, errno:-98} with no
//     socket: errno is libuv's (the negative Linux errno), which the worker
//     turns into the EADDRINUSE or EACCES error its listen() emits;
//   - the worker acknowledges every socket with {cmd:"NODE_HANDLE_ACK"}
//     (or NODE_HANDLE_NACK when it could not receive it), and reports
//     "online", "listening", "close" and "exitedAfterDisconnect" (which
//     expects an ack).
//
// Node makes a process a cluster worker only when NODE_UNIQUE_ID is in its
// environment. gm2-init does not set it: a program between gm2-init and node
// that closes inherited fds but keeps the environment (Python's subprocess,
// Go's os/exec) would start a node that dies on the first write to a channel
// it does not have. gm2-init sets GM2_NODE_CLUSTER instead, and the preload
// (package preload) turns the process into a cluster worker only after
// checking that NODE_CHANNEL_FD really is a socket.
//
// The preload adds two things to the protocol, both ignored by Node: a
// "gm2" object {pid, ref} in each query, which gm2-init echoes with the
// socket's registry id added, so that a worker can tell which on-demand
// socket it listens on and ignore a reply meant for another process on the
// same channel; and the command "NODE_GM2", with which a wrapper's preload
// (npm start) relays its children's queries.
package nodeipc

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Environment variables of a worker's channel.
const (
	// EnvChannelFD is Node's NODE_CHANNEL_FD: the fd of the worker's end.
	EnvChannelFD = "NODE_CHANNEL_FD"
	// EnvSerialization is Node's NODE_CHANNEL_SERIALIZATION_MODE.
	EnvSerialization = "NODE_CHANNEL_SERIALIZATION_MODE"
	// EnvCluster carries the worker id (cluster.worker.id) and tells the
	// preload that the channel is gm2-init's, so that it makes the process
	// a cluster worker (see the package doc).
	EnvCluster = "GM2_NODE_CLUSTER"
)

// NewChannel creates the channel of one worker: an AF_UNIX SOCK_STREAM
// socketpair, both ends close-on-exec. Pass child in the worker's files (the
// exec dups it to a descriptor without close-on-exec), give the worker
// Env(fd, id), close child after the fork, and run Serve on parent.
//
// parent is non-blocking and in the runtime poller, so that Serve can be
// stopped; child stays blocking, because the flag belongs to the open file,
// which the worker shares, and a program that is not Node may not expect a
// non-blocking descriptor.
func NewChannel() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("nodeipc: socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		_ = unix.Close(fds[1])
		return nil, nil, fmt.Errorf("nodeipc: socketpair: set non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "node-ipc"), os.NewFile(uintptr(fds[1]), "node-ipc-child"), nil
}

// Env returns the environment entries that give a worker the channel whose
// child end it has at fd: Node's NODE_CHANNEL_FD with JSON serialization
// (the only one Serve speaks), and GM2_NODE_CLUSTER with the worker id id
// (at least 1; Node's own primary numbers its workers 1, 2, … in fork
// order, and cluster.worker.id shows it).
func Env(fd, id int) []string {
	if id < 1 {
		id = 1
	}
	return []string{
		EnvChannelFD + "=" + strconv.Itoa(fd),
		EnvSerialization + "=json",
		EnvCluster + "=" + strconv.Itoa(id),
	}
}
