package spawn

import (
	"os"
	"strconv"
	"strings"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/preload"
)

// Layout is the one place that numbers a worker's descriptors from 3 on,
// and every variable that names one of them is derived from it:
//
//	3 … 3+n-1   the app's listeners, in order      LISTEN_FDS=n, LISTEN_FDNAMES, GM2_LISTENERS
//	next         the Node preload's report pipe     GM2_PRELOAD_FD
//	next         the Node IPC channel               NODE_CHANNEL_FD
//
// (The preload reads the numbers from those variables and never assumes
// them.)
type Layout struct {
	Listeners []*os.File
	PreloadFD int // 0 = none
	ChannelFD int // 0 = none
}

// NewLayout places n listeners, then the preload pipe and the IPC channel
// when asked for.
func NewLayout(listeners []*os.File, preloadPipe, channel bool) Layout {
	l := Layout{Listeners: listeners}
	next := 3 + len(listeners)
	if preloadPipe {
		l.PreloadFD, next = next, next+1
	}
	if channel {
		l.ChannelFD = next
	}
	return l
}

// NeedsShim tells whether the worker must be started through gm2-init's
// exec shim (ExecArg): to set LISTEN_PID to its own pid when it gets
// listeners, and to expand the preload's import (see preload.WorkerEnv).
// Anything else execs the program directly: one process image less, and
// no Go runtime that a full pids cgroup could make fail.
func (l Layout) NeedsShim() bool { return len(l.Listeners) > 0 || l.PreloadFD != 0 }

// appBaseEnv is the environment shared by every worker of an app: the
// inherited one without the per-worker variables, the app's own variables
// on top, then the listeners, the preload and NOTIFY_SOCKET. Every name
// appears once.
func appBaseEnv(inherited []string, a *App, notifyEnv string) []string {
	drop := map[string]bool{}
	// The variables gm2-init sets per worker (appspec.WorkerEnvKeys):
	// inherited values of them (from a parent init, a shell) go first.
	for _, k := range appspec.WorkerEnvKeys() {
		drop[k] = true
	}
	if a.InstanceVar != "" {
		drop[a.InstanceVar] = true
	}
	// The preload's variables replace those of the inherited environment
	// and of the app's own: its NODE_OPTIONS holds theirs already, with
	// the preload appended (see spawnApps in gm2-init's main package).
	preloaded := map[string]bool{}
	if a.PreloadEnv != nil {
		preloaded["NODE_OPTIONS"] = true
		for _, kv := range a.PreloadEnv {
			k, _, _ := strings.Cut(kv, "=")
			preloaded[k] = true
		}
	}
	// The app's own variables replace the inherited ones, except those
	// gm2-init sets (a process file's loader warns of them): of two equal
	// names in an environment the first wins, which would hide gm2-init's.
	own := map[string]bool{}
	for _, kv := range a.Env {
		k, _, _ := strings.Cut(kv, "=")
		own[k] = !drop[k] && !preloaded[k]
	}
	var env []string
	for _, kv := range inherited {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] && !preloaded[k] && !own[k] {
			env = append(env, kv)
		}
	}
	for _, kv := range a.Env {
		if k, _, _ := strings.Cut(kv, "="); own[k] {
			env = append(env, kv)
		}
	}
	if n := len(a.Listeners); n > 0 {
		names := make([]string, n)
		pl := make([]preload.Listener, 0, n)
		for i, l := range a.Listeners {
			names[i] = l.Spec.Name
			pl = append(pl, preload.Listener{FD: 3 + i, Proto: string(l.Spec.Network), Addr: l.Bound})
		}
		env = append(env, "LISTEN_FDS="+strconv.Itoa(n), "LISTEN_FDNAMES="+strings.Join(names, ":"))
		if a.PreloadEnv != nil {
			if desc := preload.ListenersEnv(pl); desc != "" {
				env = append(env, "GM2_LISTENERS="+desc)
			}
		}
	}
	env = append(env, a.PreloadEnv...)
	if notifyEnv != "" {
		env = append(env, notify.EnvNotifySocket+"="+notifyEnv)
	}
	return env
}

// workerEnv adds what differs per worker to the app's base environment. id
// numbers the worker among all gm2-init started (cluster.worker.id in Node).
func workerEnv(base []string, a *App, slot, instances, id int, l Layout) []string {
	env := append(base[:len(base):len(base)],
		"GM2_INSTANCE="+strconv.Itoa(slot),
		"NODE_APP_INSTANCE="+strconv.Itoa(slot),
		"GM2_INSTANCES="+strconv.Itoa(instances),
	)
	if a.InstanceVar != "" && a.InstanceVar != "NODE_APP_INSTANCE" && a.InstanceVar != "GM2_INSTANCE" {
		env = append(env, a.InstanceVar+"="+strconv.Itoa(slot))
	}
	if l.PreloadFD != 0 {
		env = append(env, "GM2_PRELOAD_FD="+strconv.Itoa(l.PreloadFD))
	}
	if l.ChannelFD != 0 {
		ch := nodeipc.Env(l.ChannelFD, id)
		if a.ExecMode == appspec.Fork {
			// Fork mode shares nothing: the channel carries only
			// process.send('ready'), and without GM2_NODE_CLUSTER the
			// preload leaves listen() to Node.
			ch = ch[:2]
		}
		env = append(env, ch...)
	}
	return env
}
