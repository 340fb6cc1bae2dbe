package procfs

import (
	"sync"

	"golang.org/x/sys/unix"
)

// atClkTck is AT_CLKTCK of <elf.h>: the auxiliary-vector entry in which the
// kernel tells every process the unit of the times in /proc/<pid>/stat.
const atClkTck = 17

// defaultClockTicks is USER_HZ on every architecture Go supports.
const defaultClockTicks = 100

// ClockTicks returns the number of clock ticks per second in which
// /proc/<pid>/stat counts CPU time (sysconf(_SC_CLK_TCK) in C). It is read
// once from the auxiliary vector the kernel gave this process, which is where
// glibc's sysconf gets it too, and is 100 when that cannot be read.
func ClockTicks() uint64 { return clockTicks() }

var clockTicks = sync.OnceValue(func() uint64 {
	auxv, err := unix.Auxv()
	if err != nil {
		return defaultClockTicks
	}
	for _, kv := range auxv {
		if kv[0] == atClkTck && kv[1] > 0 {
			return uint64(kv[1])
		}
	}
	return defaultClockTicks
})

// TicksToSeconds converts a count of clock ticks to seconds.
func TicksToSeconds(ticks uint64) float64 {
	return float64(ticks) / float64(ClockTicks())
}
