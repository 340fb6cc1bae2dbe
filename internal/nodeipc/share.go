package nodeipc

import (
	"errors"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Share returns a Handler.Query that answers every query of one worker of
// app from reg: the first query for an address binds the socket, later ones
// (from any worker of app) get the same socket.
//
// log should carry the worker's fields (slot, pid): Share logs, at info,
// "port shared on demand" once per socket, with the address, the network,
// the registry id and the pid that asked first (a wrapper's child may ask
// through the worker); and, at error, every refused query with the address
// and the reason, so that an app's EADDRINUSE or EACCES can be traced to
// the address gm2-init could not bind.
func Share(reg *sockets.Registry, app string, log zerolog.Logger) func(Query) Reply {
	return func(q Query) Reply {
		asker := 0
		if q.Tag != nil {
			asker = q.Tag.Pid
		}
		spec, err := q.Spec()
		if err != nil {
			log.Error().Err(err).Str("network", q.Network).Str("address", q.Address).Int("port", q.Port).
				Int("requester_pid", asker).Msg("listen not shared: refused")
			return Reply{Errno: errnoOf(err)}
		}
		sh, created, err := reg.Get(app, spec)
		if err != nil {
			ev := log.Error().Err(err).Str("network", string(spec.Network)).Str("address", spec.Addr).Int("requester_pid", asker)
			if errors.Is(err, sockets.ErrSharedLimit) {
				ev = ev.Int("max_shared_ports", reg.Max())
			}
			ev.Msg("listen not shared: cannot bind")
			return Reply{Errno: errnoOf(err)}
		}
		if created {
			log.Info().Int("id", sh.ID).Str("network", string(spec.Network)).Str("address", sh.Listener.Bound).
				Str("asked", spec.Raw).Int("requester_pid", asker).Msg("port shared on demand")
		}
		data := reg.ShareData(sh, q.Data)
		if data == nil {
			data = q.Data
		}
		return Reply{File: sh.Listener.File, UDP: spec.Network == sockets.UDP, ID: sh.ID, Data: data, Created: created}
	}
}

// errnoOf finds the errno in err; EINVAL when there is none.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	return unix.EINVAL
}
