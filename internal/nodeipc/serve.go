package nodeipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Handler is what Serve calls for a worker's messages. Every function runs
// on Serve's goroutine, one message at a time, and must return quickly: the
// worker's listen() waits for the answer. A nil function is skipped.
type Handler struct {
	// Query answers a listen() or bind(). Serve sends the reply; it never
	// closes Reply.File, which the caller keeps (gm2-init holds every
	// shared socket for its whole life). A nil Query refuses every query
	// with EADDRNOTAVAIL.
	Query func(Query) Reply
	// Ready is called for the first process.send('ready') of the
	// channel; later ones say nothing new (and a worker that sends them
	// in a loop must not flood the supervisor).
	Ready func()
	// Event is called for the other cluster messages: KindListening,
	// KindClose, KindOnline, KindDisconnecting.
	Event func(Message)
	// Held is called with a Reply's ID once its socket was passed to the
	// worker; Released once that server closed it (KindClose) or the
	// channel ended with it still open: who holds which socket.
	Held, Released func(id int)
}

// Reply is the answer to a Query.
type Reply struct {
	// File is the socket to pass; nil when Errno is set.
	File *os.File
	// UDP makes the socket a "dgram.Native" handle ("net.Native" otherwise).
	UDP bool
	// Errno is why there is no socket: the worker's listen() fails with it
	// (EADDRINUSE, EACCES …).
	Errno syscall.Errno
	// ID is the registry's id of the socket, echoed to the preload.
	ID int
	// Data is the server data to hand back (JSON), nil for none.
	Data json.RawMessage
	// Created: this query bound the socket (the first worker to ask).
	Created bool
}

// readBuf is the size of one read; longer lines are gathered up to maxLine.
const readBuf = 16 << 10

// maxInFlight bounds the sockets remembered until the worker acknowledges
// them (for a resend on NODE_HANDLE_NACK). A worker acknowledges each at
// once; more than this means acknowledgements were lost with a process
// that died, and the oldest are forgotten.
const maxInFlight = 64

// maxResends is how often a socket the worker could not receive is sent
// again, as Node's own sender does, before its listen() gets EMFILE.
const maxResends = 3

// Serve is the primary's side of one worker's channel: it reads the
// worker's messages until the worker side is closed (every process holding
// it exited) or ctx ends, and answers them. It returns nil at the end of the
// channel and ctx.Err() when ctx ended; conn stays open either way: the
// caller closes it, and must not before the worker is gone, because a Node
// cluster worker exits as soon as its channel disconnects.
//
// Descriptors the worker sends (process.send(msg, handle)) are closed and
// acknowledged, so that the worker's later messages are not held back
// waiting for that acknowledgement. Every line that is not understood is
// ignored; a worker cannot make Serve stop or buffer more than maxLine.
func Serve(ctx context.Context, conn *os.File, h Handler) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("nodeipc: serve: %w", err)
	}
	// A deadline in the past wakes a blocked read or write when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s := &server{rc: rc, h: h, held: map[string]int{}}
	defer s.releaseAll()
	buf := make([]byte, readBuf)
	oob := make([]byte, unix.CmsgSpace(16*4))
	var line []byte
	skipping := false
	for {
		n, err := s.recv(buf, oob)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, syscall.ECONNRESET) {
				return nil
			}
			return fmt.Errorf("nodeipc: read: %w", err)
		}
		if n == 0 {
			return nil
		}
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if !skipping && len(line)+len(data) > maxLine {
					skipping, line = true, nil
				}
				if !skipping {
					line = append(line, data...)
				}
				break
			}
			if !skipping {
				var l []byte
				if len(line) > 0 {
					line = append(line, data[:i]...)
					l = line
				} else {
					l = data[:i]
				}
				if len(l) <= maxLine {
					if err := s.handle(l); err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						return err
					}
				}
			}
			skipping = false
			line = line[:0]
			if cap(line) > readBuf {
				line = nil
			}
			data = data[i+1:]
		}
	}
}

// server is the state of one Serve call.
type server struct {
	rc       syscall.RawConn
	h        Handler
	seq      int64          // our own message counter, as Node's primary sends one
	replies  int64          // makes every key unique (see reply)
	inFlight []inFlight     // sockets sent and not acknowledged yet, oldest first
	ready    bool           // Ready was called
	held     map[string]int // key → socket id of the sockets the worker holds
}

type inFlight struct {
	msg    []byte // the whole NODE_HANDLE line
	file   *os.File
	failed []byte // the error reply to send when the resends are used up
	sends  int
	key    string
}

// hold and release keep s.held and tell the handler.
func (s *server) hold(key string, id int) {
	s.held[key] = id
	if s.h.Held != nil {
		s.h.Held(id)
	}
}

func (s *server) release(key string) {
	id, ok := s.held[key]
	if !ok {
		return
	}
	delete(s.held, key)
	if s.h.Released != nil {
		s.h.Released(id)
	}
}

func (s *server) releaseAll() {
	for key := range s.held {
		s.release(key)
	}
}

// recv reads once, closing every descriptor that came along: a worker has
// nothing to hand gm2-init, and a descriptor left open would leak.
func (s *server) recv(buf, oob []byte) (int, error) {
	var n, oobn int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if oobn > 0 {
		closeRights(oob[:oobn])
	}
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}

func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}
}

