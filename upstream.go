package main

import (
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/sockets"
	"github.com/gm2-init/gm2-init/internal/spawn"
)

// The Parent is the supervisor's Lifecycle.
var _ spawn.Lifecycle = (*notify.Parent)(nil)

// upstreamEnv is what gm2-init's own service manager set for it, read
// before the variables are removed from the environment.
type upstreamEnv struct {
	notify, watchdog, watchdogPid string
}

// fromParent is what gm2-init took over from the process that started it.
type fromParent struct {
	env       upstreamEnv
	inherited []*sockets.Listener // LISTEN_FDS, when LISTEN_PID is gm2-init's
	closedFDs []int               // other inherited descriptors, closed
	fdErr     error               // some could not be marked close-on-exec
	ignored   string              // why LISTEN_FDS was not for gm2-init
}

// takeFromParent runs before anything else is opened: the sockets of
// LISTEN_FDS (when LISTEN_PID is gm2-init's) are kept, every other
// inherited descriptor is closed or marked close-on-exec so that no worker
// inherits it, and the variables of the socket-activation and notify
// protocols are consumed: workers get gm2-init's own, and nothing gm2-init
// starts (the workers, the Node probe) mistakes its parent's for theirs.
func takeFromParent() (fromParent, error) {
	var up fromParent
	act, err := sockets.ParseActivation(os.Getenv(sockets.EnvListenPid), os.Getenv(sockets.EnvListenFDs),
		os.Getenv(sockets.EnvListenFDNames), os.Getpid())
	if err != nil {
		return up, err
	}
	up.closedFDs, up.fdErr = sockets.CloseInherited(act.Count)
	if up.inherited, err = act.Take(); err != nil {
		return up, err
	}
	up.ignored = act.Ignored
	up.env = consumeUpstreamEnv()
	return up, nil
}

// consumeUpstreamEnv reads the notify protocol's variables and removes
// them, and those of socket activation, from the environment.
func consumeUpstreamEnv() upstreamEnv {
	env := upstreamEnv{
		notify:      os.Getenv(notify.EnvNotifySocket),
		watchdog:    os.Getenv(notify.EnvWatchdogUSec),
		watchdogPid: os.Getenv(notify.EnvWatchdogPid),
	}
	for _, k := range []string{sockets.EnvListenPid, sockets.EnvListenFDs, sockets.EnvListenFDNames,
		notify.EnvNotifySocket, notify.EnvWatchdogUSec, notify.EnvWatchdogPid} {
		os.Unsetenv(k)
	}
	return env
}

// log says, once the logger exists, what takeFromParent did.
func (up fromParent) log(log zerolog.Logger) {
	if len(up.closedFDs) > 0 {
		log.Info().Ints("fds", up.closedFDs).Msg("closed descriptors inherited from the parent process, so that workers do not inherit them")
	}
	if up.fdErr != nil {
		log.Warn().Err(up.fdErr).Msg("some inherited descriptors could not be marked close-on-exec; workers may inherit them")
	}
	if up.ignored != "" {
		log.Info().Str("reason", up.ignored).Msg("LISTEN_FDS is not for gm2-init; its sockets are not taken over")
	}
}

// dialParent prepares the messages to gm2-init's own supervisor and the
// watchdog interval (0: no watchdog). A value it cannot use is a warning,
// not a failure: gm2-init still does its job, only the service manager is
// not told.
func dialParent(up upstreamEnv, log zerolog.Logger) (*notify.Parent, time.Duration) {
	if up.notify == "" {
		if up.watchdog != "" {
			log.Warn().Msg("WATCHDOG_USEC is set but NOTIFY_SOCKET is not: no watchdog pings")
		}
		return nil, 0
	}
	parent, err := notify.DialParent(up.notify, func(err error) {
		log.Warn().Err(err).Msg("cannot notify gm2-init's own supervisor")
	})
	if err != nil {
		log.Warn().Err(err).Msg("gm2-init's own supervisor will not be notified")
		return nil, 0
	}
	every, err := notify.WatchdogInterval(up.watchdog, up.watchdogPid, os.Getpid())
	if err != nil {
		log.Warn().Err(err).Msg("no watchdog pings")
	}
	log.Info().Str("notify_socket", up.notify).Msg("notifying gm2-init's own supervisor (READY=1 once every worker has started)")
	return parent, every
}

// logNotifyFallback says where the workers' notify socket went when the
// first directory could not hold it.
func logNotifyFallback(log zerolog.Logger, s *notify.Socket) {
	why := s.FallbackReason()
	if why == nil {
		return
	}
	if s.Abstract() {
		log.Warn().Err(why).Str("notify_socket", s.Env()).
			Msg("no writable directory for the notify socket: it is in the abstract namespace, which some clients " +
				"(Ruby's sd_notify, used by puma) cannot reach; its name is listed in /proc/net/unix, and the " +
				"sender check is the only gate, as for a path. Make TMPDIR or /dev/shm writable to avoid this")
		return
	}
	log.Info().Err(why).Str("notify_socket", s.Env()).Msg("notify socket in a fallback directory")
}
