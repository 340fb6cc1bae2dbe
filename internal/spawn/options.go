package spawn

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Options configures a Supervisor.
type Options struct {
	Apps []App
	Env  []string // the environment every worker inherits (os.Environ())

	// Notify is gm2-init's NOTIFY_SOCKET for its workers; nil = none.
	Notify *notify.Socket
	// Shared binds the sockets Node workers ask for on demand (their
	// listen(PORT) with no --listen for it); nil = none are shared.
	Shared *sockets.Registry

	ShutdownDelay time.Duration
	// MemoryCheckInterval is how often workers of apps with MaxMemory are
	// measured; no timer runs when no app has a limit.
	MemoryCheckInterval time.Duration

	// Foreground gives the terminal on stdin to the worker's process group,
	// as tini does, so that an interactive program (docker run -it … bash)
	// can read it and gets the terminal's Ctrl-C. Only with one worker.
	Foreground bool

	// Lifecycle, when set, is told of the supervisor's milestones (for
	// whatever started gm2-init: systemd's notify protocol).
	Lifecycle Lifecycle

	Version string
	Log     zerolog.Logger

	// System and Clock default to the real ones; the unit tests set fakes.
	System System
	Clock  Clock
}

// App is one app to run: its validated settings, its resolved instance
// count, its sockets and its Node preload.
type App struct {
	appspec.App
	// Count is the resolved number of instances (-i max → the CPUs).
	Count int
	// Listeners are bound for this app before any worker starts and passed
	// as fds 3, 4, … (see Layout).
	Listeners []*sockets.Listener
	// PreloadEnv gives workers the Node preload (preload.Choice.WorkerEnv);
	// nil = the preload is off for this app.
	PreloadEnv []string
}

// Lifecycle receives the supervisor's milestones. Calls are made from the
// supervisor's loop, in order, and must not block.
type Lifecycle interface {
	// Ready: the start has finished (every slot's first worker is ready,
	// or was given up on: errored, stopped, or past --listen-timeout
	// without being able to be ready), or a reload pass has ended.
	// ready/total are the ready workers and slots.
	Ready(ready, total int)
	// Reloading: a reload pass has begun.
	Reloading()
	// Stopping: the shutdown has begun.
	Stopping()
	// Status: the count of ready workers or of slots changed.
	Status(ready, total int)
}

// stablePeriod is how long a worker must have been ready before its exit no
// longer counts toward a crash loop. Kubernetes waits 10 minutes before it
// forgets a CrashLoopBackOff; a supervisor inside the pod must react within
// the same minutes, so 30 s: long enough that an app failing a few seconds
// after its imports (a missing variable, a database it cannot reach) is
// caught, short enough that a worker which served for a while and then
// crashed restarts at once. A longer --min-uptime raises it.
func (a *App) stablePeriod() time.Duration {
	return max(30*time.Second, a.MinUptime)
}
