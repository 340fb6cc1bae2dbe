// The README's commands that no other test ran, each run exactly as the
// README writes it (taken from the README with readmeLine). Commands bound
// to fixed ports (8080, 9000, 3000) run in a network namespace of their
// own, so that they collide with nothing on the machine; the commands the
// README runs "in the container" or "in another terminal" run in the
// namespaces of the gm2-init they talk to (nsenter), as docker exec does.

package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gm2-init/gm2-init/internal/testtool"
)

// readmeStepTimeout bounds one step of a README command: a build, workers
// becoming ready, a reload, a stop (2 shared cores, the suite in parallel).
const readmeStepTimeout = 3 * time.Minute

// gm2InitOnPath returns a directory holding "gm2-init" (the binary under
// test), to put first in PATH: the README's commands name gm2-init, not a
// path.
func gm2InitOnPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(bins.init, filepath.Join(dir, "gm2-init")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pathWith is the PATH variable with dir first.
func pathWith(dir string) string {
	return "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// startInNetns runs script with sh in dir, as PID 1 of a new PID namespace
// with a network namespace of its own whose loopback is up, with
// gm2-init on PATH. script starting with "exec gm2-init" makes gm2-init
// that PID 1, with its JSON log read as startInit's.
func startInNetns(t *testing.T, dir, script string) *Init {
	t.Helper()
	needRootAndTools(t, "nsenter", "unshare", "taskset")
	wrapper := []string{"unshare", "--net", "taskset", "-c", smallCPUSet(t), "sh", "-c", `"$0" lo-up && ` + script, bins.worker}
	// startInitWith appends gm2-init's path after the wrapper: the script's
	// $1, which it does not use.
	return startInitWith(t, bins.init, dir, []string{pathWith(gm2InitOnPath(t))}, wrapper)
}

// smallCPUSet is at most two CPUs of the test's affinity mask, as a
// taskset -c list: the README's commands use -i max, which then starts at
// most two workers whatever the machine, as in a small container.
func smallCPUSet(t *testing.T) string {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []string
	for i := 0; i < 1024 && len(cpus) < 2; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, strconv.Itoa(i))
		}
	}
	return strings.Join(cpus, ",")
}

// nsShell runs line with sh inside the PID, mount and network namespaces
// of the host pid pid, in dir, with gm2-init on PATH (another terminal of
// the same machine, or docker exec into the container), and returns its
// exit status and output.
func nsShell(t *testing.T, pid int, dir, line string) (int, string, string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--mount", "--net", "--wd="+dir, "--", "sh", "-c", line)
	cmd.Env = append(os.Environ(), pathWith(gm2InitOnPath(t)))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s: %v", line, err)
		}
	case <-time.After(readmeStepTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %v", line, readmeStepTimeout)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// nsGet returns the body of GET url from inside the network namespace of
// the host pid pid.
func nsGet(t *testing.T, pid int, url string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", bins.worker, "get", url).Output()
	if err != nil {
		t.Fatalf("GET %s in the namespace: %v", url, err)
	}
	return string(out)
}

// copyTree copies the repository into a new directory, without what is
// not source (.git and other dot directories, node_modules, the
// benchmarks' results), so that a README command that writes into the
// tree (scripts/demo.sh's .demo/, a build's ./gm2-init, bench/results/)
// leaves the real one alone.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := walkSource(func(rel string, mode fs.FileMode) error {
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join("..", rel))
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, mode.Perm())
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// walkSource calls f for every regular file of the repository's source,
// by path relative to the root; with moduleOnly, the files of nested
// modules (examples/kubernetes/check) are left out, as a module zip must.
func walkSource(f func(rel string, mode fs.FileMode) error, moduleOnly bool) error {
	return filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel("..", path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || rel == filepath.Join("bench", "results") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); moduleOnly && err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return f(rel, info.Mode())
	})
}

