package sockets

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDialTCPConnects(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			if host == "::1" {
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			}
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = c.Write([]byte("hi"))
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := DialTCP(ctx, ln.Addr().(*net.TCPAddr))
		cancel()
		if err != nil {
			t.Fatalf("DialTCP %s: %v", ln.Addr(), err)
		}
		if _, ok := c.(*net.TCPConn); !ok {
			t.Errorf("DialTCP returned %T, want *net.TCPConn", c)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(b) != "hi" {
			t.Errorf("read %q, %v; want hi", b, err)
		}
	}
}

// A wildcard address is reached through IPv4 loopback, as net.Dial reaches ":PORT".
func TestDialTCPWildcardIsLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, addr := range []string{":" + strconv.Itoa(port), "0.0.0.0:" + strconv.Itoa(port)} {
		ta, err := StdlibTCPAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DialTCP(context.Background(), ta)
		if err != nil {
			t.Fatalf("DialTCP %s: %v", addr, err)
		}
		c.Close()
	}
}

func TestDialTCPRefusedReadsAsNet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	_, err = DialTCP(context.Background(), addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("DialTCP to a closed port: %v, want ECONNREFUSED", err)
	}
	want := "dial tcp " + addr.String() + ": connect: connection refused"
	if err.Error() != want {
		t.Errorf("error %q, want %q (net.Dial's wording)", err, want)
	}
}

// A listener whose accept queue is full drops SYNs: a connect then waits,
// and only ctx ends the wait, with os.ErrDeadlineExceeded.
func TestDialTCPWaitEndsWithContext(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Shrink the backlog so that a few connections fill the queue.
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) { _ = syscall.Listen(int(fd), 0) })
	addr := ln.Addr().(*net.TCPAddr)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 16; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		c, err := DialTCP(ctx, addr)
		cancel()
		if err == nil {
			held = append(held, c)
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("connect %d to a full queue: %v, want os.ErrDeadlineExceeded and context.DeadlineExceeded", i+1, err)
		}
		if !strings.HasPrefix(err.Error(), "dial tcp "+addr.String()+": ") {
			t.Errorf("error %q does not name the address", err)
		}
		// The same wait ends on a cancel with no deadline, during the wait.
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { _, err := DialTCP(ctx, addr); done <- err }()
		time.AfterFunc(50*time.Millisecond, cancel)
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) || err.Error() != "dial tcp "+addr.String()+": context canceled" {
				t.Fatalf("DialTCP canceled while it waits: %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("DialTCP did not return within 10 s of its context's cancel")
		}
		return
	}
	t.Fatalf("%d connections to a listener with backlog 0 were all accepted by the kernel: cannot test the wait here", len(held))
}

func TestStdlibTCPAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9000":          ":9000",
		"0.0.0.0:9000":   ":9000",
		"[::]:9000":      ":9000",
		"127.0.0.1:9000": "127.0.0.1:9000",
		"localhost:9000": "127.0.0.1:9000",
		"[::1]:0":        "[::1]:0",
	} {
		ta, err := StdlibTCPAddr(in)
		if err != nil || ta.String() != want {
			t.Errorf("StdlibTCPAddr(%q) = %v, %v; want %s", in, ta, err, want)
		}
	}
	for _, in := range []string{"example.com:80", "9000", ":x", ""} {
		if ta, err := StdlibTCPAddr(in); err == nil {
			t.Errorf("StdlibTCPAddr(%q) = %v, want an error", in, ta)
		}
	}
}
