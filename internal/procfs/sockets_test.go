package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// littleEndian: the kernel prints addresses in host byte order, and the
// expectations below are written for the little-endian machines gm2-init
// runs on (amd64, arm64).
func littleEndian(t *testing.T) {
	t.Helper()
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	if b[0] != 1 {
		t.Skip("the expected addresses are written for a little-endian host")
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// parseNetTCP parses a whole net/tcp file, every row.
func parseNetTCP(data []byte, v6 bool) ([]TCPSocket, error) {
	return scanNetTCP(bytes.NewReader(data), v6, false)
}

func TestParseNetTCPFiles(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		file string
		v6   bool
		want []TCPSocket
	}{
		{"tcp", false, []TCPSocket{
			{ap("127.0.0.1:8080"), ap("0.0.0.0:0"), TCPListen, 1001},
			{ap("0.0.0.0:9292"), ap("0.0.0.0:0"), TCPListen, 1002},
			{ap("127.0.0.1:8080"), ap("127.0.0.1:54000"), 0x01, 1003},
			{ap("127.0.0.1:8080"), ap("127.0.0.1:54002"), 0x06, 0},
		}},
		{"tcp6", true, []TCPSocket{
			{ap("[::]:8000"), ap("[::]:0"), TCPListen, 2001},
			{ap("[::1]:80"), ap("[::]:0"), TCPListen, 2003},
			{ap("[::ffff:127.0.0.1]:8080"), ap("[::ffff:127.0.0.1]:60206"), 0x01, 2002},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "sockets", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseNetTCP(data, tt.v6)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseNetTCP(%s):\n got %v\nwant %v", tt.file, got, tt.want)
			}
		})
	}
}