// lineLog is the console output of a process, line by line, waited on as
// events (every wait bounded).
type lineLog struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
	done  bool
}

func readLines(r io.Reader) *lineLog {
	l := &lineLog{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.done = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// loggedCmd is a command started by startLogged.
type loggedCmd struct {
	out    *lineLog      // stdout and stderr, line by line
	exited chan struct{} // closed once the command was waited for
	err    error         // what Wait returned, once exited is closed
}

// startLogged starts cmd with its stdout and stderr in one lineLog. The
// command dies with the test process (Pdeathsig), and is killed and waited
// for at cleanup. The pipe is an *os.File, so that Wait does not wait for
// a grandchild that inherits it (podman's conmon) to close it.
func startLogged(t *testing.T, cmd *exec.Cmd) *loggedCmd {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	lc := &loggedCmd{out: readLines(pr), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatal(err)
	}
	pw.Close()
	go func() { lc.err = cmd.Wait(); close(lc.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-lc.exited
		pr.Close() // ends readLines' reader
	})
	return lc
}

// len is the count of lines so far.
func (l *lineLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// wait returns the first line from index from on that holds every part,
// and the index after it; it fails the test after timeout.
func (l *lineLog) wait(t *testing.T, timeout time.Duration, from int, parts ...string) (string, int) {
	t.Helper()
	timer := time.AfterFunc(timeout, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := from; ; {
		for ; i < len(l.lines); i++ {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l.lines[i], p)
			}
			if all {
				return l.lines[i], i + 1
			}
		}
		if l.done || time.Now().After(deadline) {
			t.Fatalf("no line with %q (output ended: %v); output:\n%s", parts, l.done, strings.Join(l.lines, "\n"))
		}
		l.cond.Wait()
	}
}

// demoStatus is what the Quick start's curl localhost:9000/status shows.
type demoStatus struct {
	Instances    int `json:"instances"`
	ReadyWorkers int `json:"ready_workers"`
	Slots        []struct {
		Pid   int    `json:"pid"`
		State string `json:"state"`
	} `json:"slots"`
}

// TestReadmeQuickStart runs the Quick start as a reader does: scripts/demo.sh
// in the foreground (here in a copy of the repository, in network and PID
// namespaces of its own: ports 8080 and 9000 are fixed), then the four
// commands of the second terminal, each exactly as the README writes it,
// then Ctrl-C (SIGINT to the foreground process).
func TestReadmeQuickStart(t *testing.T) {
	t.Parallel()
	needRootAndTools(t, "nsenter", "unshare", "taskset")
	testtool.Require(t, "curl", "Debian package curl")
	testtool.Require(t, "go", "the Go toolchain: the demo builds gm2-init")
	const heading = "## Quick start"
	demo := readmeLine(t, "scripts/demo.sh")
	if got := readmeBlock(t, heading, 1); !slices.Equal(got, []string{demo}) {
		t.Fatalf("the Quick start's first block is %q: update this test", got)
	}
	curlApp := readmeLine(t, "curl localhost:8080/")
	curlStatus := readmeLine(t, "curl localhost:9000/status")
	hup := readmeLine(t, `kill -HUP "$(cat .demo/gm2-init.pid)"`)
	ttin := readmeLine(t, `kill -TTIN "$(cat .demo/gm2-init.pid)"`)
	if got := readmeBlock(t, heading, 2); !slices.Equal(got, []string{curlApp, curlStatus, hup, ttin}) {
		t.Fatalf("the Quick start's second terminal is %q: update this test", got)
	}
	announced := readmeLine(t, "gm2-init -i max --listen :8080 --wait-ready -- goapp")

	dir := copyTree(t)
	cmd := exec.Command("taskset", "-c", smallCPUSet(t), "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
		"sh", "-c", `"$0" lo-up && cd "$1" && exec `+demo, bins.worker, dir)
	lc := startLogged(t, cmd)
	out, exited := lc.out, lc.exited

	// The demo says what it runs; then gm2-init's console log.
	_, pos := out.wait(t, readmeStepTimeout, 0, "==> "+announced+" ")
	start, pos := out.wait(t, readmeStepTimeout, pos, "starting workers")
	m := regexp.MustCompile(`instances=(\d+)`).FindStringSubmatch(start)
	if m == nil {
		t.Fatalf("no instances in %q", start)
	}
	n, _ := strconv.Atoi(m[1])
	for range n {
		_, pos = out.wait(t, readmeStepTimeout, pos, "worker ready")
	}
	kids := childrenOf(cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("children of unshare: %v", kids)
	}
	pid1 := kids[0] // sh, then the demo's bash, then gm2-init: one pid
	if b, err := os.ReadFile(filepath.Join(dir, ".demo", "gm2-init.pid")); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Fatalf(".demo/gm2-init.pid holds %q (%v), want gm2-init's pid in its namespace, 1", b, err)
	}
	terminal := func(line string) string {
		t.Helper()
		code, stdout, stderr := nsShell(t, pid1, dir, line)
		if code != 0 {
			t.Fatalf("%s: exit status %d, %q %q", line, code, stdout, stderr)
		}
		return stdout
	}
	status := func() demoStatus {
		t.Helper()
		body := terminal(curlStatus)
		var st demoStatus
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%s: %v\n%s", curlStatus, err, body)
		}
		return st
	}
	pidsOf := func(st demoStatus) []int {
		var pids []int
		for _, s := range st.Slots {
			pids = append(pids, s.Pid)
		}
		return pids
	}

	before := status()
	if before.Instances != n || before.ReadyWorkers != n || len(before.Slots) != n {
		t.Fatalf("%s: %+v, want %d ready workers", curlStatus, before, n)
	}
	hello := terminal(curlApp)
	if !regexp.MustCompile(`^hello from worker \d+ pid (\d+)\n?$`).MatchString(hello) {
		t.Fatalf("%s: %q, want \"hello from worker N pid P\"", curlApp, hello)
	}

	terminal(hup)
	reload, pos := out.wait(t, readmeStepTimeout, pos, "reload finished")
	if !strings.Contains(reload, "result=ok") || !strings.Contains(reload, "replaced="+strconv.Itoa(n)+" ") {
		t.Fatalf("after %s: %q", hup, reload)
	}
	after := status()
	for _, p := range pidsOf(after) {
		if slices.Contains(pidsOf(before), p) {
			t.Errorf("after %s, worker %d still serves (before %v, after %v)", hup, p, pidsOf(before), pidsOf(after))
		}
	}

	terminal(ttin)
	_, pos = out.wait(t, readmeStepTimeout, pos, "worker ready", "slot="+strconv.Itoa(n))
	if st := status(); st.Instances != n+1 || st.ReadyWorkers != n+1 {
		t.Errorf("after %s: %d instances, %d ready; want %d", ttin, st.Instances, st.ReadyWorkers, n+1)
	}

	// Ctrl-C: SIGINT to the program in the foreground.
	if err := syscall.Kill(pid1, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(readmeStepTimeout):
		t.Fatal("the demo did not end after Ctrl-C")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("after Ctrl-C the demo exited with status %d, want 0", code)
	}
	out.wait(t, time.Second, pos, "gm2-init exiting", "exit_code=0")
}

