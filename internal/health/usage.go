package health

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"time"

	"github.com/gm2-init/gm2-init/internal/procfs"
	"github.com/gm2-init/gm2-init/internal/status"
)

// Bounds on reading the workers' usage from /proc for /status and /metrics.
const (
	// usageTimeout bounds one read of every worker tree. Reading one tree
	// takes tens of microseconds, so 64 workers fit with a wide margin
	// even on a throttled CPU; a read cut short reports what it has, and
	// says so.
	usageTimeout = 500 * time.Millisecond
	// usageMaxAge: a read this recent of the same workers is answered
	// again instead of reading /proc anew. The health port is open to the
	// whole cluster and gm2-init shares the CPU quota of its workers, so a
	// client requesting /metrics in a loop must not make gm2-init read
	// /proc in a loop: at most one read per usageMaxAge, whatever the
	// request rate. No scraper asks more often than that.
	usageMaxAge = time.Second
)

// usageReader reads the process trees of the snapshot's workers when /status
// or /metrics asks, never in the background. One read runs at a time; a
// request that arrives during a read waits for it (within its own bound) and
// shares its result.
type usageReader struct {
	procRoot string
	timeout  time.Duration
	maxAge   time.Duration
	now      func() time.Time

	// sem holds a token while a read runs; it guards last as well.
	sem  chan struct{}
	last usageRead
}

// usageRead is the outcome of one read of every worker's tree.
type usageRead struct {
	at    time.Time
	pids  []int // the workers read, in snapshot order
	trees map[int]procfs.TreeResult
}

func newUsageReader(procRoot string, timeout, maxAge time.Duration) *usageReader {
	return &usageReader{
		procRoot: procRoot,
		timeout:  timeout,
		maxAge:   maxAge,
		now:      time.Now,
		sem:      make(chan struct{}, 1),
	}
}

// workerPids lists the pid of every worker of snap, in slot order.
func workerPids(snap *status.Snapshot) []int {
	var pids []int
	for _, sl := range snap.Slots {
		for _, w := range sl.Workers {
			if w.Pid > 0 {
				pids = append(pids, w.Pid)
			}
		}
	}
	return pids
}

// read returns the usage of the trees of snap's workers, keyed by pid, each
// with its error (gone, deadline passed before its turn). A pid missing from
// the map was not read at all: another request's read held the reader past
// this request's bound.
func (u *usageReader) read(ctx context.Context, snap *status.Snapshot) map[int]procfs.TreeResult {
	pids := workerPids(snap)
	if len(pids) == 0 {
		return nil
	}
	wait := time.NewTimer(u.timeout)
	defer wait.Stop()
	select {
	case u.sem <- struct{}{}:
	case <-wait.C:
		return map[int]procfs.TreeResult{} // every worker "not read"
	case <-ctx.Done():
		return map[int]procfs.TreeResult{}
	}
	defer func() { <-u.sem }()

	if now := u.now(); u.last.trees != nil && now.Sub(u.last.at) < u.maxAge && now.Sub(u.last.at) >= 0 && slices.Equal(u.last.pids, pids) {
		return u.last.trees
	}
	rctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	trees := make(map[int]procfs.TreeResult, len(pids))
	for _, r := range procfs.ReadTrees(rctx, u.procRoot, pids) {
		trees[r.Pid] = r
	}
	// Stamped at the end: a read that took long is not reused for longer.
	u.last = usageRead{at: u.now(), pids: pids, trees: trees}
	return trees
}

// slotUsage sums the trees of a slot's workers: during a reload a slot has
// its old worker and its replacement, and both use the machine. ok is false
// when none of them could be read. A worker that is gone (the snapshot is a
// moment old) is simply not counted; one that was not read makes the sum
// partial.
func slotUsage(sl status.Slot, trees map[int]procfs.TreeResult) (sum procfs.Stats, ok bool) {
	for _, w := range sl.Workers {
		if w.Pid <= 0 {
			continue
		}
		r, found := trees[w.Pid]
		switch {
		case found && r.Err == nil:
		case found && isGone(r.Err):
			continue
		default:
			sum.Partial = true
			continue
		}
		ok = true
		sum.RSSBytes += r.Stats.RSSBytes
		sum.CPUTicks += r.Stats.CPUTicks
		sum.Threads += r.Stats.Threads
		sum.Processes += r.Stats.Processes
		sum.FDs += r.Stats.FDs
		sum.Partial = sum.Partial || r.Stats.Partial
	}
	return sum, ok
}

// isGone reports an error of a process that no longer exists.
func isGone(err error) bool { return errors.Is(err, fs.ErrNotExist) }
