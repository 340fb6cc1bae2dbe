// Command testworker is the worker the end-to-end tests run under gm2-init.
// Its behaviour is chosen by environment variables, so that one binary can
// play a well-behaved server, a crash-looper, a process that ignores the stop
// signal, or a parent of orphans.
//
//	(no args)              serve HTTP on fd 3 (socket activation) or $TW_PORT
//	orphans N              fork N children that exit at once, then exit without reaping them
//	daemonize FILE         start `grandchild FILE` in a new session and exit (a double fork)
//	grandchild FILE        write "up" to FILE, and "term" when SIGTERM arrives, then exit
//	lo-up                  bring the loopback interface of its network namespace up
//	get URL                print the body of GET URL (10 s timeout)
//
// Variables for the server:
//
//	TW_CRASH=N             exit with status N at once
//	TW_CRASH_IF=FILE       exit 3 at once if FILE exists (a broken new version)
//	TW_CRASH_SLOT=N        exit 3 at once when GM2_INSTANCE is N (one bad slot)
//	TW_IGNORE_TERM=1       ignore the stop signals (TERM, INT)
//	TW_NO_READY=1          never send READY=1
//	TW_READY_DELAY=DUR     wait before sending READY=1
//	TW_READY_GATE=FIFO     with TW_GATE_SLOT=N: the worker of slot N sends READY=1 only once
//	                       the FIFO has a writer (the test opens it when that worker may be ready)
//	TW_DAEMON=FILE         at start, leave a double-forked grandchild behind (see daemonize)
//	TW_ORPHANS=N           at start, leave N orphan zombies behind (instance 0 only)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/examples/goapp/drain"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "orphans":
			n, _ := strconv.Atoi(os.Args[2])
			orphans(n)
			return
		case "daemonize":
			cmd := exec.Command(os.Args[0], "grandchild", os.Args[2])
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				fail(err)
			}
			// Return only once the grandchild handles SIGTERM, so that a
			// test that stops everything right away sees it react.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				if _, err := os.Stat(os.Args[2]); err == nil {
					break
				}
				if time.Now().After(deadline) {
					fail(fmt.Errorf("grandchild did not start"))
				}
			}
			os.Exit(0)
		case "grandchild":
			grandchild(os.Args[2])
			return
		case "lo-up":
			loUp()
			return
		case "get":
			get(os.Args[2])
			return
		}
	}
	serve()
}

// loUp sets IFF_UP on lo: a new network namespace starts with it down.
func loUp() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		fail(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		fail(fmt.Errorf("SIOCGIFFLAGS: %w", err))
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		fail(fmt.Errorf("SIOCSIFFLAGS: %w", err))
	}
}

func get(url string) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testworker:", err)
	os.Exit(1)
}

// orphans forks n children that exit at once. The raw fork is safe here
// because the child makes no call into the Go runtime: it exits immediately.
func orphans(n int) {
	for i := 0; i < n; i++ {
		pid, _, errno := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if errno != 0 {
			fail(fmt.Errorf("clone: %v", errno))
		}
		if pid == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
	}
	os.Exit(0)
}

func grandchild(file string) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if err := os.WriteFile(file, []byte("up"), 0o644); err != nil {
		fail(err)
	}
	<-sigs
	os.WriteFile(file, []byte("term"), 0o644)
}

func serve() {
	if code := os.Getenv("TW_CRASH"); code != "" {
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	if f := os.Getenv("TW_CRASH_IF"); f != "" {
		if _, err := os.Stat(f); err == nil {
			os.Exit(3)
		}
	}
	if n, ok := os.LookupEnv("TW_CRASH_SLOT"); ok && n == os.Getenv("GM2_INSTANCE") {
		os.Exit(3)
	}
	stop := make(chan os.Signal, 1)
	if os.Getenv("TW_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	} else {
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	}
	if f := os.Getenv("TW_DAEMON"); f != "" {
		if err := exec.Command(os.Args[0], "daemonize", f).Run(); err != nil {
			fail(err)
		}
	}
	if n := os.Getenv("TW_ORPHANS"); n != "" && os.Getenv("GM2_INSTANCE") == "0" {
		cmd := exec.Command(os.Args[0], "orphans", n)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fail(err)
		}
	}
	var ln net.Listener
	var err error
	if os.Getenv("LISTEN_FDS") != "" {
		f := os.NewFile(3, "fd3")
		ln, err = net.FileListener(f)
		f.Close()
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:"+os.Getenv("TW_PORT"))
	}
	if err != nil {
		fail(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"pid":        strconv.Itoa(os.Getpid()),
			"listen_pid": os.Getenv("LISTEN_PID"),
			"listen_fds": os.Getenv("LISTEN_FDS"),
			"fdnames":    os.Getenv("LISTEN_FDNAMES"),
			"instance":   os.Getenv("GM2_INSTANCE"),
			"instances":  os.Getenv("GM2_INSTANCES"),
			"node_app":   os.Getenv("NODE_APP_INSTANCE"),
		})
	})
	srv := drain.New(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
	go srv.Serve(ln)
	if os.Getenv("TW_NO_READY") != "1" {
		if d, err := time.ParseDuration(os.Getenv("TW_READY_DELAY")); err == nil {
			time.Sleep(d)
		}
		if gate := os.Getenv("TW_READY_GATE"); gate != "" && os.Getenv("TW_GATE_SLOT") == os.Getenv("GM2_INSTANCE") {
			// Opening a FIFO for reading blocks until it has a writer.
			f, err := os.Open(gate)
			if err != nil {
				fail(err)
			}
			f.Close()
		}
		sdNotify("READY=1\nSTATUS=serving")
	}
	if os.Getenv("TW_IGNORE_TERM") == "1" {
		select {}
	}
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv.Drain(ctx)
}

func sdNotify(msg string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		fail(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		fail(err)
	}
}
