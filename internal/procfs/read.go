package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"golang.org/x/sys/unix"
)

// The readers here call open/read/getdents directly instead of going through
// os.File: a scrape reads a few files per process of every worker tree, and
// os.File's poller registration, cleanup and buffers would cost more than the
// reads. Every buffer is the caller's, so a batch reuses one.

// errTooBig reports a file larger than the buffer its reader allows.
var errTooBig = errors.New("file larger than expected")

// readFile reads the whole of path into buf[:0], growing it up to limit
// bytes, and returns the buffer for the caller to reuse. proc files are
// generated at read time and report a size of 0, so the size cannot be asked
// first.
func readFile(path string, buf []byte, limit int) ([]byte, error) {
	fd, err := openRetry(path, unix.O_RDONLY)
	if err != nil {
		return buf[:0], &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= limit {
				return buf, &fs.PathError{Op: "read", Path: path, Err: errTooBig}
			}
			grown := make([]byte, len(buf), min(limit, max(2*cap(buf), 512)))
			copy(grown, buf)
			buf = grown
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// openRetry opens path read-only and close-on-exec, retrying EINTR (a signal
// handled by the Go runtime can interrupt open on some file systems).
func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readDirNames calls each(name) for every entry of directory path except "."
// and "..", reading the entries with getdents64 into buf. It stops early when
// each returns false.
func readDirNames(path string, buf []byte, each func(name []byte) bool) error {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if len(buf) < 1024 {
		buf = make([]byte, 4096)
	}
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "getdents", Path: path, Err: err}
		}
		if n <= 0 {
			return nil
		}
		more, err := parseDirents(buf[:n], each)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if !more {
			return nil
		}
	}
}

// parseDirents walks the linux_dirent64 records of one getdents64 answer:
//
//	u64 ino; s64 off; u16 reclen; u8 type; char name[] (NUL-terminated, padded)
//
// and calls each with every name but "." and "..". It returns false when each
// asked to stop, and an error for a record that does not fit: the kernel
// never writes one, but a bound check is cheaper than trusting it.
func parseDirents(b []byte, each func(name []byte) bool) (bool, error) {
	const header = 8 + 8 + 2 + 1
	for len(b) > 0 {
		if len(b) < header {
			return false, fmt.Errorf("dirent: %d bytes left, shorter than a header", len(b))
		}
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < header || reclen > len(b) {
			return false, fmt.Errorf("dirent: record length %d with %d bytes left", reclen, len(b))
		}
		name := b[header:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		b = b[reclen:]
		if len(name) == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		if !each(name) {
			return false, nil
		}
	}
	return true, nil
}

// pidPath builds procRoot/<pid>/<rest> (rest may be ""), reusing buf.
func pidPath(buf []byte, procRoot string, pid int, rest ...string) ([]byte, string) {
	buf = append(buf[:0], procRoot...)
	buf = append(buf, '/')
	buf = strconv.AppendInt(buf, int64(pid), 10)
	for _, r := range rest {
		buf = append(buf, '/')
		buf = append(buf, r...)
	}
	return buf, string(buf)
}

// isGone reports whether err says that the process (or thread) no longer
// exists: its /proc directory is missing, or it died between the open and
// the read.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
}