// TestReadmeNodeCommands runs the README's Node commands: the one-line
// swap from pm2-runtime, the Dockerfile lines that make the same command,
// then, inside that gm2-init's PID namespace (a container), the
// gm2-init column of the PM2 table: kill -HUP 1, gm2-init reload app,
// gm2-init scale app +1, kill -TTIN 1, kill -TTOU 1, gm2-init status.
// Then the one-shot script and the wrappers the Node sections name.
func TestReadmeNodeCommands(t *testing.T) {
	t.Parallel()
	needNode(t)
	needRootAndTools(t, "nsenter", "unshare")
	line := readmeLine(t, "gm2-init -i max -- node app.js")
	dir := t.TempDir()
	copyFile(t, repoPath(t, "examples/node/http-server.js"), filepath.Join(dir, "app.js")) // listen(PORT || 3000)
	if err := os.WriteFile(filepath.Join(dir, "migrate.js"), []byte("setTimeout(() => console.log('migrated'), 10);\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("Dockerfile lines", func(t *testing.T) {
		entry := readmeLine(t, `ENTRYPOINT ["gm2-init", "-i", "max", "--"]`)
		cmd := readmeLine(t, `CMD ["node", "app.js"]`)
		pairs := 0
		src := parseReadme(readmeText(t))
		for i := 1; i < len(src); i++ {
			if src[i-1].text != entry || src[i].text != cmd || src[i].block == 0 || src[i].block != src[i-1].block {
				continue
			}
			pairs++
			var e, c []string
			if json.Unmarshal([]byte(strings.TrimPrefix(entry, "ENTRYPOINT ")), &e) != nil || json.Unmarshal([]byte(strings.TrimPrefix(cmd, "CMD ")), &c) != nil {
				t.Fatalf("README line %d: not exec form", src[i].line)
			}
			if argv := append(e, c...); !slices.Equal(argv, strings.Fields(line)) {
				t.Errorf("README line %d: ENTRYPOINT + CMD run %q, not %q, which this test runs", src[i].line, argv, line)
			}
		}
		if pairs < 2 {
			t.Errorf("%d ENTRYPOINT + CMD blocks in the README (the top and the Node section), want 2", pairs)
		}
	})

	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		for _, cmd := range []string{"kill -HUP 1", "gm2-init reload app", "gm2-init scale app +1", "kill -TTIN 1", "kill -TTOU 1", "gm2-init status"} {
			readmeLine(t, cmd) // before anything starts
		}
		in := startInNetns(t, dir, "exec "+line)
		st, _ := in.WaitLog(nodeTimeout, 0, "starting workers", nil)
		n := st.Int("instances")
		in.WaitReady(n, nodeTimeout)
		instances := func() int {
			t.Helper()
			s := controlStatus(t, in)
			if len(s.Apps) != 1 || s.Apps[0].Name != "app" {
				t.Fatalf("apps %+v, want one named app", s.Apps)
			}
			return s.Apps[0].Instances
		}
		if body := nsGet(t, in.Pid, "http://127.0.0.1:3000/"); !controlStatus(t, in).pids("app")[atoi(body)] {
			t.Fatalf("GET :3000 answered %q, not a worker's pid", body)
		}
		run := func(cmd, wantOut string) {
			t.Helper()
			code, stdout, stderr := nsShell(t, in.Pid, dir, readmeLine(t, cmd))
			if code != 0 || (wantOut != "" && stdout != wantOut) {
				t.Fatalf("%s: exit status %d, %q %q; want 0 and %q", cmd, code, stdout, stderr, wantOut)
			}
		}
		reloaded := func(cmd string, from int) {
			t.Helper()
			l, _ := in.WaitLog(nodeTimeout, from, "reload finished", nil)
			if l.Str("result") != "ok" || l.Int("replaced") != n {
				t.Fatalf("%s: %v", cmd, l)
			}
		}

		pos := len(in.Lines())
		run("kill -HUP 1", "")
		reloaded("kill -HUP 1", pos)

		pos = len(in.Lines())
		run("gm2-init reload app", "reloaded app\n")
		reloaded("gm2-init reload app", pos)

		pos = len(in.Lines())
		run("gm2-init scale app +1", fmt.Sprintf("app: %d instances (was %d)\n", n+1, n))
		in.WaitLog(nodeTimeout, pos, "worker ready", nil)
		if got := instances(); got != n+1 {
			t.Fatalf("after gm2-init scale app +1: %d instances, want %d", got, n+1)
		}

		pos = len(in.Lines())
		run("kill -TTIN 1", "")
		in.WaitLog(nodeTimeout, pos, "worker ready", nil)
		if got := instances(); got != n+2 {
			t.Fatalf("after kill -TTIN 1: %d instances, want %d", got, n+2)
		}

		// Reloads stop their old workers before "reload finished", so the
		// stop after this pos is the scale-down's.
		pos = len(in.Lines())
		run("kill -TTOU 1", "")
		stop, _ := in.WaitLog(nodeTimeout, pos, "stopping worker", nil)
		in.WaitLog(nodeTimeout, pos, "worker exited", func(l logLine) bool { return l.Int("pid") == stop.Int("pid") })
		if got := instances(); got != n+1 {
			t.Fatalf("after kill -TTOU 1: %d instances, want %d", got, n+1)
		}

		code, stdout, stderr := nsShell(t, in.Pid, dir, readmeLine(t, "gm2-init status"))
		rows := strings.Split(strings.TrimSpace(stdout), "\n")
		if code != 0 || !strings.HasPrefix(rows[0], "APP ") {
			t.Fatalf("gm2-init status: %d %q %q", code, stdout, stderr)
		}
		ready := map[string]bool{}
		for _, r := range rows[1:] {
			if f := strings.Fields(r); len(f) >= 4 && f[0] == "app" && f[3] == "ready" {
				ready[f[1]] = true
			}
		}
		if len(ready) != n+1 {
			t.Errorf("gm2-init status shows %d ready instances, want %d:\n%s", len(ready), n+1, stdout)
		}

		in.Signal(syscall.SIGTERM)
		if code := in.Wait(nodeTimeout); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
	})

	// A one-shot script ends by itself: the preload's channel does not
	// keep it alive.
	t.Run("one-shot script", func(t *testing.T) {
		t.Parallel()
		in := startInNetns(t, dir, "exec "+readmeLine(t, "gm2-init -- node migrate.js"))
		l, _ := in.WaitLog(nodeTimeout, 0, "worker exited", nil)
		if l.Int("code") != 0 {
			t.Fatalf("node migrate.js: %v, want exit status 0", l)
		}
		in.Signal(syscall.SIGTERM)
		if code := in.Wait(nodeTimeout); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
	})

	// The worker commands the Node sections name: through a shell, and a
	// migration before the app.
	for _, worker := range []string{"sh -c 'node app.js'", "node migrate.js && exec node app.js"} {
		t.Run(worker, func(t *testing.T) {
			t.Parallel()
			cmd := readmeLine(t, worker)
			if !strings.HasPrefix(cmd, "sh -c ") {
				cmd = "sh -c '" + cmd + "'"
			}
			in := startInNetns(t, dir, "exec gm2-init -i max -- "+cmd)
			st, _ := in.WaitLog(nodeTimeout, 0, "starting workers", nil)
			in.WaitReady(st.Int("instances"), nodeTimeout)
			if body := nsGet(t, in.Pid, "http://127.0.0.1:3000/"); atoi(body) <= 0 {
				t.Fatalf("GET :3000 answered %q, want the pid of the node serving it", body)
			}
			in.Signal(syscall.SIGTERM)
			if code := in.Wait(nodeTimeout); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
		})
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1
	}
	return n
}

