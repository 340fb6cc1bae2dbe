package e2e

import (
	"bufio"
	"bytes"
	"context"
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
		controlinit.path = filepath.Join(bins.dir, "controlinit")
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

	// status --json is the /status document of the server reached: a
	// slot per app, with the app's name where the document has it.
	for _, tc := range []struct {
		s    *nsServer
		want []string
	}{{a, []string{"api", "worker"}}, {b, []string{"web"}}} {
		code, out, errs := tc.s.exec(t, bins.init, "status", "--json")
		var doc struct {
			Version       string
			UptimeSeconds *float64 `json:"uptime_seconds"`
			Slots         []struct {
				App string `json:"app"`
				Pid int    `json:"pid"`
			} `json:"slots"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Version != "controlinit" || doc.UptimeSeconds == nil {
			t.Fatalf("status --json: %d %q %q", code, out, errs)
		}
		if len(doc.Slots) != len(tc.want) {
			t.Errorf("status in the namespace of %v reached %d slots: %s", tc.want, len(doc.Slots), out)
		}
		for i, sl := range doc.Slots {
			if sl.Pid != 100+i || sl.App != tc.want[i] {
				t.Errorf("status in the namespace of %v: slot %d is %+v", tc.want, i, sl)
			}
		}
	}

	code, out, _ := a.exec(t, bins.init, "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "APP INSTANCE PID STATE UPTIME RESTARTS CPU MEMORY" {
		t.Fatalf("status table: %d\n%s", code, out)
	}
	for i, app := range []string{"api", "worker"} {
		// The stand-in's pids 100 and 101 are no processes of its
		// namespace: no usage figures, "-".
		f := strings.Fields(lines[i+1])
		if len(f) != 8 || f[0] != app || f[1] != "0" || f[2] != strconv.Itoa(100+i) || f[3] != "ready" || f[6] != "-" || f[7] != "-" {
			t.Errorf("status table row %q", lines[i+1])
		}
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

	// Every command the README shows, exactly as written; a reload or
	// scale reaches the supervisor as the README says (every app: none
	// named; +1: one more than the stand-in's one instance).
	passed := map[string]struct{ got, out string }{
		"gm2-init reload api":        {`{"reload":["api"]}`, "reloaded api\n"},
		"gm2-init reload api worker": {`{"reload":["api","worker"]}`, "reloaded api, worker\n"},
		"gm2-init reload":            {`{"reload":null}`, "reloaded api, worker\n"},
		"gm2-init reload all":        {`{"reload":null}`, "reloaded api, worker\n"},
		"gm2-init scale api 3":       {`{"n":3,"scale":"api"}`, "api: 3 instances (was 1)\n"},
		"gm2-init scale api +1":      {`{"n":2,"scale":"api"}`, "api: 2 instances (was 1)\n"},
	}
	for _, line := range readmeCommands(t, "## Control commands inside the container") {
		args := strings.Fields(line)
		if args[0] != "gm2-init" {
			t.Fatalf("README command %q", line)
		}
		code, out, errs := a.exec(t, append([]string{bins.init}, args[1:]...)...)
		if code != 0 || out == "" {
			t.Errorf("README's %q: %d %q %q", line, code, out, errs)
		}
		switch args[1] {
		case "status", "ls", "list", "help":
		default:
			want, ok := passed[strings.Join(args, " ")]
			if !ok {
				t.Fatalf("README's %q: update this test with what the supervisor gets from it", line)
			}
			got, _ := json.Marshal(a.next(t))
			if string(got) != want.got || out != want.out {
				t.Errorf("README's %q: the supervisor got %s and the client printed %q; want %s and %q", line, got, out, want.got, want.out)
			}
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

// The command names are read in the first argument only: gm2-init help is
// the help, and gm2-init -- ls supervises /bin/ls (here until it exits:
// --restart never).
func TestReadmeCommandNames(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(bins.init, strings.Fields(readmeLine(t, "gm2-init help"))[1:]...).Output()
	if err != nil || !strings.Contains(string(out), "gm2-init status|ls|list [--json]") || !strings.Contains(string(out), "GM2_INSTANCES") {
		t.Errorf("gm2-init help: %v\n%s", err, out)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "listed-by-the-worker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := strings.Fields(readmeLine(t, "gm2-init -- ls"))
	cmd := exec.CommandContext(ctx, bins.init, args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GM2_RESTART=never", "GM2_HEALTH_ADDR=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "listed-by-the-worker") || !strings.Contains(stderr.String(), "starting workers") {
		t.Errorf("gm2-init -- ls: %v\nstdout %s\nstderr %s", err, stdout.String(), stderr.String())
	}
}
