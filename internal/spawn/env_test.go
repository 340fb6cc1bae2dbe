package spawn

import (
	"slices"
	"strings"
	"testing"
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
