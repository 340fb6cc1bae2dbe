package notify_test

import (
	"github.com/gm2-init/gm2-init/internal/procfs"

	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/gm2-init/gm2-init/internal/notify"
)

// Example shows the intended wiring: one notify socket for all workers
// (Node workers' process.send('ready') arrives on their IPC channel, which
// internal/nodeipc serves). In gm2-init the receiving loop runs in a
// goroutine owned by the supervisor and forwards messages to its single
// state-owning goroutine, which is where isWorker may look at the process
// table; this sketch does everything in one goroutine.
func Example() {
	sock, err := notify.Listen("")
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close() // only after the last worker is gone
	if why := sock.FallbackReason(); why != nil {
		log.Printf("notify socket is %s: %v", sock.Env(), why)
	}

	cmd := exec.Command("gunicorn", "app:app")
	cmd.Env = append(os.Environ(), notify.EnvNotifySocket+"="+sock.Env())
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}

	isWorker := func(pid int) bool { return pid == cmd.Process.Pid }
	for {
		m, err := sock.Receive()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Print(err)
			continue
		}
		worker, ok := procfs.FindAncestor("/proc", m.Pid, isWorker)
		if !ok {
			log.Printf("notify: dropped message from pid %d: not a worker or a descendant of one", m.Pid)
			continue
		}
		if m.Ready {
			log.Printf("worker %d is ready (status %q)", worker, m.Status)
		}
	}
}

// ExampleLimiter is how the supervisor thins out its warnings about
// datagrams from processes that are not workers: one line per sender and
// interval, with a count, and a timer for the counts of a flood that
// stopped.
func ExampleLimiter() {
	lim := notify.NewLimiter(10*time.Second, 0)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	warn := func(r notify.Report) { fmt.Printf("dropped %d datagram(s) from pid %d\n", r.Count, r.Sender) }

	// 100,000 spoofed datagrams from pid 4242 within one second.
	for i := range 100_000 {
		if r, ok := lim.Note(4242, t0.Add(time.Duration(i)*10*time.Microsecond)); ok {
			warn(r)
		}
	}
	// In the supervisor: arm a timer for lim.Due() and flush when it fires.
	if due, ok := lim.Due(); ok {
		for _, r := range lim.Flush(due) {
			warn(r)
		}
	}
	// Output:
	// dropped 1 datagram(s) from pid 4242
	// dropped 99999 datagram(s) from pid 4242
}
