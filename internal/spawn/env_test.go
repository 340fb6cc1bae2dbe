package spawn

import (
	"slices"
	"strings"
	"testing"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// The preload's NODE_OPTIONS holds the app's own (or the inherited one)
// with the preload appended: it must be the only NODE_OPTIONS a worker
// gets, whichever of them set one. A worker given two keeps the first
// (Go's os.Environ and Node alike), and the preload is lost.
func TestAppBaseEnvNodeOptions(t *testing.T) {
	// A GM2_PRELOAD_FILE of gm2-init's own environment is never a worker's:
	// the worker's exec shim would take it for its preload file.
	inherited := []string{"PATH=/bin", "NODE_OPTIONS=--inherited", "GM2_PRELOAD_FILE=/stale"}
	cases := []struct {
		name    string
		env     []string // the app's own
		preload []string
		want    []string // every NODE_OPTIONS and GM2_PRELOAD_FILE the worker gets, in order
	}{
		{"app's options, preload on", []string{"NODE_OPTIONS=--app"}, []string{"NODE_OPTIONS=--app --require p", "GM2_PRELOAD_FILE=p"},
			[]string{"NODE_OPTIONS=--app --require p", "GM2_PRELOAD_FILE=p"}},
		{"inherited options, preload on", nil, []string{"NODE_OPTIONS=--inherited --require p", "GM2_PRELOAD_FILE=p"},
			[]string{"NODE_OPTIONS=--inherited --require p", "GM2_PRELOAD_FILE=p"}},
		{"import mode, no options", []string{"NODE_OPTIONS="}, []string{"GM2_PRELOAD_IMPORT=1"}, nil},
		{"preload off", []string{"NODE_OPTIONS=--app"}, nil, []string{"NODE_OPTIONS=--app"}},
		{"preload off, nothing of the app's", nil, nil, []string{"NODE_OPTIONS=--inherited"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := testApp("web", 1)
			a.Env, a.PreloadEnv = c.env, c.preload
			var got []string
			for _, kv := range appBaseEnv(inherited, &a, "") {
				if strings.HasPrefix(kv, "NODE_OPTIONS=") || strings.HasPrefix(kv, "GM2_PRELOAD_FILE=") {
					got = append(got, kv)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// gm2-init's own variables reach a worker once, with gm2-init's values,
// whatever the inherited environment or the app's own (a process file's
// env) hold: of two equal names the first wins (getenv, Node, sh), so a
// duplicate would hide the slot number or the notify socket.
func TestWorkerEnvNamesOnce(t *testing.T) {
	inherited := []string{"PATH=/bin", "INSTANCE_ID=abc", "NOTIFY_SOCKET=/outer", "GM2_INSTANCE=9", "KEEP=1", "OVER=inherited"}
	a := testApp("web", 2)
	a.InstanceVar = "INSTANCE_ID"
	a.Env = []string{"NODE_APP_INSTANCE=0", "NOTIFY_SOCKET=/run/elsewhere.sock", "LISTEN_FDS=9", "GM2_INSTANCES=5", "INSTANCE_ID=xyz", "OVER=app"}
	env := workerEnv(appBaseEnv(inherited, &a, "/run/gm2/notify.sock"), &a, 1, 2, 7, Layout{})
	seen := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if old, dup := seen[k]; dup {
			t.Errorf("%s given twice (%q, then %q)", k, old, v)
		}
		seen[k] = v
	}
	want := map[string]string{"GM2_INSTANCE": "1", "NODE_APP_INSTANCE": "1", "GM2_INSTANCES": "2", "INSTANCE_ID": "1",
		"NOTIFY_SOCKET": "/run/gm2/notify.sock", "KEEP": "1", "OVER": "app", "PATH": "/bin"}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("%s=%q, want %q", k, seen[k], v)
		}
	}
	if v, ok := seen["LISTEN_FDS"]; ok {
		t.Errorf("LISTEN_FDS=%q given to a worker with no listener", v)
	}
}

// The Node IPC channel's variables: a cluster-mode worker gets
// GM2_NODE_CLUSTER, its worker id, for the preload to share ports through
// the channel; a fork-mode one does not, so that the preload leaves
// listen() to Node (the channel carries only process.send('ready')).
func TestWorkerEnvChannelByExecMode(t *testing.T) {
	for _, c := range []struct {
		mode    appspec.ExecMode
		cluster bool
	}{{appspec.Cluster, true}, {appspec.Fork, false}} {
		a := testApp("web", 1)
		a.ExecMode = c.mode
		spec := &StartSpec{Env: workerEnv(nil, &a, 0, 1, 4, NewLayout(nil, false, true))}
		if v, _ := envOf(spec, nodeipc.EnvChannelFD); v != "3" {
			t.Errorf("%s: %s=%q, want 3", c.mode, nodeipc.EnvChannelFD, v)
		}
		if v, ok := envOf(spec, nodeipc.EnvCluster); ok != c.cluster || (ok && v != "4") {
			t.Errorf("%s: %s=%q (set %v), want set %v", c.mode, nodeipc.EnvCluster, v, ok, c.cluster)
		}
	}
}

// The preload learns the passed listeners from GM2_LISTENERS; without the
// preload the variable is not set.
func TestAppBaseEnvListenersForThePreload(t *testing.T) {
	for _, pre := range []bool{true, false} {
		a := testApp("web", 1)
		a.Listeners = []*sockets.Listener{testListener("http", sockets.TCP, "0.0.0.0:3000")}
		if pre {
			a.PreloadEnv = []string{"NODE_OPTIONS=--require p"}
		}
		spec := &StartSpec{Env: appBaseEnv(nil, &a, "")}
		if v, ok := envOf(spec, "GM2_LISTENERS"); ok != pre || (pre && !strings.Contains(v, "0.0.0.0:3000")) {
			t.Errorf("preload %v: GM2_LISTENERS=%q (set %v)", pre, v, ok)
		}
	}
}
