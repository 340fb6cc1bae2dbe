package appspec

import (
	"slices"
	"strconv"
)

// WorkerEnvKeys are the variables gm2-init sets for each worker: the
// listeners (systemd's LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), readiness
// (NOTIFY_SOCKET), the slot and the worker count (GM2_INSTANCE,
// NODE_APP_INSTANCE, GM2_INSTANCES), and the Node preload's and cluster
// protocol's (GM2_LISTENERS, GM2_PRELOAD_FD, GM2_PRELOAD_IMPORT,
// NODE_CHANNEL_FD, NODE_CHANNEL_SERIALIZATION_MODE, GM2_NODE_CLUSTER,
// GM2_NODE_RELAYED, NODE_UNIQUE_ID).
//
// It is the one list of them: the supervisor drops inherited values of
// these before it sets its own (a parent init's, a shell's), and the
// configuration does not take the GM2_* ones for typos of options when a
// gm2-init runs inside a worker of another. The packages that define some
// of the names (notify, preload, nodeipc) are held to it by a test.
func WorkerEnvKeys() []string {
	return []string{
		"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
		"GM2_INSTANCE", "GM2_INSTANCES", "NODE_APP_INSTANCE",
		"GM2_LISTENERS", "GM2_PRELOAD_FD", "GM2_PRELOAD_IMPORT", "GM2_PRELOAD_FILE",
		"NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE",
		"GM2_NODE_CLUSTER", "GM2_NODE_RELAYED", "NODE_UNIQUE_ID",
	}
}

// IsWorkerEnvKey tells whether gm2-init sets the variable name for its
// workers (see WorkerEnvKeys).
func IsWorkerEnvKey(name string) bool { return slices.Contains(WorkerEnvKeys(), name) }

// FromOuterInit tells whether an environment (name → value) is that of a
// worker of another gm2-init: it always sets NODE_APP_INSTANCE next to
// GM2_INSTANCE, to the same slot number. GM2_INSTANCE alone, with another
// NODE_APP_INSTANCE, or not a slot number (empty) was not set so.
func FromOuterInit(env map[string]string) bool {
	slot, ok := env["GM2_INSTANCE"]
	n, err := strconv.Atoi(slot)
	return ok && err == nil && n >= 0 && strconv.Itoa(n) == slot && env["NODE_APP_INSTANCE"] == slot
}