// handle acts on one line. Only a failed write is an error: the channel is
// then unusable.
func (s *server) handle(line []byte) error {
	m, err := ParseLine(line)
	if err != nil {
		return nil
	}
	switch m.Kind {
	case KindReady:
		if s.h.Ready != nil && !s.ready {
			s.ready = true
			s.h.Ready()
		}
	case KindQuery:
		var r Reply
		if s.h.Query != nil {
			r = s.h.Query(m.Query)
		} else {
			r = Reply{Errno: unix.EADDRNOTAVAIL}
		}
		return s.reply(m, r)
	case KindDisconnecting:
		if s.h.Event != nil {
			s.h.Event(m)
		}
		return s.write(s.encode(map[string]any{"cmd": m.Cmd, "ack": m.Seq}), nil)
	case KindListening, KindClose, KindOnline:
		if m.Kind == KindClose {
			s.release(m.Key)
		}
		if s.h.Event != nil {
			s.h.Event(m)
		}
	case KindHandle:
		// Its descriptor was closed by recv.
		return s.write([]byte(`{"cmd":"`+cmdHandleAck+`"}`+"\n"), nil)
	case KindHandleAck:
		if len(s.inFlight) > 0 {
			s.inFlight = s.inFlight[1:]
		}
	case KindHandleNack:
		return s.resend()
	}
	return nil
}

// reply answers query m with r. The key is unique per reply: Node's cluster
// worker keeps its handles by key and asserts that a key is new, so two
// servers of one process on one socket need two keys.
func (s *server) reply(m Message, r Reply) error {
	s.replies++
	body := map[string]any{
		"cmd":  m.Cmd,
		"ack":  m.Seq,
		"data": r.Data,
	}
	if r.Data == nil {
		body["data"] = nil
	}
	if m.Query.Tag != nil {
		body["gm2"] = map[string]any{"pid": m.Query.Tag.Pid, "ref": m.Query.Tag.Ref, "id": r.ID}
	}
	if r.File == nil || r.Errno != 0 {
		errno := r.Errno
		if errno == 0 {
			errno = unix.EADDRNOTAVAIL
		}
		body["errno"] = -int(errno)
		body["key"] = nil
		return s.write(s.encode(body), nil)
	}
	key := strconv.Itoa(r.ID) + ":" + strconv.FormatInt(s.replies, 10)
	body["errno"] = 0
	body["key"] = key
	typ := "net.Native"
	if r.UDP {
		typ = "dgram.Native"
	}
	msg := s.encode(map[string]any{"cmd": cmdHandle, "type": typ, "msg": body})
	body["errno"] = -int(unix.EMFILE)
	body["key"] = nil
	failed := s.encode(body)
	if len(s.inFlight) >= maxInFlight {
		s.inFlight = s.inFlight[1:]
	}
	s.inFlight = append(s.inFlight, inFlight{msg: msg, file: r.File, failed: failed, sends: 1, key: key})
	s.hold(key, r.ID)
	return s.write(msg, r.File)
}

// resend answers NODE_HANDLE_NACK: the oldest socket in flight did not
// arrive (the worker was out of descriptors: the kernel drops them).
func (s *server) resend() error {
	if len(s.inFlight) == 0 {
		return nil
	}
	f := &s.inFlight[0]
	if f.sends <= maxResends {
		f.sends++
		return s.write(f.msg, f.file)
	}
	failed, key := f.failed, f.key
	s.inFlight = s.inFlight[1:]
	s.release(key) // the worker never got it
	return s.write(failed, nil)
}

// encode marshals v as one JSON line. Every value comes from Go maps, raw
// JSON already validated by the decoder, strings and numbers: it cannot
// fail, and a worker parses whatever Serve writes with JSON.parse.
func (s *server) encode(v map[string]any) []byte {
	s.seq++
	if _, ok := v["msg"]; !ok {
		v["seq"] = s.seq
	} else if inner, ok := v["msg"].(map[string]any); ok {
		inner["seq"] = s.seq
	}
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"cmd":"NODE_GM2_ERROR"}`)
	}
	return append(b, '\n')
}

// write sends msg whole, with f's descriptor in SCM_RIGHTS on the first
// sendmsg when f is not nil: Node expects the descriptor with the line that
// names it. A worker that is gone (EPIPE) is not an error here: the next read
// sees the end of the channel.
func (s *server) write(msg []byte, f *os.File) error {
	var err error
	if f == nil {
		err = s.send(msg, nil)
	} else {
		fc, cerr := f.SyscallConn()
		if cerr != nil {
			return fmt.Errorf("nodeipc: socket to pass: %w", cerr)
		}
		// Inside Control, f cannot be closed under the sendmsg.
		if cerr := fc.Control(func(sfd uintptr) { err = s.send(msg, unix.UnixRights(int(sfd))) }); cerr != nil {
			return fmt.Errorf("nodeipc: socket to pass: %w", cerr)
		}
	}
	if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
		return nil
	}
	return err
}

func (s *server) send(msg, oob []byte) error {
	for len(msg) > 0 {
		var n int
		var werr error
		err := s.rc.Write(func(fd uintptr) bool {
			n, werr = unix.SendmsgN(int(fd), msg, oob, nil, unix.MSG_NOSIGNAL)
			return !errors.Is(werr, unix.EAGAIN)
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("nodeipc: write: %w", err)
		}
		msg, oob = msg[n:], nil
	}
	return nil
}
