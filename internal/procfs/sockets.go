package procfs

// The readings behind gm2-init's wrong-port check: which sockets a process
// tree has open, which TCP sockets listen in its network namespace, and what
// the processes are (command line, executable, environment). Each reader
// takes procRoot ("/proc" in production, a fake tree in tests), reads a
// bounded amount, and reports what it could not read as an error or an
// empty result: a process may exit between two readings.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TCPListen is the state of a listening socket in /proc/net/tcp (the
// kernel's TCP_LISTEN, printed in hex).
const TCPListen = 0x0A

// maxTreeSize bounds the process tree walk (a fork bomb in a worker must
// not make gm2-init walk forever).
const maxTreeSize = 4096

// maxCmdlineSize and maxEnvironSize bound the reads of those files.
const (
	maxCmdlineSize = 64 << 10
	maxEnvironSize = 1 << 20
)

// TCPSocket is one row of /proc/PID/net/tcp or tcp6.
type TCPSocket struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  uint8  // TCPListen for a listening socket
	Inode  uint64 // 0 for a socket no process owns (TIME_WAIT)
}

var errBadNetTCP = errors.New("malformed /proc/net/tcp row")

// maxNetTCPRow bounds one row of /proc/net/tcp (about 150 bytes, 180 in
// tcp6): a longer line is not the kernel's.
const maxNetTCPRow = 4 << 10

// maxListeningRows bounds the LISTEN rows kept from one file: a real
// namespace has a few; the bound keeps a fake or hostile procRoot from
// costing memory.
const maxListeningRows = 1 << 16

// tcpSynRecv is TCP_SYN_RECV: before Linux 4.4 the kernel printed each
// listener's pending connection requests in that state right after it,
// inside the listening section.
const tcpSynRecv = 0x03

// scanNetTCP parses the rows of /proc/PID/net/tcp (v6 false) or tcp6 (v6
// true) from r, one line at a time, so that memory does not grow with the
// file. The first line is the header. Addresses are printed by the kernel
// as the hex of 32-bit words in host byte order (so 127.0.0.1 reads
// 0100007F on little-endian machines), ports as the hex of the port. A
// malformed row is an error naming the row: the file comes from the
// kernel, so a bad row means procRoot is not what it should be. With listening, it returns
// the LISTEN rows alone and stops at the first row in another state (the
// pending requests of old kernels aside): the kernel prints every
// listening socket before any other (tcp_seq_start walks the listening
// hash, then the established one, and a read resumes where the last one
// stopped), so what follows is connections — on a busy server hundreds of
// thousands of them, whose rows are neither parsed nor even read.
func scanNetTCP(r io.Reader, v6, listening bool) ([]TCPSocket, error) {
	var out []TCPSocket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxNetTCPRow)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if n == 1 || len(bytes.TrimSpace(line)) == 0 {
			continue // header, final newline
		}
		s, err := parseNetTCPRow(line, v6)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if listening {
			if s.State == tcpSynRecv {
				continue
			}
			if s.State != TCPListen || len(out) == maxListeningRows {
				break
			}
		}
		out = append(out, s)
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return nil, fmt.Errorf("%w: a line longer than %d bytes", errBadNetTCP, maxNetTCPRow)
	case err != nil:
		return nil, err
	}
	return out, nil
}

func parseNetTCPRow(line []byte, v6 bool) (TCPSocket, error) {
	f := bytes.Fields(line)
	// sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
	if len(f) < 10 {
		return TCPSocket{}, fmt.Errorf("%w: %d fields, want at least 10", errBadNetTCP, len(f))
	}
	if !bytes.HasSuffix(f[0], []byte{':'}) {
		return TCPSocket{}, fmt.Errorf("%w: slot %q", errBadNetTCP, f[0])
	}
	local, err := parseHexAddrPort(f[1], v6)
	if err != nil {
		return TCPSocket{}, fmt.Errorf("%w: local address: %v", errBadNetTCP, err)
	}
	remote, err := parseHexAddrPort(f[2], v6)
	if err != nil {
		return TCPSocket{}, fmt.Errorf("%w: remote address: %v", errBadNetTCP, err)
	}
	st, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil || len(f[3]) != 2 {
		return TCPSocket{}, fmt.Errorf("%w: state %q", errBadNetTCP, f[3])
	}
	ino, err := strconv.ParseUint(string(f[9]), 10, 64)
	if err != nil || f[9][0] == '+' {
		return TCPSocket{}, fmt.Errorf("%w: inode %q", errBadNetTCP, f[9])
	}
	return TCPSocket{Local: local, Remote: remote, State: uint8(st), Inode: ino}, nil
}

