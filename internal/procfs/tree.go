package procfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"golang.org/x/sys/unix"
)

// Stats are the figures of a process tree: a worker and every process below
// it, so that `npm start` or `sh -c` count the real server they started.
//
// Memory is the resident set size (RSS) from /proc/<pid>/stat, summed. RSS
// counts a page shared by two processes of the tree twice (the node binary's
// text under both npm and the app, copy-on-write pages of a forking server),
// so the sum can exceed what the tree costs; PSS (/proc/<pid>/smaps_rollup)
// would split them, but reading it walks every page table of the process
// under its mmap lock — milliseconds for a few hundred MB, against
// microseconds for stat (see ReadPSS and bench/). RSS is also what PM2's
// max_memory_restart, ps and top compare against.
type Stats struct {
	RSSBytes uint64
	// CPUTicks is the user and system time of every process of the tree,
	// plus that of the children each of them waited for (cutime, cstime):
	// work done by a short-lived child of the worker stays counted after
	// it exits, so the figure only grows while the tree keeps its
	// processes. In clock ticks; see CPUSeconds.
	CPUTicks  uint64
	Threads   int // threads of every process of the tree
	Processes int // processes in the tree, the root included
	FDs       int // open file descriptors, summed over the processes
	// Partial is true when part of the tree could not be read (the
	// deadline passed during the walk, a process's fd directory was not
	// readable, the tree exceeded MaxTreeProcesses): the figures are then
	// a lower bound.
	Partial bool
}

// CPUSeconds returns CPUTicks in seconds.
func (s Stats) CPUSeconds() float64 { return TicksToSeconds(s.CPUTicks) }

// MaxTreeProcesses bounds the processes one tree walk visits, so that a fork
// bomb under a worker cannot make a scrape read /proc without end.
const MaxTreeProcesses = 4096

// TreeResult is the outcome of reading one tree in ReadTrees.
type TreeResult struct {
	Pid   int
	Stats Stats
	// Err is set when nothing could be read for Pid: the process is gone
	// (errors.Is(Err, fs.ErrNotExist)), or the deadline passed before its
	// turn (the context's error).
	Err error
}

// TreeStats reads the figures of pid and all its descendants from the proc
// file system mounted at procRoot ("/proc"). It is the fast path for one
// worker, e.g. a memory check: one read of /proc/<pid>/stat, one stat of
// /proc/<pid>/fd and the children lists per process, no lock taken in the
// kernel that the app could be waiting for.
//
// Descendants are found through /proc/<pid>/task/<tid>/children
// (CONFIG_PROC_CHILDREN, present in every distribution kernel); without it, by
// one scan of every /proc/<pid>/stat. A process that left the tree by being
// re-parented (a daemon that double-forked, an orphan adopted by gm2-init as
// PID 1) is no longer counted: it is no longer the worker's.
//
// The error is set only when pid itself cannot be read (gone: wraps
// fs.ErrNotExist).
func TreeStats(procRoot string, pid int) (Stats, error) {
	r := newReader(procRoot)
	return r.tree(context.Background(), pid)
}

// ReadTrees reads the trees of pids, in order, until ctx ends: the trees not
// reached by then have Err set to ctx's error, and a tree cut short has
// Partial set. Between two processes the walk checks ctx, and no single read
// waits on the process (stat and the children lists take no lock the process
// could hold), so a deadline bounds the whole batch to about the deadline
// plus one read.
//
// Buffers are shared across the batch: reading 64 trees costs a few
// allocations per process, not per file.
func ReadTrees(ctx context.Context, procRoot string, pids []int) []TreeResult {
	r := newReader(procRoot)
	out := make([]TreeResult, len(pids))
	for i, pid := range pids {
		out[i].Pid = pid
		if err := ctx.Err(); err != nil {
			out[i].Err = err
			continue
		}
		out[i].Stats, out[i].Err = r.tree(ctx, pid)
	}
	return out
}

