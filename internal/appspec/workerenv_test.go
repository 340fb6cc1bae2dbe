package appspec_test

import (
	"testing"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/nodeipc"
	"github.com/gm2-init/gm2-init/internal/notify"
	"github.com/gm2-init/gm2-init/internal/preload"
)

// The names that other packages define for the worker's contract are in
// the one list.
func TestWorkerEnvKeysHoldTheContract(t *testing.T) {
	for _, name := range []string{
		notify.EnvNotifySocket,
		preload.EnvListeners, preload.EnvReportFD, preload.EnvImport, preload.EnvFile,
		nodeipc.EnvChannelFD, nodeipc.EnvSerialization, nodeipc.EnvCluster,
	} {
		if !appspec.IsWorkerEnvKey(name) {
			t.Errorf("%s is set for workers but missing from appspec.WorkerEnvKeys", name)
		}
	}
	keys := appspec.WorkerEnvKeys()
	keys[0] = "changed"
	if appspec.WorkerEnvKeys()[0] == "changed" {
		t.Error("WorkerEnvKeys hands out its own slice")
	}
}

func TestFromOuterInit(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{"GM2_INSTANCE": "2", "NODE_APP_INSTANCE": "2"}, true},
		{map[string]string{"GM2_INSTANCE": "2", "NODE_APP_INSTANCE": "1"}, false},
		{map[string]string{"GM2_INSTANCE": "2"}, false},
		{map[string]string{"NODE_APP_INSTANCE": "2"}, false},
		{map[string]string{}, false},
		{map[string]string{"GM2_INSTANCE": "", "NODE_APP_INSTANCE": ""}, false},
		{map[string]string{"GM2_INSTANCE": "x", "NODE_APP_INSTANCE": "x"}, false},
		{map[string]string{"GM2_INSTANCE": "-1", "NODE_APP_INSTANCE": "-1"}, false},
		{map[string]string{"GM2_INSTANCE": "+1", "NODE_APP_INSTANCE": "+1"}, false},
		{map[string]string{"GM2_INSTANCE": "0", "NODE_APP_INSTANCE": "0"}, true},
	} {
		if got := appspec.FromOuterInit(tc.env); got != tc.want {
			t.Errorf("FromOuterInit(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}
