//go:build !linux

package cpus

import (
	"os"
	"runtime"
)

// DetectSystem runs Detect on the live system. gm2-init only runs on Linux;
// this variant exists so the package builds on developers' machines, where
// there is no cgroup and runtime.NumCPU is the best available count.
func DetectSystem(opt Options) Result {
	return Detect(os.DirFS("/"), runtime.NumCPU(), opt)
}
