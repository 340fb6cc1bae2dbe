package notify_test

import (
	"github.com/gm2-init/gm2-init/internal/procfs"

	"errors"
	"log"
	"net"
	"os"
	"os/exec"

	"github.com/gm2-init/gm2-init/internal/notify"
)

// Example shows the intended wiring: one notify socket for all workers, one
// IPC channel per Node worker. In gm2-init the receiving loops run in
// goroutines owned by the supervisor and forward messages to its single
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

	parent, child, err := notify.NodeChannel()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("node", "app.js")
	cmd.ExtraFiles = []*os.File{child} // fd 3
	cmd.Env = append(os.Environ(), notify.EnvNotifySocket+"="+sock.Env())
	cmd.Env = append(cmd.Env, notify.NodeEnv(3)...)
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	child.Close()
	go func() { // ends at EOF, when the worker is gone, or when parent is closed
		_ = notify.ReadNode(parent, func() { log.Printf("worker %d is ready", cmd.Process.Pid) })
	}()

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
