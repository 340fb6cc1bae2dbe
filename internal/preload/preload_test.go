package preload

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseLine(t *testing.T) {
	t.Parallel()
	ok := []struct {
		line string
		want Event
	}{
		{"hello 1", Event{Kind: KindHello, Pid: 1}},
		{"hello 4242\n", Event{Kind: KindHello, Pid: 4242}},
		{"listening 3 77", Event{Kind: KindListening, FD: 3, Pid: 77}},
		{"listening 12 999999999\n", Event{Kind: KindListening, FD: 12, Pid: 999999999}},
		{"listening 003 077", Event{Kind: KindListening, FD: 3, Pid: 77}},
		{"shared 1 77", Event{Kind: KindShared, ID: 1, Pid: 77}},
		{"shared 64 123456\n", Event{Kind: KindShared, ID: 64, Pid: 123456}},
	}
	for _, c := range ok {
		got, err := ParseLine(c.line)
		if err != nil || got != c.want {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v", c.line, got, err, c.want)
		}
	}
	bad := []string{
		"", "\n", "hello", "hello ", "hello 0", "hello -1", "hello +5", "hello 1 2", "hello  1",
		"hello 1\n\n", "hello 1\r\n", "Hello 1", "hello 0x10", "hello 1234567890",
		"listening 3", "listening 2 10", "listening 3 0", "listening 3 10 1", "listening a 10",
		"listening 3  10", " listening 3 10", "ready 3 10", "listening 3 10 ", "hello ١",
		"shared 0 10", "shared 1", "shared 1 0", "shared x 10", "shared 1 10 2", "Shared 1 10",
	}
	for _, line := range bad {
		if got, err := ParseLine(line); err == nil {
			t.Errorf("ParseLine(%q) = %+v, want an error", line, got)
		} else if !strings.HasPrefix(err.Error(), "preload: event ") {
			t.Errorf("ParseLine(%q) error %q lacks context", line, err)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"hello 1", "listening 3 10\n", "listening 999999999 1", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ev, err := ParseLine(line)
		if err != nil {
			return
		}
		// Whatever parses is a well-formed event, and prints back to a line
		// that parses to the same event.
		switch ev.Kind {
		case KindHello:
			if ev.Pid < 1 || ev.FD != 0 {
				t.Fatalf("%q parsed to %+v", line, ev)
			}
		case KindListening:
			if ev.Pid < 1 || ev.FD < 3 {
				t.Fatalf("%q parsed to %+v", line, ev)
			}
		default:
			t.Fatalf("%q parsed to kind %q", line, ev.Kind)
		}
		if len(line) > MaxLine {
			t.Fatalf("a %d-byte line parsed", len(line))
		}
	})
}

func collect(t *testing.T, r io.Reader) ([]Event, error) {
	t.Helper()
	var evs []Event
	err := Read(r, func(ev Event) { evs = append(evs, ev) })
	return evs, err
}

func TestRead(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3*MaxLine)
	in := "hello 10\n" +
		"garbage\n" +
		long + "\n" +
		"listening 3 10\n" +
		"hello " + strings.Repeat("1", MaxLine) + "\n" +
		"listening 4 11\n" +
		"hello 12" // unterminated: dropped
	want := []Event{{Kind: KindHello, Pid: 10}, {Kind: KindListening, FD: 3, Pid: 10}, {Kind: KindListening, FD: 4, Pid: 11}}
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(in),
		"bytewise": iotest.OneByteReader(strings.NewReader(in)),
		"halves":   iotest.HalfReader(strings.NewReader(in)),
	} {
		got, err := collect(t, r)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: event %d = %+v, want %+v", name, i, got[i], want[i])
			}
		}
	}
	// Garbage lines around the buffer size never swallow the next event.
	for _, n := range []int{MaxLine - 2, MaxLine - 1, MaxLine, MaxLine + 1} {
		in := strings.Repeat("z", n) + "\nhello 7\n"
		if got, err := collect(t, iotest.HalfReader(strings.NewReader(in))); err != nil || len(got) != 1 || got[0].Pid != 7 {
			t.Errorf("after a %d-byte line: %v, %v", n, got, err)
		}
	}
}

func TestReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("hello 5\nhel"), iotest.ErrReader(boom))
	got, err := collect(t, r)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "preload: read events") {
		t.Errorf("error %v, want boom with context", err)
	}
	if len(got) != 1 || got[0].Pid != 5 {
		t.Errorf("events before the error: %v", got)
	}
	// Also an error while skipping an overlong line.
	r = io.MultiReader(strings.NewReader(strings.Repeat("y", 2*MaxLine)), iotest.ErrReader(boom))
	if _, err := collect(t, r); !errors.Is(err, boom) {
		t.Errorf("error while skipping: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("hello 1\nlistening 3 1\n"), uint8(0))
	f.Add([]byte(strings.Repeat("a", 2000)+"\nhello 2\n"), uint8(1))
	f.Add([]byte("\n\n\nlistening 3 4"), uint8(2))
	f.Add([]byte("shared 2 40\nshared 0 1\n"), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, how uint8) {
		var r io.Reader
		switch how % 3 {
		case 0:
			r = strings.NewReader(string(data))
		case 1:
			r = iotest.OneByteReader(strings.NewReader(string(data)))
		default:
			r = iotest.DataErrReader(strings.NewReader(string(data)))
		}
		n := 0
		err := Read(r, func(ev Event) {
			n++
			if ev.Kind != KindHello && ev.Kind != KindListening && ev.Kind != KindShared {
				t.Fatalf("event of kind %q", ev.Kind)
			}
		})
		if err != nil {
			t.Fatalf("Read of an in-memory reader: %v", err)
		}
		if n > strings.Count(string(data), "\n") {
			t.Fatalf("%d events from %d lines", n, strings.Count(string(data), "\n"))
		}
	})
}

func TestListenersEnv(t *testing.T) {
	t.Parallel()
	ls := []Listener{
		{FD: 3, Proto: "tcp", Addr: "0.0.0.0:3000"},
		{FD: 4, Proto: "tcp", Addr: "[::]:8443"},
		{FD: 5, Proto: "udp", Addr: "127.0.0.1:5353"},
		{FD: 6, Proto: "unix", Addr: "/run/app.sock"},
		{FD: 7, Proto: "unix", Addr: "/run/a,b.sock"}, // cannot be described
		{FD: 8, Proto: "unixgram", Addr: "@abstract:name"},
		{FD: 9, Proto: "sctp", Addr: "0.0.0.0:1"},
		{FD: 10, Proto: "tcp", Addr: "0.0.0.0"},
		{FD: 11, Proto: "tcp", Addr: "0.0.0.0:0"},
		{FD: 2, Proto: "tcp", Addr: "0.0.0.0:80"},
		{FD: 3, Proto: "tcp", Addr: "0.0.0.0:9999"}, // fd already described
		{FD: 12, Proto: "unix", Addr: ""},
		{FD: 13, Proto: "unix", Addr: "/run/x\n"},
	}
	want := "3=tcp:0.0.0.0:3000,4=tcp:[::]:8443,5=udp:127.0.0.1:5353,6=unix:/run/app.sock,8=unixgram:@abstract:name"
	if got := ListenersEnv(ls); got != want {
		t.Errorf("ListenersEnv = %q\nwant            %q", got, want)
	}
	if got := ListenersEnv(nil); got != "" {
		t.Errorf("ListenersEnv(nil) = %q", got)
	}
	for _, l := range ls[4:] {
		if l.FD == 8 || l.Addr == "0.0.0.0:9999" {
			continue // valid alone
		}
		if err := l.Valid(); err == nil || !strings.Contains(err.Error(), "preload: listener fd") {
			t.Errorf("Valid(%+v) = %v, want an error with context", l, err)
		}
	}
}