// parseHexAddrPort parses "0100007F:1F90" (v4) or 32 hex digits and a port
// (v6).
func parseHexAddrPort(b []byte, v6 bool) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: no ':'", b)
	}
	hexAddr, hexPort := b[:i], b[i+1:]
	words := 1
	if v6 {
		words = 4
	}
	if len(hexAddr) != 8*words {
		return netip.AddrPort{}, fmt.Errorf("%q: address of %d hex digits, want %d", b, len(hexAddr), 8*words)
	}
	if len(hexPort) != 4 {
		return netip.AddrPort{}, fmt.Errorf("%q: port of %d hex digits, want 4", b, len(hexPort))
	}
	port, err := strconv.ParseUint(string(hexPort), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port: %w", b, err)
	}
	var raw [16]byte
	for w := 0; w < words; w++ {
		v, err := strconv.ParseUint(string(hexAddr[8*w:8*w+8]), 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: address: %w", b, err)
		}
		// The kernel prints each 32-bit word of the address as a number
		// in host byte order: put it back in memory order.
		binary.NativeEndian.PutUint32(raw[4*w:], uint32(v))
	}
	var addr netip.Addr
	if v6 {
		addr = netip.AddrFrom16(raw)
	} else {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// ListeningTCP reads procRoot/PID/net/tcp and tcp6 — the TCP sockets of
// pid's network namespace, not only pid's own — and returns those in the
// listening state. It reads the listening section of each file only (see
// scanNetTCP): the cost is that of the listeners, not of the connections
// of a busy server. A missing tcp6 (IPv6 disabled) is not an error.
func ListeningTCP(procRoot string, pid int) ([]TCPSocket, error) {
	var out []TCPSocket
	for _, f := range []struct {
		name string
		v6   bool
	}{{"tcp", false}, {"tcp6", true}} {
		path := filepath.Join(procRoot, strconv.Itoa(pid), "net", f.name)
		rows, err := listeningIn(path, f.v6)
		if err != nil {
			if f.v6 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("listening sockets of pid %d: %w", pid, err)
		}
		out = append(out, rows...)
	}
	return out, nil
}

func listeningIn(path string, v6 bool) ([]TCPSocket, error) {
	fd, err := openRetry(path, unix.O_RDONLY)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	rows, err := scanNetTCP(f, v6, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// ParseSocketLink returns the inode of a "socket:[12345]" link target, the
// form /proc/PID/fd/N shows for a socket.
func ParseSocketLink(target string) (uint64, bool) {
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, "]")
	if !ok || digits == "" || digits[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// SocketInodes returns the inodes of the sockets pid has open, from the
// links in procRoot/PID/fd, mapped to one fd number that holds each.
func SocketInodes(procRoot string, pid int) (map[uint64]int, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	out := map[uint64]int{}
	err := readDirNames(dir, nil, func(name []byte) bool {
		fd, ok := ParseDecimal(name)
		if !ok {
			return true
		}
		target, err := os.Readlink(filepath.Join(dir, string(name)))
		if err != nil {
			return true // closed since the listing
		}
		if ino, ok := ParseSocketLink(target); ok {
			if _, seen := out[ino]; !seen {
				out[ino] = fd
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("sockets of pid %d: %w", pid, err)
	}
	return out, nil
}

// Tree returns pid and its descendants, pid first, then breadth-first, as
// the children files show them (see walk). At most maxTreeSize pids are
// returned.
func Tree(procRoot string, pid int) []int {
	out := []int{pid}
	walk(procRoot, pid, maxTreeSize-1, func(c int) { out = append(out, c) })
	return out
}

// Cmdline returns the arguments of pid (procRoot/PID/cmdline split at NUL
// bytes). A process that rewrote its title (puma, gunicorn with
// setproctitle) shows the new title, often as one argument with spaces.
func Cmdline(procRoot string, pid int) ([]string, error) {
	data, err := readFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"), nil, maxCmdlineSize)
	if err != nil {
		return nil, fmt.Errorf("command line of pid %d: %w", pid, err)
	}
	data = bytes.TrimRight(data, "\x00")
	if len(data) == 0 {
		return nil, nil // a kernel thread or a zombie
	}
	var out []string
	for _, a := range bytes.Split(data, []byte{0}) {
		out = append(out, string(a))
	}
	return out, nil
}

// EnvValue returns the value of key in the environment pid started with
// (procRoot/PID/environ: what execve received, not later changes).
func EnvValue(procRoot string, pid int, key string) (string, bool, error) {
	data, err := readFile(filepath.Join(procRoot, strconv.Itoa(pid), "environ"), nil, maxEnvironSize)
	if err != nil {
		return "", false, fmt.Errorf("environment of pid %d: %w", pid, err)
	}
	prefix := []byte(key + "=")
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v), true, nil
		}
	}
	return "", false, nil
}

// IsGoBinary reports whether pid runs a program built by the Go toolchain:
// such an ELF file carries a note named "Go" of type 4 (the Go build ID)
// within its first page, where the Go linker places it.
func IsGoBinary(procRoot string, pid int) bool {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	return hasGoBuildIDNote(head[:n])
}

// hasGoBuildIDNote looks for an ELF note header: namesz 4, any descsz,
// type 4, name "Go\0\0" (little-endian: the notes of the machines Go
// containers run on, amd64 and arm64).
func hasGoBuildIDNote(head []byte) bool {
	if len(head) < 4 || string(head[:4]) != "\x7fELF" {
		return false
	}
	name := []byte("Go\x00\x00")
	for i := 0; ; {
		j := bytes.Index(head[i:], name)
		if j < 0 {
			return false
		}
		at := i + j
		if at >= 12 &&
			binary.LittleEndian.Uint32(head[at-12:]) == 4 &&
			binary.LittleEndian.Uint32(head[at-4:]) == 4 {
			return true
		}
		i = at + 1
	}
}