// TestReadmeEcosystemEntrypoint runs the process-file image's ENTRYPOINT
// (the argv it decodes to is the PM2 table's gm2-init --config
// ecosystem.config.js) in examples/ecosystem, unchanged: its API on :3000
// and its queue worker.
func TestReadmeEcosystemEntrypoint(t *testing.T) {
	t.Parallel()
	needNode(t)
	entry := readmeLine(t, `ENTRYPOINT ["gm2-init","--config","ecosystem.config.js"]`)
	line := readmeLine(t, "gm2-init --config ecosystem.config.js")
	var argv []string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(entry, "ENTRYPOINT ")), &argv); err != nil {
		t.Fatalf("%s: %v", entry, err)
	}
	if !slices.Equal(argv, strings.Fields(line)) {
		t.Fatalf("the ENTRYPOINT runs %q, the PM2 table %q: one of them changed", argv, line)
	}
	dir := t.TempDir()
	src := repoPath(t, "examples/ecosystem")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dir, e.Name()))
	}
	in := startInNetns(t, dir, "exec "+line)
	for _, app := range []string{"api", "worker"} {
		in.WaitLog(nodeTimeout, 0, "worker ready", func(l logLine) bool { return l.Str("app") == app })
	}
	var a apiAnswer
	if body := nsGet(t, in.Pid, "http://127.0.0.1:3000/"); json.Unmarshal([]byte(body), &a) != nil || a.App != "api" || a.Env != "development" {
		t.Fatalf("GET :3000: %q, want the api app in development", body)
	}
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(nodeTimeout); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// TestReadmeNoInheritedDescriptor runs the README's proof that no inherited
// descriptor reaches a worker: the shell opens fd 7, gm2-init closes it
// (and logs so), and the worker's ls shows fds 0-2, its readiness channels
// and its own directory, no fd 7 and no file.
func TestReadmeNoInheritedDescriptor(t *testing.T) {
	t.Parallel()
	line := readmeLine(t, "exec 7</etc/hostname; gm2-init --restart never -- sh -c 'ls -l /proc/self/fd'")
	in := startInNetns(t, t.TempDir(), line) // sh stays PID 1, gm2-init is its child
	closed, _ := in.WaitLog(readmeStepTimeout, 0, anyMessage, func(l logLine) bool {
		return strings.HasPrefix(l.Msg(), "closed descriptors inherited")
	})
	if fds, _ := closed["fds"].([]any); !slices.Contains(fds, any(float64(7))) {
		t.Fatalf("gm2-init did not close fd 7: %v", closed)
	}
	l, _ := in.WaitLog(readmeStepTimeout, 0, "worker exited", nil)
	if l.Int("code") != 0 {
		t.Fatalf("ls -l /proc/self/fd: %v", l)
	}
	// --restart never: the listing ends gm2-init, with its status.
	if code := in.Wait(readmeStepTimeout); code != 0 {
		t.Errorf("exit status %d, want 0 (the listing's)", code)
	}
	// The first listing.
	var fds []string
	for i, row := range strings.Split(in.stdout.String(), "\n") {
		if strings.HasPrefix(row, "total") && i > 0 {
			break
		}
		f := strings.Fields(row)
		if j := slices.Index(f, "->"); j > 0 {
			fds = append(fds, f[j-1])
			// Above 2: the readiness channels (a pipe, a socket) and ls's
			// own directory, never a file.
			if n := atoi(f[j-1]); n > 2 && !strings.HasPrefix(f[j+1], "/proc/") && !strings.HasPrefix(f[j+1], "pipe:") && !strings.HasPrefix(f[j+1], "socket:") {
				t.Errorf("the worker has fd %d: %s", n, row)
			}
		}
	}
	if !slices.Contains(fds, "0") || !slices.Contains(fds, "2") || slices.Contains(fds, "7") {
		t.Errorf("the worker's descriptors: %v (want 0-2, no 7); output:\n%s", fds, in.stdout.String())
	}
}

