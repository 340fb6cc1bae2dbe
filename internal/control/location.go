package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketName is the socket's file name inside the private directory.
const socketName = "control.sock"

// DefaultDirs lists the base directories of the control socket's private
// directory, in the order the server tries them and the client looks:
// /run (the place for sockets; writable for root), /dev/shm (a tmpfs that
// Docker and Kubernetes keep writable with a read-only root filesystem),
// /tmp, then TMPDIR when it is elsewhere.
func DefaultDirs() []string {
	dirs := []string{"/run", "/dev/shm", "/tmp"}
	if t := filepath.Clean(os.TempDir()); !contains(dirs, t) {
		dirs = append(dirs, t)
	}
	return dirs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// namespaceKey identifies the PID namespace of this process: the inode of
// /proc/self/ns/pid ("pid:[4026531836]"), unique among the namespaces alive
// on the host. It is what makes `docker exec … gm2-init status` reach the
// gm2-init of its own container even where /run or /tmp is shared with
// other gm2-inits (tests run several side by side on one host).
func namespaceKey() (string, error) {
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "", fmt.Errorf("cannot tell this PID namespace (/proc/self/ns/pid): %w", err)
	}
	ino, ok := strings.CutPrefix(link, "pid:[")
	ino, ok2 := strings.CutSuffix(ino, "]")
	if _, err := strconv.ParseUint(ino, 10, 64); !ok || !ok2 || err != nil {
		return "", fmt.Errorf("cannot tell this PID namespace: /proc/self/ns/pid is %q", link)
	}
	return ino, nil
}

// dirName is the private directory of the namespace's control socket.
func dirName(base, key string) string {
	return filepath.Join(base, "gm2-init-ctl."+key)
}

// privateDir creates dir with mode 0700, or accepts an existing one only
// if it is a real directory (not a symlink) owned by this user and closed
// to everyone else: in a world-writable /tmp anyone could have made it
// first.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s exists and is not a directory", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d)", dir, st.Uid, os.Geteuid())
	case st.Mode&0o077 != 0:
		return fmt.Errorf("%s is open to other users (mode %04o)", dir, st.Mode&0o7777)
	}
	return nil
}

// peerCred returns the credentials the kernel recorded for the other end
// of a unix socket connection, its pid translated into this process's PID
// namespace (0 when the peer is not visible from here).
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, gerr
}

// sameNamespace tells whether pid (as this process sees it) lives in this
// very PID namespace rather than a nested one. /proc/PID/status lists the
// pid in every namespace from the one /proc was mounted for down to the
// process's own (NSpid); exactly one entry means the same namespace. The
// file is readable by every user, unlike /proc/PID/ns/pid, so a client can
// check a server of another uid before the server refuses it.
func sameNamespace(pid int) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			return len(f) == 1 && f[0] == strconv.Itoa(pid), nil
		}
	}
	return false, errors.New("no NSpid line (kernel older than 4.1?)")
}

// isRefused tells a permission error from the socket's directory.
func isRefused(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
