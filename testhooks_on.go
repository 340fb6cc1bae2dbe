//go:build gm2testhooks

package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/spawn"
)

// envTestControl names the unix socket on which a binary built with
// -tags gm2testhooks takes commands from the end-to-end tests. (Not a GM2_
// name: gm2-init warns about unknown GM2_* variables.)
const envTestControl = "GM2TEST_CONTROL"

// startTestHooks serves the test commands, one connection at a time, one
// command per line, each answered with a line:
//
//	freeze → frozen   the supervisor's loop is blocked (spawn.FreezeLoop)
//	thaw   → thawed   it runs again (also when the connection closes)
//
// The returned function stops serving and thaws the loop.
func startTestHooks(sup *spawn.Supervisor, log zerolog.Logger) func() {
	path := os.Getenv(envTestControl)
	if path == "" {
		return func() {}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		log.Error().Err(err).Msg("test hooks: cannot listen")
		return func() {}
	}
	h := &hooks{sup: sup, log: log}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.serve(c)
		}
	}()
	return func() {
		ln.Close()
		h.closeConn()
		<-done
		h.thaw()
	}
}

type hooks struct {
	sup *spawn.Supervisor
	log zerolog.Logger

	mu     sync.Mutex
	conn   net.Conn
	frozen chan struct{} // closed to thaw; nil when not frozen
}

func (h *hooks) serve(c net.Conn) {
	h.mu.Lock()
	h.conn = c
	h.mu.Unlock()
	defer func() {
		c.Close()
		h.thaw()
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		switch sc.Text() {
		case "freeze":
			h.mu.Lock()
			if h.frozen == nil {
				h.frozen = make(chan struct{})
			}
			thaw := h.frozen
			h.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ok := h.sup.FreezeLoop(ctx, thaw)
			cancel()
			if !ok {
				c.Write([]byte("busy\n"))
				continue
			}
			h.log.Warn().Msg("test hook: supervisor loop frozen")
			c.Write([]byte("frozen\n"))
		case "thaw":
			h.thaw()
			h.log.Warn().Msg("test hook: supervisor loop thawed")
			c.Write([]byte("thawed\n"))
		default:
			c.Write([]byte("unknown\n"))
		}
	}
}

func (h *hooks) thaw() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.frozen != nil {
		close(h.frozen)
		h.frozen = nil
	}
}

func (h *hooks) closeConn() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.conn.Close()
	}
}