// TestReadmeGoInstall runs the README's install command. It needs a module
// proxy that has gm2-init: this tree is served as its latest version
// (v0.0.1) by a proxy of files, and the dependencies come from the module
// cache's download directory (the tests' own build fetched them), so no
// network is used and nothing is written to the real module cache.
func TestReadmeGoInstall(t *testing.T) {
	t.Parallel()
	line := readmeLine(t, "CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' -gcflags=all=-l github.com/gm2-init/gm2-init@latest")
	goBin := testtool.Require(t, "go", "the Go toolchain")
	const module, version = "github.com/gm2-init/gm2-init", "v0.0.1"
	if b, err := os.ReadFile(filepath.Join("..", "go.mod")); err != nil || !strings.HasPrefix(string(b), "module "+module+"\n") {
		t.Fatalf("go.mod does not declare module %s: the README's install command would not find it", module)
	}
	modcache, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy")
	at := filepath.Join(proxy, module, "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	zf, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(zf)
	err = walkSource(func(rel string, _ fs.FileMode) error {
		w, err := zw.Create(module + "@" + version + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join("..", rel))
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}, true)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = zf.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `","Time":"2026-01-01T00:00:00Z"}`),
		version + ".mod":  gomod,
	} {
		if err := os.WriteFile(filepath.Join(at, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	gobin := filepath.Join(tmp, "bin")
	ctx, cancel := context.WithTimeout(context.Background(), readmeStepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(),
		"GOPROXY=file://"+proxy+",file://"+filepath.Join(strings.TrimSpace(string(modcache)), "cache", "download"),
		"GOMODCACHE="+filepath.Join(tmp, "modcache"), "GOFLAGS=-modcacherw", "GOSUMDB=off",
		"GONOPROXY=", "GOPRIVATE=", "GOWORK=off", "GOTOOLCHAIN=local", "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	bin := filepath.Join(gobin, "gm2-init")
	checkStaticStripped(t, bin)
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "gm2-init ") {
		t.Errorf("the installed gm2-init --version: %v %q", err, out)
	}
}

// checkStaticStripped fails unless bin is a static ELF executable (no
// program interpreter, no dynamic section) without a symbol table.
func checkStaticStripped(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is not static: it has %v", bin, p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s is not stripped: it has .symtab", bin)
	}
}