func TestParseNetTCPRows(t *testing.T) {
	littleEndian(t)
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	const good = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 77 1 0 100 0 0 10 0"
	tests := []struct {
		name    string
		data    string
		v6      bool
		want    []TCPSocket
		wantErr bool
	}{
		{"header only", header, false, nil, false},
		{"empty", "", false, nil, false},
		{"one row, no final newline", header + good, false, []TCPSocket{{ap("127.0.0.1:8080"), ap("0.0.0.0:0"), TCPListen, 77}}, false},
		{"blank lines skipped", header + good + "\n\n", false, []TCPSocket{{ap("127.0.0.1:8080"), ap("0.0.0.0:0"), TCPListen, 77}}, false},
		{"exactly 10 fields", header + "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 5", false, []TCPSocket{{ap("127.0.0.1:8080"), ap("0.0.0.0:0"), TCPListen, 5}}, false},
		{"too few fields", header + "0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0", false, nil, true},
		{"slot without colon", header + strings.Replace(good, "0:", "0 ", 1), false, nil, true},
		{"v6 address in the v4 file", header + "0: 00000000000000000000000000000000:1F40 00000000:0000 0A 0:0 0:0 0 0 0 5", false, nil, true},
		{"v4 address in the v6 file", header + good, true, nil, true},
		{"address not hex", header + strings.Replace(good, "0100007F", "0100007G", 1), false, nil, true},
		{"address with a sign", header + strings.Replace(good, "0100007F", "+100007F", 1), false, nil, true},
		{"port of 5 digits", header + strings.Replace(good, ":1F90", ":01F90", 1), false, nil, true},
		{"port not hex", header + strings.Replace(good, ":1F90", ":1F9Z", 1), false, nil, true},
		{"no port", header + strings.Replace(good, "0100007F:1F90", "0100007F1F90", 1), false, nil, true},
		{"state of 3 digits", header + strings.Replace(good, " 0A ", " 00A ", 1), false, nil, true},
		{"state not hex", header + strings.Replace(good, " 0A ", " 0Q ", 1), false, nil, true},
		{"inode not decimal", header + strings.Replace(good, " 77 ", " 7a ", 1), false, nil, true},
		{"inode signed", header + strings.Replace(good, " 77 ", " +77 ", 1), false, nil, true},
		{"inode negative", header + strings.Replace(good, " 77 ", " -77 ", 1), false, nil, true},
		{"inode overflow", header + strings.Replace(good, " 77 ", " 18446744073709551616 ", 1), false, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNetTCP([]byte(tt.data), tt.v6)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errBadNetTCP) {
				t.Errorf("error %v does not wrap errBadNetTCP", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// formatNetTCPRow writes a row the way the kernel does (net/ipv4/tcp_ipv4.c,
// net/ipv6/tcp_ipv6.c), for the round trip of the fuzz target.
func formatNetTCPRow(slot int, s TCPSocket, v6 bool) string {
	hexAddr := func(a netip.Addr) string {
		raw := a.As16()
		words := raw[:]
		if !v6 {
			a4 := a.As4()
			words = a4[:]
		}
		var b strings.Builder
		for i := 0; i < len(words); i += 4 {
			fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(words[i:]))
		}
		return b.String()
	}
	return fmt.Sprintf("%4d: %s:%04X %s:%04X %02X 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 100 0 0 10 0",
		slot, hexAddr(s.Local.Addr()), s.Local.Port(), hexAddr(s.Remote.Addr()), s.Remote.Port(), s.State, s.Inode)
}

// FuzzParseNetTCP: arbitrary input never panics, and what parses formats
// back, the kernel's way, into rows that parse to the same sockets.
func FuzzParseNetTCP(f *testing.F) {
	for _, name := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join("testdata", "sockets", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, name == "tcp6")
	}
	f.Add([]byte("h\n0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 5"), false)
	f.Add([]byte("h\n0: :: 0 0 0 0 0 0 0 0"), true)
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		rows, err := parseNetTCP(data, v6)
		if err != nil {
			return
		}
		var b strings.Builder
		b.WriteString("header\n")
		for i, r := range rows {
			if r.Local.Addr().Is4() == v6 || r.Remote.Addr().Is4() == v6 {
				t.Fatalf("row %d: address family does not match v6=%v: %v", i, v6, r)
			}
			b.WriteString(formatNetTCPRow(i, r, v6) + "\n")
		}
		again, err := parseNetTCP([]byte(b.String()), v6)
		if err != nil {
			t.Fatalf("reparse of %q: %v", b.String(), err)
		}
		if !slices.Equal(rows, again) {
			t.Fatalf("round trip:\n got %v\nwant %v", again, rows)
		}
	})
}

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[0]", 0, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[18446744073709551616]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[+5]", 0, false},
		{"socket:[-5]", 0, false},
		{"socket:[12", 0, false},
		{"socket:12]", 0, false},
		{"pipe:[12345]", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
		{"/dev/null", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseSocketLink(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseSocketLink(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func inodeOf(t *testing.T, fd uintptr) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The test process's own listener: its inode is among its socket inodes,
// and a LISTEN row with that inode and address is in its net/tcp.
func TestSocketInodesAndListeningTCPRealProcess(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1:0"
			if network == "tcp6" {
				host = "[::1]:0"
			}
			// Connections first, then the listener: its row must still be
			// in the listening section, which the kernel prints first.
			other, err := net.Listen(network, host)
			if err != nil {
				t.Skipf("no %s on loopback: %v", network, err)
			}
			defer other.Close()
			for range 3 {
				c, err := net.Dial(network, other.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			ln, err := net.Listen(network, host)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ino := inodeOf(t, f.Fd())

			socks, err := SocketInodes("/proc", os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := socks[ino]; !ok {
				t.Fatalf("SocketInodes does not list the listener's inode %d: %v", ino, socks)
			}
			rows, err := ListeningTCP("/proc", os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			want := netip.MustParseAddrPort(ln.Addr().String())
			found := false
			for _, r := range rows {
				if r.State != TCPListen {
					t.Errorf("ListeningTCP returned a row in state %02X", r.State)
				}
				if r.Inode == ino {
					found = true
					if r.Local != want {
						t.Errorf("listener inode %d at %v, want %v", ino, r.Local, want)
					}
				}
			}
			if !found {
				t.Errorf("no LISTEN row with inode %d among %v", ino, rows)
			}
		})
	}
}

func TestListeningTCPErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := ListeningTCP(root, 5); err == nil {
		t.Error("no error without net/tcp")
	}
	dir := filepath.Join(root, "5", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tcp, _ := os.ReadFile(filepath.Join("testdata", "sockets", "tcp"))
	if err := os.WriteFile(filepath.Join(dir, "tcp"), tcp, 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := ListeningTCP(root, 5) // no tcp6: IPv6 off
	if err != nil || len(rows) != 2 {
		t.Errorf("without tcp6: %v, %v; want the 2 listening rows", rows, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tcp6"), []byte("h\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ListeningTCP(root, 5); err == nil || !strings.Contains(err.Error(), "tcp6") {
		t.Errorf("a malformed tcp6: error %v, want one naming the file", err)
	}
}

// netTCPRoot writes a procRoot whose pid 5 has a net/tcp of the given
// rows after the header, and no tcp6.
func netTCPRoot(t testing.TB, rows []string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "5", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" + strings.Join(rows, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// netTCPRow formats a row as the kernel does (the fields after the inode
// shortened).
func netTCPRow(n int, local, remote string, state uint8, inode int) string {
	return fmt.Sprintf("%4d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0", n, local, remote, state, inode)
}

// A busy server's namespace: the listeners, then thousands of connections.
// ListeningTCP reads the listening section only, as the kernel prints it
// first: what follows it is not read, so neither a LISTEN row placed after
// it (which a kernel never prints) nor a malformed row there counts.
func TestListeningTCPReadsTheListeningSection(t *testing.T) {
	littleEndian(t)
	rows := []string{
		netTCPRow(0, "0100007F:1F90", "00000000:0000", TCPListen, 1001),
		netTCPRow(1, "00000000:24AC", "00000000:0000", TCPListen, 1002),
	}
	for i := 0; i < 5000; i++ {
		rows = append(rows, netTCPRow(len(rows), "0100007F:1F90", fmt.Sprintf("0100007F:%04X", 1024+i), 0x06, 0))
	}
	rows = append(rows, netTCPRow(len(rows), "00000000:0050", "00000000:0000", TCPListen, 1003), "garbage")
	// A kernel before 4.4: a listener's pending requests follow it.
	rows = slices.Insert(rows, 1, netTCPRow(1, "0100007F:1F90", "0100007F:C000", 0x03, 0))
	got, err := ListeningTCP(netTCPRoot(t, rows), 5)
	if err != nil {
		t.Fatal(err)
	}
	want := []TCPSocket{
		{ap("127.0.0.1:8080"), ap("0.0.0.0:0"), TCPListen, 1001},
		{ap("0.0.0.0:9388"), ap("0.0.0.0:0"), TCPListen, 1002},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListeningTCP:\n got %v\nwant %v", got, want)
	}
	// A malformed row within the listening section is an error; so is a
	// line no kernel writes.
	for _, bad := range [][]string{
		{netTCPRow(0, "0100007F:1F90", "00000000:0000", TCPListen, 1001), "   1: 0100007F:1F91"},
		{strings.Repeat("0", maxNetTCPRow+1)},
	} {
		if _, err := ListeningTCP(netTCPRoot(t, bad), 5); err == nil || !errors.Is(err, errBadNetTCP) {
			t.Errorf("rows %.60q: error %v, want a malformed row", bad, err)
		}
	}
}

// BenchmarkListeningTCP reads the listeners of a namespace with 20,000
// connections (the wrong-port check does, once per worker start).
func BenchmarkListeningTCP(b *testing.B) {
	rows := []string{netTCPRow(0, "00000000:1F90", "00000000:0000", TCPListen, 1001)}
	for i := 0; i < 20000; i++ {
		rows = append(rows, netTCPRow(len(rows), "0100007F:1F90", fmt.Sprintf("0100007F:%04X", 1024+i%60000), 0x06, 0))
	}
	root := netTCPRoot(b, rows)
	b.ReportAllocs()
	for b.Loop() {
		if got, err := ListeningTCP(root, 5); err != nil || len(got) != 1 {
			b.Fatalf("%v, %v", got, err)
		}
	}
}

// waitExec waits until pid's command line starts with name (the child has
// exec'd), for at most 10 s.
func waitExec(t *testing.T, pid int, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if args, err := Cmdline("/proc", pid); err == nil && len(args) > 0 && filepath.Base(args[0]) == name {
			return
		}
		if time.Now().After(deadline) {
			args, err := Cmdline("/proc", pid)
			t.Fatalf("pid %d did not exec %s within 10 s (%q, %v)", pid, name, args, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCmdlineEnvValueAndIsGoBinaryRealProcess(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	cmd := exec.Command(sleep, "30")
	cmd.Env = []string{"A=1", "LISTEN_PID=4242", "EMPTY="}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	waitExec(t, pid, "sleep")

	args, err := Cmdline("/proc", pid)
	if err != nil || !slices.Equal(args, []string{sleep, "30"}) {
		t.Errorf("Cmdline = %q, %v", args, err)
	}
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{{"LISTEN_PID", "4242", true}, {"A", "1", true}, {"EMPTY", "", true}, {"LISTEN", "", false}, {"B", "", false}} {
		v, ok, err := EnvValue("/proc", pid, tc.key)
		if err != nil || v != tc.want || ok != tc.ok {
			t.Errorf("EnvValue(%s) = %q, %v, %v; want %q, %v", tc.key, v, ok, err, tc.want, tc.ok)
		}
	}
	if IsGoBinary("/proc", pid) {
		t.Error("sleep(1) taken for a Go program")
	}
	if !IsGoBinary("/proc", os.Getpid()) {
		t.Error("the test binary (Go) not recognised as a Go program")
	}
	if IsGoBinary("/proc", 0) {
		t.Error("pid 0 taken for a Go program")
	}
	if _, err := Cmdline("/proc", 0); err == nil {
		t.Error("Cmdline of pid 0: no error")
	}
	if _, _, err := EnvValue(t.TempDir(), 7, "A"); err == nil {
		t.Error("EnvValue without the file: no error")
	}
}

func TestHasGoBuildIDNote(t *testing.T) {
	note := func(name string, namesz, typ uint32) []byte {
		b := []byte("\x7fELF")
		b = append(b, make([]byte, 20)...)
		b = binary.LittleEndian.AppendUint32(b, namesz)
		b = binary.LittleEndian.AppendUint32(b, 83) // descsz
		b = binary.LittleEndian.AppendUint32(b, typ)
		return append(b, name...)
	}
	tests := []struct {
		name string
		head []byte
		want bool
	}{
		{"go build id note", note("Go\x00\x00", 4, 4), true},
		{"gnu build id note", note("GNU\x00", 4, 3), false},
		{"Go name, other type", note("Go\x00\x00", 4, 1), false},
		{"Go name, other namesz", note("Go\x00\x00", 8, 4), false},
		{"not ELF", append([]byte("#!/bin"), note("Go\x00\x00", 4, 4)[4:]...), false},
		{"name at the very start", []byte("\x7fELFGo\x00\x00"), false},
		{"empty", nil, false},
		{"second match counts", append(note("Go\x00\x00", 4, 1), note("Go\x00\x00", 4, 4)[4:]...), true},
	}
	for _, tt := range tests {
		if got := hasGoBuildIDNote(tt.head); got != tt.want {
			t.Errorf("%s: hasGoBuildIDNote = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTreeRealProcess(t *testing.T) {
	// sh, two children, and a grandchild under the second.
	_, pids := startShellChain(t, `sleep 30 & a=$!; sh -c 'sleep 30 & wait' & b=$!; echo $$ $a $b; wait`)
	if len(pids) != 3 {
		t.Fatalf("sh printed %v, want 3 pids", pids)
	}
	var tree []int
	t.Cleanup(func() {
		for _, p := range tree {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		tree = Tree("/proc", pids[0])
		if len(tree) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Tree(%d) = %v after 10 s, want sh, 2 children and a grandchild", pids[0], tree)
		}
		time.Sleep(time.Millisecond)
	}
	if tree[0] != pids[0] || !slices.Contains(tree, pids[1]) || !slices.Contains(tree, pids[2]) || len(tree) != 4 {
		t.Errorf("Tree = %v, want %v and one grandchild", tree, pids)
	}
}

func TestTreeFakeProc(t *testing.T) {
	// With task/*/children: threads' children are all counted.
	root := t.TempDir()
	write := func(rel, s string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10/task/10/children", "11 12 ")
	write("10/task/13/children", "14 ")
	write("11/task/11/children", "")
	write("12/task/12/children", "15 10 ") // a cycle back to 10 is ignored
	write("14/task/14/children", "16 ")
	write("15/task/15/children", "")
	write("16/task/16/children", "")
	// The threads' lists come in directory order: compare as sets after
	// the root.
	if got, want := Tree(root, 10), []int{10, 11, 12, 14, 15, 16}; len(got) == 0 || got[0] != 10 || !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("Tree = %v, want 10, then %v in any order", got, want[1:])
	}
	if got := Tree(root, 99); !slices.Equal(got, []int{99}) {
		t.Errorf("Tree of a missing pid = %v, want just it", got)
	}

	// Without children files (CONFIG_PROC_CHILDREN off; the threads'
	// directories are there): the parents in stat.
	stats := fakeProc(t, map[int]string{
		20: "20 (w) S 1 20 20",
		21: "21 (a) S 20 20 20",
		22: "22 (b) S 21 20 20",
		23: "23 (c) S 1 23 23",
	})
	for _, p := range []int{20, 21, 22, 23} {
		if err := os.MkdirAll(filepath.Join(stats, strconv.Itoa(p), "task", strconv.Itoa(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := Tree(stats, 20), []int{20, 21, 22}; !slices.Equal(got, want) {
		t.Errorf("Tree without children files = %v, want %v", got, want)
	}
}
