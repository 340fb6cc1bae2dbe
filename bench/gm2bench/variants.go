package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// variant is one way of running the same app with N workers.
type variant struct {
	name    string
	argv    []string
	env     []string
	addr    string // 127.0.0.1:PORT the workers serve
	port    int    // PORT of addr
	health  string // gm2-init's health address, if any
	pm2Home string // PM2_HOME of a pm2-runtime
}

var pm2Homes int

// nodeVariant runs bench/apps/hello.js with n workers.
func (e *Env) nodeVariant(name string, n int) variant {
	port := freePort()
	v := variant{name: name, addr: "127.0.0.1:" + strconv.Itoa(port), port: port}
	ns := strconv.Itoa(n)
	ideal := []string{e.Ideal, "-n", ns, "-l", v.addr, "--", e.Node, e.Hello}
	switch name {
	case "gm2-init":
		// The app calls listen(PORT); the preload hands it the socket.
		v.health = "127.0.0.1:" + strconv.Itoa(freePort())
		v.argv = []string{e.GM2, "-i", ns, "--listen", v.addr, "--health-addr", v.health, "--", e.Node, e.Hello}
		v.env = []string{"PORT=" + strconv.Itoa(port)}
	case "gm2-init/max-memory":
		// As gm2-init, with a memory limit the workers never reach: what
		// the flag costs at rest is its check every 30 s (the default
		// --memory-check-interval).
		v.health = "127.0.0.1:" + strconv.Itoa(freePort())
		v.argv = []string{e.GM2, "-i", ns, "--listen", v.addr, "--health-addr", v.health, "--max-memory-restart", "1G", "--", e.Node, e.Hello}
		v.env = []string{"PORT=" + strconv.Itoa(port)}
	case "gm2-init/on-demand":
		// No --listen: the app's listen(PORT, HOST) asks gm2-init, its
		// cluster primary, which binds the port on the first request and
		// hands the same socket to every worker (issue 14).
		v.health = "127.0.0.1:" + strconv.Itoa(freePort())
		v.argv = []string{e.GM2, "-i", ns, "--health-addr", v.health, "--", e.Node, e.Hello}
		v.env = []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1"}
	case "gm2-init/fd3":
		// The app takes fd 3 itself (server.listen({fd: 3})).
		v.health = "127.0.0.1:" + strconv.Itoa(freePort())
		v.argv = []string{e.GM2, "-i", ns, "--listen", v.addr, "--health-addr", v.health, "--", e.Node, e.Hello}
		v.env = []string{"HELLO_FD3=1"}
	case "ideal", "ideal-2": // ideal-2: a second, identical one, the control
		v.argv = ideal
	case "tini":
		v.argv = append([]string{e.Tini, "-s", "--"}, ideal...)
	case "dumb-init":
		v.argv = append([]string{e.DumbInit}, ideal...)
	case "pm2-runtime":
		pm2Homes++
		v.pm2Home = filepath.Join(e.Tmp, "pm2-"+strconv.Itoa(pm2Homes))
		v.argv = []string{e.PM2Runtime, "start", e.Hello, "-i", ns, "--name", "hello"}
		v.env = []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "PM2_HOME=" + v.pm2Home}
	case "node-cluster":
		v.argv = []string{e.Node, e.Cluster}
		v.env = []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "WORKERS=" + ns}
	default:
		panic("unknown variant " + name)
	}
	return v
}

// launch starts v and waits until n distinct workers have answered.
func (e *Env) launch(v variant, n int, logName string) (*Proc, error) {
	// A variant's name may hold a "/" (gm2-init/on-demand): not a directory.
	p, err := start(v.name, v.argv, v.env, e.Root, filepath.Join(e.Logs, strings.ReplaceAll(logName, "/", "-")+".log"))
	if err != nil {
		return nil, err
	}
	if _, err := waitServing(v.addr, n, 200*time.Microsecond, 60*time.Second); err != nil {
		p.Stop(syscall.SIGTERM, 15*time.Second)
		return nil, fmt.Errorf("%s: %w", v.name, err)
	}
	return p, nil
}

// rotate returns xs rotated left by r: the order of the variants changes
// from round to round, so that none is always measured first.
func rotate(xs []string, r int) []string {
	n := len(xs)
	out := make([]string, n)
	for i := range xs {
		out[i] = xs[(i+r)%n]
	}
	return out
}

// fileSafe turns a variant's name into a part of a file name: a name such
// as "gm2-init/on-demand" would otherwise name a directory that does not
// exist.
func fileSafe(name string) string { return strings.ReplaceAll(name, "/", "-") }
