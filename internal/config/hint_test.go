package config

import "testing"

// A command that starts with '-' and is not found is most likely a flag
// given after --: `docker run IMAGE -i 4` with ENTRYPOINT ["gm2-init",
// "-i", "max", "--"]. The message says where flags go, and how to give
// this one from there.
func TestFlagAfterDashes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", "max", "--", "-i", "4"}, `command "-i": not found; everything after -- is the command, and -i is a gm2-init flag: give it before --, ` +
			`where -i/--instances is given already, and wins over GM2_INSTANCES: change it there (in an image, its ENTRYPOINT: docker run --entrypoint)`},
		{[]string{"--", "-i", "4"}, `command "-i": not found; everything after -- is the command, and -i is a gm2-init flag: give it before --, ` +
			`or as GM2_INSTANCES=4 (in an image whose ENTRYPOINT ends with --: docker run -e GM2_INSTANCES=4)`},
		{[]string{"--", "--kill-timeout=3s"}, `command "--kill-timeout=3s": not found; everything after -- is the command, and --kill-timeout is a gm2-init flag: give it before --, ` +
			`or as GM2_KILL_TIMEOUT=3s (in an image whose ENTRYPOINT ends with --: docker run -e GM2_KILL_TIMEOUT=3s)`},
		{[]string{"--", "--wait-ready"}, `command "--wait-ready": not found; everything after -- is the command, and --wait-ready is a gm2-init flag: give it before --, ` +
			`or as GM2_WAIT_READY=true (in an image whose ENTRYPOINT ends with --: docker run -e GM2_WAIT_READY=true)`},
		{[]string{"--", "--max_memory_restart", "300M"}, `command "--max_memory_restart": not found; everything after -- is the command, and --max-memory-restart is a gm2-init flag: give it before --, ` +
			`or as GM2_MAX_MEMORY_RESTART=300M (in an image whose ENTRYPOINT ends with --: docker run -e GM2_MAX_MEMORY_RESTART=300M)`},
		{[]string{"--", "-h"}, `command "-h": not found; everything after -- is the command, and -h is a gm2-init flag: give it before --`},
		{[]string{"--", "-x", "1"}, `command "-x": not found; everything after -- is the command, and gm2-init's flags go before -- ` +
			`(see gm2-init -h; in an image whose ENTRYPOINT ends with --, give them as GM2_* variables)`},
	} {
		env(t)
		_, err := Parse(tc.args)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v\nwant %s", tc.args, err, tc.want)
		}
	}
}