func TestFromAddr(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr net.Addr
		want Listener
		ok   bool
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 3000}, Listener{3, "tcp", "0.0.0.0:3000"}, true},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, Listener{3, "tcp", "[::]:80"}, true},
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}, Listener{3, "udp", "127.0.0.1:53"}, true},
		{&net.UnixAddr{Name: "/run/a.sock", Net: "unix"}, Listener{3, "unix", "/run/a.sock"}, true},
		{&net.UnixAddr{Name: "@x", Net: "unixgram"}, Listener{3, "unixgram", "@x"}, true},
		{&net.UnixAddr{Name: "/run/p", Net: "unixpacket"}, Listener{}, false},
		{&net.IPAddr{IP: net.IPv4zero}, Listener{}, false},
	}
	for _, c := range cases {
		got, ok := FromAddr(3, c.addr)
		if ok != c.ok || got != c.want {
			t.Errorf("FromAddr(%v) = %+v, %v; want %+v, %v", c.addr, got, ok, c.want, c.ok)
		}
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	imp := ImportOption()
	if !strings.HasPrefix(imp, "--import=data:text/javascript;base64,") || strings.ContainsAny(imp, " \t\n\"'") {
		t.Fatalf("ImportOption %.60q is not one NODE_OPTIONS token", imp)
	}
	src, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(imp, importPrefix))
	if err != nil || string(src) != importHeader+preloadSource+importTrailer {
		t.Fatalf("ImportOption does not carry header+preload: %v", err)
	}
	if len(imp) > 64<<10 {
		t.Errorf("ImportOption is %d bytes; keep NODE_OPTIONS small", len(imp))
	}
	cases := []struct{ existing, opt, want string }{
		{"", "--require /p.cjs", "--require /p.cjs"},
		{"  ", "--require /p.cjs", "--require /p.cjs"},
		{"--max-old-space-size=100", "--require /p.cjs", "--max-old-space-size=100 --require /p.cjs"},
		{" --inspect ", "--require /p.cjs", "--inspect --require /p.cjs"},
		{"--max-old-space-size=100 --require /p.cjs", "--require /p.cjs", "--max-old-space-size=100 --require /p.cjs"},
		{"--require /p.cjs --trace-warnings", "--require /p.cjs", "--require /p.cjs --trace-warnings"},
		{"--require /p.cjsx", "--require /p.cjs", "--require /p.cjsx --require /p.cjs"},
		{"--x", "", "--x"},
	}
	for _, c := range cases {
		if got := AppendOption(c.existing, c.opt); got != c.want {
			t.Errorf("AppendOption(%q, %q) = %q, want %q", c.existing, c.opt, got, c.want)
		}
	}
	once := NodeOptions("--max-old-space-size=100")
	if once != "--max-old-space-size=100 "+imp || NodeOptions(once) != once {
		t.Errorf("NodeOptions is not idempotent")
	}
	if got, err := RequireOption("/dev/shm/gm2-init-preload-1/preload.cjs"); err != nil || got != "--require /dev/shm/gm2-init-preload-1/preload.cjs" {
		t.Errorf("RequireOption = %q, %v", got, err)
	}
	for _, p := range []string{"relative.cjs", "/with space/p.cjs", `/q"uote.cjs`, `/back\slash.cjs`} {
		if _, err := RequireOption(p); err == nil {
			t.Errorf("RequireOption(%q) accepted", p)
		}
	}
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, cleanup, err := WriteFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != preloadSource {
		t.Fatalf("file content: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("file mode %v, %v; want 0444", fi.Mode(), err)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, %v; want 0755", di.Mode(), err)
	}
	if filepath.Base(path) != FileName || filepath.Dir(filepath.Dir(path)) != dir {
		t.Errorf("unexpected path %s", path)
	}
	cleanup()
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("cleanup left %s: %v", filepath.Dir(path), err)
	}
	if _, _, err := WriteFile(filepath.Join(dir, "missing", "dir")); err == nil || !strings.Contains(err.Error(), "preload: create directory") {
		t.Errorf("WriteFile into a missing directory: %v", err)
	}
}

// TestWorkerEnvExpands: what the supervisor puts in a worker's environment,
// once the exec shim has expanded it, gives the app the NODE_OPTIONS that
// Choose decided, and the marker never reaches the app.
func TestWorkerEnvExpands(t *testing.T) {
	t.Parallel()
	const user = "--max-old-space-size=100"
	cases := []struct {
		name   string
		choice Choice
		want   string // NODE_OPTIONS the app sees; "-" = none
	}{
		{"import, user options", Choice{NodeOptions: NodeOptions(user), Mode: ModeImport, existing: user}, NodeOptions(user)},
		{"import, no user options", Choice{NodeOptions: NodeOptions(""), Mode: ModeImport}, ImportOption()},
		{"require", Choice{NodeOptions: user + " --require /p.cjs", Mode: ModeRequire}, user + " --require /p.cjs"},
		{"off", Choice{Mode: ModeOff}, "-"},
	}
	for _, c := range cases {
		env := c.choice.WorkerEnv()
		for _, kv := range env {
			if len(kv) > 1024 {
				t.Errorf("%s: WorkerEnv carries a %d-byte entry; the data: URL belongs to the shim", c.name, len(kv))
			}
		}
		if c.choice.Mode == ModeOff && env != nil {
			t.Errorf("%s: WorkerEnv = %q, want nil", c.name, env)
		}
		app := ExpandImport(append([]string{"PATH=/bin", "A=b"}, env...))
		got := "-"
		for _, kv := range app {
			if strings.HasPrefix(kv, EnvImport+"=") {
				t.Errorf("%s: %s reaches the app", c.name, EnvImport)
			}
			if v, ok := strings.CutPrefix(kv, "NODE_OPTIONS="); ok {
				got = v
			}
		}
		if got != c.want {
			t.Errorf("%s: the app's NODE_OPTIONS = %.80q, want %.80q", c.name, got, c.want)
		}
		if app[0] != "PATH=/bin" || app[1] != "A=b" {
			t.Errorf("%s: other variables changed: %.80q", c.name, app)
		}
	}
}
