// Command goapp is the example worker: an HTTP server that serves on the
// socket gm2-init passes (fd 3, systemd socket activation), says READY=1 on
// NOTIFY_SOCKET once it serves, and drains open requests on SIGTERM or
// SIGINT. It has no dependency beyond the standard library, to show that an
// app needs nothing from gm2-init to use it.
//
// Run alone (no LISTEN_FDS) it listens on $PORT (default 8080).
//
//	GET /          "hello from worker <GM2_INSTANCE> pid <pid>"
//	GET /pid       the pid
//	GET /sleep?ms= answers after the delay (to test draining)
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gm2-init/gm2-init/examples/goapp/drain"
)

func main() {
	ln, err := listener()
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from worker %s pid %d\n", os.Getenv("GM2_INSTANCE"), os.Getpid())
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d", os.Getpid())
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "%d", os.Getpid())
	})
	srv := drain.New(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	notify("READY=1\nSTATUS=serving on " + ln.Addr().String())

	select {
	case err := <-served:
		log.Fatal(err)
	case <-stop:
	}
	notify("STOPPING=1")
	// Finish the requests in flight, then exit 0. Connections still queued
	// in the shared socket's backlog are not ours: another worker takes them.
	// (Why not plain srv.Shutdown: see package drain.)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		log.Fatal(err)
	}
}

// listener takes fd 3 when gm2-init (or systemd) passed one to this process.
func listener() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") != "" {
		f := os.NewFile(3, "listen-fd-3")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fd 3: %w", err)
		}
		return ln, nil
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return net.Listen("tcp", ":"+port)
}

// notify sends one sd_notify message; it does nothing without NOTIFY_SOCKET.
func notify(msg string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		log.Printf("notify: %v", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Printf("notify: %v", err)
	}
}
