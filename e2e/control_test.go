package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var controlinit struct {
	once sync.Once
	path string
	err  error
}

// buildControlInit builds the stand-in supervisor (./controlinit) once.
func buildControlInit(t *testing.T) string {
	t.Helper()
	controlinit.once.Do(func() {
		dir, err := os.MkdirTemp("", "gm2-controlinit-")
		if err != nil {
			controlinit.err = err
			return
		}
		controlinit.path = filepath.Join(dir, "controlinit")
		cmd := exec.Command("go", "build", "-o", controlinit.path, "./controlinit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			controlinit.err = err
			controlinit.path = string(out)
		}
	})
	if controlinit.err != nil {
		t.Fatalf("build controlinit: %v\n%s", controlinit.err, controlinit.path)
	}
	return controlinit.path
}

// nsServer is a controlinit running as PID 1 of its own PID namespace.
type nsServer struct {
	pid   int // host pid
	lines chan map[string]any
}

func startNSServer(t *testing.T, apps ...string) *nsServer {
	t.Helper()
	argv := append(append(namespaceCmd(t), buildControlInit(t)), apps...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &nsServer{lines: make(chan map[string]any, 64)}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case s.lines <- m:
				default: // nobody asked for that many: drop
				}
			}
		}
		close(s.lines)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		// SIGTERM first, so that the server removes its socket directory
		// (on the shared /run) before its namespace ends.
		if s.pid > 0 {
			syscall.Kill(s.pid, syscall.SIGTERM)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case m, ok := <-s.lines:
		if !ok || m["ready"] == nil {
			t.Fatalf("controlinit did not start: %v; stderr: %s", m, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("controlinit did not start; stderr: %s", stderr.String())
	}
	for deadline := time.Now().Add(10 * time.Second); s.pid == 0; {
		if c := childrenOf(cmd.Process.Pid); len(c) > 0 {
			s.pid = c[0]
		} else if time.Now().After(deadline) {
			t.Fatal("no controlinit process under unshare")
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	return s
}

// exec runs argv inside the server's PID and mount namespaces.
func (s *nsServer) exec(t *testing.T, argv ...string) (int, string, string) {
	t.Helper()
	return nsExec(t, s.pid, argv...)
}

// nsExec runs argv inside the PID and mount namespaces of the host pid
// pid, as docker exec runs a command in a container, and returns its exit
// status and output.
func nsExec(t *testing.T, pid int, argv ...string) (int, string, string) {
	t.Helper()
	full := append([]string{"nsenter", "--target", strconv.Itoa(pid), "--pid", "--mount", "--"}, argv...)
	cmd := exec.Command(full[0], full[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%q: %v", full, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// otherUserBinary copies gm2-init where another uid can run it.
func otherUserBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gm2-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "gm2-init")
	data, err := os.ReadFile(bins.init)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func (s *nsServer) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m := <-s.lines:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("the server received no command")
	}
	return nil
}

func needRootAndTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s (util-linux) is not installed", tool)
			}
			t.Skipf("%s (util-linux) is not installed", tool)
		}
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must run there")
		}
		t.Skip("entering another PID namespace (nsenter) needs root")
	}
}

// Two gm2-init control sockets side by side, /run and /tmp shared: each
// command reaches the server of its own PID namespace.
func TestControlReachesItsOwnNamespace(t *testing.T) {
	needRootAndTools(t, "nsenter", "setpriv")
	a := startNSServer(t, "api", "worker")
	b := startNSServer(t, "web")

	for _, tc := range []struct {
		s    *nsServer
		want []string
	}{{a, []string{"api", "worker"}}, {b, []string{"web"}}} {
		code, out, errs := tc.s.exec(t, bins.init, "status", "--json")
		var snap struct {
			Apps []struct{ Name string } `json:"apps"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &snap) != nil {
			t.Fatalf("status --json: %d %q %q", code, out, errs)
		}
		var got []string
		for _, app := range snap.Apps {
			got = append(got, app.Name)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("status in the namespace of %v reached apps %v", tc.want, got)
		}
	}

	code, out, _ := a.exec(t, bins.init, "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "APP     INSTANCE  PID  STATE  UPTIME  RESTARTS  CPU  MEMORY") ||
		!strings.HasPrefix(lines[1], "api     0         100  ready  ") || !strings.HasPrefix(lines[2], "worker  0         101  ready  ") {
		t.Errorf("status table: %d\n%s", code, out)
	}

	if code, out, errs := a.exec(t, bins.init, "reload", "api"); code != 0 || out != "reloaded api\n" {
		t.Errorf("reload api: %d %q %q", code, out, errs)
	}
	if m := a.next(t); len(m["reload"].([]any)) != 1 {
		t.Errorf("server a got %v", m)
	}
	if code, out, errs := b.exec(t, bins.init, "scale", "web", "3"); code != 0 || out != "web: 3 instances (was 1)\n" {
		t.Errorf("scale web 3: %d %q %q", code, out, errs)
	}
	if m := b.next(t); m["scale"] != "web" || m["n"] != float64(3) {
		t.Errorf("server b got %v", m)
	}
	if code, _, errs := b.exec(t, bins.init, "reload", "api"); code != 1 || errs != "gm2-init reload: unknown app \"api\" (apps: web)\n" {
		t.Errorf("reload api in b's namespace: %d %q", code, errs)
	}

	// Every command the README shows, exactly as written.
	for _, line := range readmeCommands(t, "## Control commands inside the container") {
		args := strings.Fields(line)
		if args[0] != "gm2-init" {
			t.Fatalf("README command %q", line)
		}
		code, out, errs := a.exec(t, append([]string{bins.init}, args[1:]...)...)
		if code != 0 || out == "" {
			t.Errorf("README's %q: %d %q %q", line, code, out, errs)
		}
		if args[1] != "status" {
			a.next(t)
		}
	}

	// Another uid in the same namespace is refused.
	bin := otherUserBinary(t)
	code, out, errs := a.exec(t, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", bin, "reload", "api")
	want := "gm2-init reload: permission denied: only root and uid 0, the user gm2-init runs as, may control gm2-init (you are uid 65534)\n"
	if code != 1 || out != "" || errs != want {
		t.Errorf("as uid 65534: %d %q %q\nwant %q", code, out, errs, want)
	}
	select {
	case m := <-a.lines:
		t.Errorf("a refused client reached the supervisor: %v", m)
	default:
	}
}

// readmeCommands returns the commands of the README's indented code blocks
// in the section that starts with heading (without their # comments).
func readmeCommands(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var cmds []string
	for _, line := range strings.Split(sec, "\n") {
		if cmd, ok := strings.CutPrefix(line, "    "); ok && strings.TrimSpace(cmd) != "" {
			cmd, _, _ = strings.Cut(cmd, "#")
			cmds = append(cmds, strings.TrimSpace(cmd))
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("no command in the README's section %q", heading)
	}
	return cmds
}