// TestReadmeDesignNotesCommands runs the commands the design notes quote:
// the size measurement's build (in a copy: it writes ./gm2-init), the
// dependency listing that names what envconfig brings, the refusal of
// --wait-ready true, and the supervisor's test commands.
func TestReadmeDesignNotesCommands(t *testing.T) {
	t.Parallel()
	testtool.Require(t, "go", "the Go toolchain")
	run := func(t *testing.T, dir, line string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), readmeStepTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", line)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return string(out)
	}

	t.Run("build", func(t *testing.T) {
		t.Parallel()
		dir := copyTree(t)
		run(t, dir, readmeLine(t, "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -gcflags=all=-l"))
		bin := filepath.Join(dir, "gm2-init")
		checkStaticStripped(t, bin)
		if st, err := os.Stat(bin); err != nil || st.Size() > maxBinaryBytes {
			t.Errorf("./gm2-init: %v, size over the budget of %d bytes", err, maxBinaryBytes)
		}
	})

	t.Run("deps", func(t *testing.T) {
		t.Parallel()
		deps := strings.Fields(run(t, "..", readmeLine(t, "go list -deps")))
		// envconfig is read, and at the release that brings none of what
		// its later ones load at start (the design notes).
		if !slices.Contains(deps, "github.com/kelseyhightower/envconfig") {
			t.Errorf("go list -deps does not name envconfig, which the design notes say gm2-init reads the variables with")
		}
		for _, p := range []string{"regexp", "regexp/syntax", "text/template", "text/tabwriter", "net/url"} {
			if slices.Contains(deps, p) {
				t.Errorf("go list -deps names %s, which the design notes say pinning envconfig at v1.2.0 left out", p)
			}
		}
	})

	t.Run("switch", func(t *testing.T) {
		t.Parallel()
		line := readmeLine(t, "gm2-init --wait-ready true")
		in := startInNetns(t, t.TempDir(), "exec "+line)
		if code := in.Wait(readmeStepTimeout); code != 2 {
			t.Errorf("%s: exit status %d, want 2", line, code)
		}
		errs := strings.TrimSuffix(in.rawLog(), "\n")
		if strings.Contains(errs, "\n") || !strings.Contains(errs, "--wait-ready=true") || !strings.Contains(errs, "goes after --") {
			t.Errorf("%s: stderr %q, want one line with both ways to write it", line, errs)
		}
	})

	t.Run("spawn", func(t *testing.T) {
		t.Parallel()
		for _, line := range []string{"go test -short ./internal/spawn", "go test -short -cover ./internal/spawn", "go test -cover ./internal/spawn", "go test -run '^$' -fuzz FuzzInterleavings -fuzztime 5000x ./internal/spawn",
			"go test -run '^$' -fuzz FuzzYAMLMatchesLibrary -fuzztime 20000x ./internal/procfile"} {
			out := run(t, "..", readmeLine(t, line))
			if !strings.Contains("\n"+out, "\nok ") { // after the fuzzer's progress lines
				t.Errorf("%s: %q", line, out)
			}
			if strings.Contains(line, "-cover") && !strings.Contains(out, "% of statements") {
				t.Errorf("%s: no coverage in %q", line, out)
			}
			t.Logf("%s: %s", line, strings.TrimSpace(out))
		}
	})
}

