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

// Descendants returns every descendant of pid (pid excluded) as the
// children files show them (see walk): children, their children, and so on.
// Processes that left the tree by being re-parented (their parent died) are
// not included: the kernel no longer links them to pid. The supervisor
// remembers them when it signals a worker, so that it still finds them
// after the worker is gone.
func Descendants(procRoot string, pid int) []Member {
	var out []Member
	walk(procRoot, pid, MaxTreeProcesses, func(c int) {
		if st, err := StatOf(procRoot, c); err == nil { // else gone meanwhile
			out = append(out, Member{Pid: c, StartTime: st.StartTime, PGrp: st.PGrp})
		}
	})
	return out
}
