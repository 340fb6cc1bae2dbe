package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// dirent encodes one linux_dirent64 record, padded to 8 bytes as the kernel
// does.
func dirent(name string) []byte {
	reclen := (19 + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint64(b[0:], 1234)
	binary.NativeEndian.PutUint64(b[8:], 99)
	binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
	b[18] = 4 // DT_DIR
	copy(b[19:], name)
	return b
}

func TestParseDirents(t *testing.T) {
	var all []byte
	for _, n := range []string{".", "..", "0", "1", "255", "self", "a name with spaces"} {
		all = append(all, dirent(n)...)
	}
	tests := []struct {
		name    string
		data    []byte
		want    []string
		wantErr string
	}{
		{"fd dir", all, []string{"0", "1", "255", "self", "a name with spaces"}, ""},
		{"empty answer", nil, nil, ""},
		{"only dots", append(dirent("."), dirent("..")...), nil, ""},
		{"name fills the record", func() []byte {
			b := dirent("1234567") // 19+7+1 = 27 → 32: NUL then padding
			return b
		}(), []string{"1234567"}, ""},
		{"short header", dirent("1")[:10], nil, "shorter than a header"},
		{"reclen past the end", dirent("123")[:20], nil, "record length"},
		{"reclen zero", func() []byte {
			b := dirent("1")
			binary.NativeEndian.PutUint16(b[16:], 0)
			return b
		}(), nil, "record length 0"},
		{"good then truncated", append(dirent("7"), dirent("8")[:12]...), []string{"7"}, "shorter than a header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			more, err := parseDirents(tt.data, func(n []byte) bool { got = append(got, string(n)); return true })
			if tt.wantErr == "" && (err != nil || !more) {
				t.Fatalf("parseDirents: %v, more %v", err, more)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("parseDirents error %v, want %q", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("names %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("stop early", func(t *testing.T) {
		n := 0
		more, err := parseDirents(all, func([]byte) bool { n++; return n < 2 })
		if more || err != nil || n != 2 {
			t.Errorf("stopped after %d names, more %v, err %v", n, more, err)
		}
	})
}

// FuzzParseDirents: any getdents answer parses without panic, and names never
// hold a NUL nor come out longer than the answer.
func FuzzParseDirents(f *testing.F) {
	f.Add(append(dirent("0"), dirent("12")...))
	f.Add(dirent("."))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseDirents(data, func(n []byte) bool {
			if len(n) == 0 || bytes.IndexByte(n, 0) >= 0 || len(n) > len(data) {
				t.Fatalf("bad name %q", n)
			}
			return true
		})
	})
}

func TestReadDirNamesRealDir(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 300 { // more than one getdents answer of 1 KB
		name := "entry-" + strconv.Itoa(i)
		want = append(want, name)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := readDirNames(dir, make([]byte, 1024), func(n []byte) bool { got = append(got, string(n)); return true }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("read %d names, want %d", len(got), len(want))
	}
	if n, err := countDirEntries(dir, nil); err != nil || n != 300 {
		t.Errorf("countDirEntries = %d, %v", n, err)
	}
	if err := readDirNames(filepath.Join(dir, "missing"), nil, func([]byte) bool { return true }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789"), 1000)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readFile(path, make([]byte, 0, 16), 1<<20)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("readFile grew to %d bytes, err %v", len(got), err)
	}
	if _, err := readFile(path, nil, 4096); !errors.Is(err, errTooBig) {
		t.Errorf("readFile past the limit: %v", err)
	}
	if _, err := readFile(filepath.Join(dir, "missing"), nil, 4096); !errors.Is(err, fs.ErrNotExist) || !isGone(err) {
		t.Errorf("readFile of a missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readFile(empty, nil, 10); err != nil || len(got) != 0 {
		t.Errorf("readFile(empty) = %q, %v", got, err)
	}
}

// TestIsGone: a process that ended between the open and the read of one
// of its files makes the read fail with ESRCH: gone, as ENOENT, not an
// error that marks a tree partial.
func TestIsGone(t *testing.T) {
	for err, want := range map[error]bool{
		&fs.PathError{Op: "read", Path: "/proc/1/stat", Err: unix.ESRCH}:  true,
		&fs.PathError{Op: "open", Path: "/proc/1/stat", Err: unix.ENOENT}: true,
		&fs.PathError{Op: "open", Path: "/proc/1/fd", Err: unix.EACCES}:   false,
	} {
		if got := isGone(err); got != want {
			t.Errorf("isGone(%v) = %v, want %v", err, got, want)
		}
	}
}