// TestReadmeBenchCommand runs the README's benchmark line in a copy of the
// repository (it writes bench/results/), whose bench/.tools is the real
// one (gitignored: pm2 is installed there once). The line keeps
// BENCHMARKS.md as it is and runs benchmark 6, whose report must show
// every worker count with a reload that ended ok.
func TestReadmeBenchCommand(t *testing.T) {
	t.Parallel()
	line := readmeLine(t, "bench/run --quick --only scale --md -")
	for _, tool := range []struct{ name, hint string }{
		{"go", "the Go toolchain"}, {"cc", "Debian package gcc"}, {"tini-static", "Debian package tini"},
		{"dumb-init", "Debian package dumb-init"}, {"wrk", "Debian package wrk"}, {"hey", "Debian package hey"},
		{"node", "Debian package nodejs"}, {"npm", "Debian package npm"}, {"unshare", "Debian package util-linux"},
	} {
		testtool.Require(t, tool.name, tool.hint)
	}
	dir := copyTree(t)
	tools, err := filepath.Abs(filepath.Join("..", "bench", ".tools"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tools, filepath.Join(dir, "bench", ".tools")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * readmeStepTimeout):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the process group it started in
		<-done
		t.Fatalf("%s: still running after %v\n%s", line, 2*readmeStepTimeout, out.String())
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out.String())
	}
	summaries, _ := filepath.Glob(filepath.Join(dir, "bench", "results", "*-quick", "summary.json"))
	if len(summaries) != 1 {
		t.Fatalf("%s wrote %v, want one bench/results/*-quick/summary.json\n%s", line, summaries, out.String())
	}
	b, err := os.ReadFile(summaries[0])
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Scale *struct {
			Runs []struct {
				N            int    `json:"n"`
				ReloadResult string `json:"reload_result"`
			} `json:"runs"`
		} `json:"scale"`
	}
	if err := json.Unmarshal(b, &sum); err != nil || sum.Scale == nil {
		t.Fatalf("summary.json: %v\n%s", err, b)
	}
	var ns []int
	for _, r := range sum.Scale.Runs {
		ns = append(ns, r.N)
		if r.ReloadResult != "ok" {
			t.Errorf("benchmark 6 with %d workers: reload %q", r.N, r.ReloadResult)
		}
	}
	if !slices.Equal(ns, []int{1, 8, 64}) {
		t.Errorf("benchmark 6 ran %v workers, want 1, 8 and 64", ns)
	}
	orig, err := os.ReadFile(filepath.Join("..", "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if now, err := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md")); err != nil || !bytes.Equal(now, orig) {
		t.Errorf("%s changed BENCHMARKS.md (--md - must leave it as it is): %v", line, err)
	}
}
