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
//	TW_EXIT_ON_TERM=N      after draining on a stop signal, exit with status N
//	TW_NO_READY=1          never send READY=1
//	TW_READY_DELAY=DUR     wait before sending READY=1
//	TW_DAEMON=FILE         at start, leave a double-forked grandchild behind (see daemonize);
//	                       "{instance}" in FILE becomes GM2_INSTANCE (one file per worker)
//	TW_READY_GATE=FIFO     with TW_GATE_SLOT=N: the worker of slot N sends READY=1 only once
//	                       the FIFO has a writer (the test opens it when that worker may be ready)
//	TW_ORPHANS=N           at start, leave N orphan zombies behind (instance 0 only)
//	TW_DIE_AFTER=DUR       serve, then exit 1 after DUR (a slow crash loop)
//	TW_ESCAPE=1            at start, fork a child that moves to a process group of its own,
//	                       and move the worker into that group too (both leave the group
//	                       gm2-init created); combine with TW_IGNORE_TERM
//	TW_STUBBORN=N          at start, leave N double-forked `sleep` daemons that ignore SIGTERM
//	TW_TERMINAL_JOB=1      at start, if the worker holds the terminal on its stdin, run
//	                       `sleep 1000` in a process group of its own and give it the
//	                       terminal, as a shell gives it to a job
//	TW_ALLOC_MB=N          at start, allocate N MiB and touch every page (resident memory)
//	TW_BURN=DUR            at start, spin until the worker has used DUR of CPU time
//	TW_GROW_MB=N           then allocate and touch N MiB more every second, for as long as it
//	                       runs (a leak); with TW_GROW_SLOT=N only the worker of that slot does,
//	                       with TW_GROW_ONCE=FILE only the first worker that creates FILE
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
	"strings"
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

// escape forks a child that ignores SIGTERM and makes a process group of its
// own, then moves the worker into that group: neither is in the group
// gm2-init made for the worker any more, so signalling that group alone
// reaches nobody.
func escape() {
	cmd := exec.Command("sh", "-c", "trap '' TERM INT; while :; do sleep 1; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	if err := unix.Setpgid(0, cmd.Process.Pid); err != nil {
		fail(fmt.Errorf("setpgid: %w", err))
	}
}

// terminalJob is TW_TERMINAL_JOB: a job of an interactive shell, which
// holds the terminal in a process group of its own while the worker runs.
func terminalJob() {
	fg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	if err != nil || fg != unix.Getpgrp() {
		return
	}
	cmd := exec.Command("sleep", "1000")
	cmd.Stdin = os.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("terminal job: %w", err))
	}
	go cmd.Wait() // reaped by the worker, as a shell reaps its jobs
}

// held keeps TW_ALLOC_MB's memory reachable for the worker's whole life.
var held []byte

// firstToClaim creates file and reports whether this process did ("" is
// always claimed): of the workers given the same file, one only gets true.
func firstToClaim(file string) bool {
	if file == "" {
		return true
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// leak allocates and touches mb MiB every second, keeping every block
// reachable: resident memory that grows until the worker is stopped. The
// goroutine ends with the process.
func leak(mb int) {
	var blocks [][]byte
	for range time.Tick(time.Second) {
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		blocks = append(blocks, b)
	}
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
		f = strings.ReplaceAll(f, "{instance}", os.Getenv("GM2_INSTANCE"))
		if err := exec.Command(os.Args[0], "daemonize", f).Run(); err != nil {
			fail(err)
		}
	}
	if d, err := time.ParseDuration(os.Getenv("TW_DIE_AFTER")); err == nil {
		time.AfterFunc(d, func() { os.Exit(1) })
	}
	if os.Getenv("TW_ESCAPE") == "1" {
		escape()
	}
	if os.Getenv("TW_TERMINAL_JOB") == "1" {
		terminalJob()
	}
	if n := os.Getenv("TW_STUBBORN"); n != "" {
		// SIG_IGN survives exec: the shell and its sleeps ignore SIGTERM.
		// The shell exits at once, so the sleeps are orphans of PID 1.
		signal.Ignore(syscall.SIGTERM)
		if err := exec.Command("sh", "-c", "i=0; while [ $i -lt "+n+" ]; do sleep 1000 & i=$((i+1)); done").Run(); err != nil {
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
	if n, _ := strconv.Atoi(os.Getenv("TW_ALLOC_MB")); n > 0 {
		held = make([]byte, n<<20)
		for i := 0; i < len(held); i += 4096 {
			held[i] = 1
		}
	}
	if d, err := time.ParseDuration(os.Getenv("TW_BURN")); err == nil {
		burn(d)
	}
	if n, _ := strconv.Atoi(os.Getenv("TW_GROW_MB")); n > 0 {
		if slot, ok := os.LookupEnv("TW_GROW_SLOT"); (!ok || slot == os.Getenv("GM2_INSTANCE")) && firstToClaim(os.Getenv("TW_GROW_ONCE")) {
			go leak(n)
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
	if err := srv.Drain(ctx); err != nil {
		fail(fmt.Errorf("drain: %w", err))
	}
	if n, err := strconv.Atoi(os.Getenv("TW_EXIT_ON_TERM")); err == nil {
		os.Exit(n)
	}
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

// burn spins until the process has used d of CPU time, user and system, as
// its own rusage counts it: a known figure for the usage /status reports.
func burn(d time.Duration) {
	spins := 0
	for {
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil || time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= d {
			break
		}
		for range 1 << 20 {
			spins++
		}
	}
	if spins < 0 {
		fmt.Println(spins) // never: keeps the loop from being optimised away
	}
}