// reader holds the buffers and what it learnt about the proc file system
// during one batch. It is not safe for concurrent use.
type reader struct {
	root     string
	pageSize uint64
	maxProcs int // MaxTreeProcesses; smaller in tests
	// fdFromSize: the proc file system reports the number of open fds as
	// the size of /proc/<pid>/fd (Linux 6.2+), which spares listing it.
	// Only trusted on a real procfs, never on a fake tree of files.
	fdFromSize bool
	// parents is the children index built by scanning /proc when the
	// kernel has no children files (nil until then).
	parents map[int][]int

	path   []byte
	buf    []byte // file contents
	dirbuf []byte // getdents answers
	kids   []int
	tids   []int
	stack  []frame
	seen   map[int]struct{}
}

type frame struct{ pid, threads int }

func newReader(procRoot string) *reader {
	r := &reader{
		root:     procRoot,
		pageSize: pageSize(),
		maxProcs: MaxTreeProcesses,
		buf:      make([]byte, 0, 1024),
		dirbuf:   make([]byte, 4096),
		seen:     make(map[int]struct{}),
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(procRoot, &sfs); err == nil && sfs.Type == unix.PROC_SUPER_MAGIC {
		r.fdFromSize = true
	}
	return r
}

// errParentChanged: the pid found in a children list now belongs to a process
// of another parent (it exited and the pid was reused in between).
var errParentChanged = errors.New("parent changed")

func (r *reader) tree(ctx context.Context, pid int) (Stats, error) {
	var s Stats
	if pid <= 0 {
		return s, fmt.Errorf("process tree of pid %d: not a pid", pid)
	}
	threads, err := r.add(&s, pid, -1)
	if err != nil {
		if isGone(err) && !errors.Is(err, fs.ErrNotExist) {
			// ESRCH: it died between open and read. Gone all the same.
			err = fmt.Errorf("%w: %w", fs.ErrNotExist, err)
		}
		return Stats{}, fmt.Errorf("process tree of pid %d: %w", pid, err)
	}
	clear(r.seen)
	r.seen[pid] = struct{}{}
	r.stack = append(r.stack[:0], frame{pid, threads})
	for len(r.stack) > 0 {
		if ctx.Err() != nil {
			s.Partial = true
			break
		}
		f := r.stack[len(r.stack)-1]
		r.stack = r.stack[:len(r.stack)-1]
		kids, ok := r.children(f.pid, f.threads)
		if !ok {
			s.Partial = true
		}
		for _, k := range kids {
			if _, dup := r.seen[k]; dup {
				continue
			}
			if s.Processes >= r.maxProcs {
				s.Partial = true
				r.stack = r.stack[:0]
				break
			}
			r.seen[k] = struct{}{}
			th, err := r.add(&s, k, f.pid)
			switch {
			case err == nil:
				r.stack = append(r.stack, frame{k, th})
			case isGone(err), errors.Is(err, errParentChanged):
				// Exited since the list was read: not part of the tree.
			default:
				s.Partial = true
			}
		}
	}
	return s, nil
}

// add reads one process into s and returns its thread count. parent >= 0
// checks that the process is still the child of parent.
func (r *reader) add(s *Stats, pid, parent int) (int, error) {
	var path string
	r.path, path = pidPath(r.path, r.root, pid, "stat")
	var err error
	r.buf, err = readFile(path, r.buf, maxStatSize)
	if err != nil {
		return 0, err
	}
	st, err := parseStat(r.buf, true)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if parent >= 0 && st.PPid != parent {
		return 0, errParentChanged
	}
	s.Processes++
	s.Threads += st.Threads
	s.RSSBytes += st.RSSPages * r.pageSize
	s.CPUTicks += st.UTime + st.STime + st.CUTime + st.CSTime
	if st.State == 'Z' {
		// A zombie has closed its fds and has no fd directory to read.
		return st.Threads, nil
	}
	n, err := r.countFDs(pid)
	switch {
	case err == nil:
		s.FDs += n
	case isGone(err):
	default:
		s.Partial = true
	}
	return st.Threads, nil
}

// countFDs counts the open fds of pid: the size of its fd directory where the
// kernel reports it, otherwise the number of entries.
func (r *reader) countFDs(pid int) (int, error) {
	var path string
	r.path, path = pidPath(r.path, r.root, pid, "fd")
	if r.fdFromSize {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return 0, &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		if st.Size > 0 {
			return int(st.Size), nil
		}
	}
	return countDirEntries(path, r.dirbuf)
}

// countDirEntries counts the entries of a directory such as /proc/<pid>/fd.
func countDirEntries(path string, buf []byte) (int, error) {
	n := 0
	err := readDirNames(path, buf, func([]byte) bool { n++; return true })
	return n, err
}

// walk calls visit for each descendant of pid (pid excluded),
// breadth-first, at most limit of them: the one walk behind Tree and
// Descendants (ReadTrees walks depth-first, reading each process as it
// goes). It reads every thread's children file (a child's parent is the
// thread that forked it) or, on a kernel without them
// (CONFIG_PROC_CHILDREN off), scans every process's parent once. A process
// that exits meanwhile may still be visited; visit reads what it needs.
func walk(procRoot string, pid, limit int, visit func(pid int)) {
	r := newReader(procRoot)
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for n := 0; len(queue) > 0 && n < limit; {
		p := queue[0]
		queue = queue[1:]
		kids, _ := r.children(p, 2) // 2: list task/, whatever the thread count
		for _, c := range kids {
			if seen[c] || n >= limit {
				continue // a cycle only a fake tree can have
			}
			seen[c] = true
			n++
			visit(c)
			queue = append(queue, c)
		}
	}
}

// children lists the children of pid (which has threads threads) into
// r.kids. ok is false when the list could not be read although pid exists.
func (r *reader) children(pid, threads int) (kids []int, ok bool) {
	if r.parents != nil {
		return r.parents[pid], true
	}
	r.kids = r.kids[:0]
	if threads <= 1 {
		// The one thread's id is the pid: no need to list task/.
		r.tids = append(r.tids[:0], pid)
	} else {
		r.tids = r.tids[:0]
		var path string
		r.path, path = pidPath(r.path, r.root, pid, "task")
		err := readDirNames(path, r.dirbuf, func(name []byte) bool {
			if tid, ok := ParseDecimal(name); ok {
				r.tids = append(r.tids, tid)
			}
			return true
		})
		if err != nil {
			return nil, isGone(err)
		}
	}
	for _, tid := range r.tids {
		var path string
		r.path, path = pidPath(r.path, r.root, pid, "task", strconv.Itoa(tid), "children")
		var err error
		r.buf, err = readFile(path, r.buf, maxChildrenSize)
		if err != nil {
			if isGone(err) && !r.exists(pid, "stat") {
				return nil, true // the process itself is gone
			}
			if isGone(err) && !r.exists(pid, "task", strconv.Itoa(tid)) {
				continue // this thread ended; the others still count
			}
			if isGone(err) {
				// The thread and the process exist but not the
				// file: a kernel without CONFIG_PROC_CHILDREN.
				// Index every process by parent once, for the
				// rest of the batch.
				r.parents = scanParents(r.root)
				return r.parents[pid], true
			}
			return nil, false
		}
		var perr error
		r.kids, perr = parseChildren(r.buf, r.kids)
		if perr != nil {
			return r.kids, false
		}
	}
	return r.kids, true
}

// exists reports whether procRoot/<pid>/<rest> exists.
func (r *reader) exists(pid int, rest ...string) bool {
	var path string
	r.path, path = pidPath(r.path, r.root, pid, rest...)
	return unix.Access(path, unix.F_OK) == nil
}

// maxChildrenSize bounds one children list: 11 bytes per pid, a
// few thousand children.
const maxChildrenSize = 1 << 16

// parseChildren appends the pids of a children file ("123 456 \n", each
// followed by a space) to dst.
func parseChildren(b []byte, dst []int) ([]int, error) {
	for {
		var f []byte
		f, b = nextField(b)
		if f == nil {
			return dst, nil
		}
		pid, ok := ParseDecimal(f)
		if !ok || pid == 0 {
			return dst, fmt.Errorf("children list: %q is not a pid", f)
		}
		dst = append(dst, pid)
	}
}

// scanParents indexes every process under procRoot by its parent, for
// kernels without children files.
func scanParents(procRoot string) map[int][]int {
	parents := make(map[int][]int)
	scanStats(procRoot, func(pid int, st Stat) {
		parents[st.PPid] = append(parents[st.PPid], pid)
	})
	return parents
}
