package procfs

// StatOf reads procRoot/<pid>/stat and parses it in full.
func StatOf(procRoot string, pid int) (Stat, error) { return readStat(procRoot, pid, nil, true) }

// Member names one process for as long as it lives: a pid reused by a later
// process has another start time.
type Member struct {
	Pid       int
	StartTime uint64
	PGrp      int
}

// Descendants returns every descendant of pid (pid excluded) as of one scan
// of procRoot: children, their children, and so on. Processes that left the
// tree by being re-parented (their parent died) are not included: the
// kernel no longer links them to pid. The supervisor remembers them when it
// signals a worker, so that it still finds them after the worker is gone.
func Descendants(procRoot string, pid int) []Member {
	parents := scanParents(procRoot)
	var out []Member
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 && len(out) < MaxTreeProcesses {
		p := queue[0]
		queue = queue[1:]
		for _, c := range parents[p] {
			if seen[c] {
				continue // a corrupt fake tree with a cycle
			}
			seen[c] = true
			st, err := StatOf(procRoot, c)
			if err != nil {
				continue // gone meanwhile
			}
			out = append(out, Member{Pid: c, StartTime: st.StartTime, PGrp: st.PGrp})
			queue = append(queue, c)
		}
	}
	return out
}
