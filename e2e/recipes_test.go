package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/httpload"
)

// recipe is one row of the README's "Recipes per server" table.
type recipe struct {
	server  string   // first column, for messages
	command []string // the command, split as a shell would split it
	flags   []string // the gm2-init flags the row asks for
	line    string   // the command as written
}

// recipeSetup is what the test needs around a README row: where the app
// lives, what must be installed, and how the load may talk to it.
type recipeSetup struct {
	dir   string   // repository-relative working directory
	tools []string // programs that must be on PATH
	check []string // a command that must succeed (a library the server needs)
	pkgs  string   // the Debian packages that bring them (scripts/test.sh installs them)
	// knownLoss, when set, says why the server itself fails a few requests
	// during a reload (the README says so too). The test then accepts
	// failures of that kind only — a connection closed or reset — and still
	// fails on any other (a timeout, a 5xx).
	knownLoss string
	// portEnv: the app listens on $PORT (the Node preload redirects it to
	// the passed socket), so gm2-init listens on a fixed free port and the
	// app gets PORT set to it.
	portEnv bool
}

// recipeSetups is keyed by the README's command column, exactly. A README
// row without a setup fails the test, and so does a setup without a row.
var recipeSetups = map[string]recipeSetup{
	"gunicorn --preload app:app": {
		dir: "e2e/testdata/recipes/wsgi", tools: []string{"gunicorn"}, pkgs: "gunicorn python3-gunicorn",
	},
	"uvicorn --fd 3 app:app": {
		dir: "e2e/testdata/recipes/asgi", tools: []string{"uvicorn"}, pkgs: "uvicorn python3-uvicorn",
		knownLoss: "uvicorn 0.17's graceful shutdown closes the connections it accepted but has not read a request from yet",
	},
	"puma --bind-to-activated-sockets=only config.ru": {
		dir: "e2e/testdata/recipes/rack", tools: []string{"puma", "ruby"},
		check: []string{"ruby", "-rsd_notify", "-e", ""}, pkgs: "puma ruby-sd-notify",
	},
	"python3 server.py": {
		dir: "e2e/testdata/recipes/python", tools: []string{"python3"}, pkgs: "python3",
	},
	"goapp": {
		dir: "examples/goapp", // built by TestMain, put on PATH below
	},
	"node http-server.js": {
		dir: "examples/node", tools: []string{"node"}, pkgs: "nodejs", portEnv: true,
	},
	"node fd3-server.js": {
		dir: "e2e/testdata/recipes/node", tools: []string{"node"}, pkgs: "nodejs",
	},
	"sh -c 'exec gunicorn --preload app:app'": {
		dir: "e2e/testdata/recipes/wsgi", tools: []string{"sh", "gunicorn"}, pkgs: "gunicorn python3-gunicorn",
	},
}

// requireTool skips the test when a program it needs is missing, and fails
// it under CI=true, where scripts/test.sh must have installed it.
func requireTool(t *testing.T, name, pkgs string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (Debian: %s); scripts/test.sh installs it", name, pkgs)
	}
	t.Skipf("%s is not installed (Debian: %s)", name, pkgs)
}

// TestRecipes runs every row of the README's recipe table exactly as
// written, with the real server, as two workers under gm2-init as PID 1:
// both workers answer, a SIGHUP reload under load fails no request and
// replaces both, the new workers answer, and SIGTERM ends everything with
// exit status 0 (the harness also checks that every stopped worker exited
// cleanly).
func TestRecipes(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	recipes, err := parseRecipes(string(readme))
	if err != nil {
		t.Fatalf("README: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range recipes {
		seen[r.line] = true
		if _, ok := recipeSetups[r.line]; !ok {
			t.Errorf("README recipe %q (%s) has no setup in recipeSetups: add one, so that it is tested", r.line, r.server)
		}
	}
	for line := range recipeSetups {
		if !seen[line] {
			t.Errorf("recipeSetups has %q, which is no longer a README recipe", line)
		}
	}
	for _, r := range recipes {
		setup, ok := recipeSetups[r.line]
		if !ok {
			continue
		}
		t.Run(r.server, func(t *testing.T) {
			t.Parallel()
			runRecipe(t, r, setup)
		})
	}
}

// closedUnanswered reports whether a load error is a connection the server
// closed without answering. Go's client names that three ways: "EOF" or
// "connection reset by peer" when the request was on its way, and "server
// closed idle connection" when the close reached the client first.
func closedUnanswered(e string) bool {
	for _, s := range []string{": EOF", "connection reset by peer", "server closed idle connection"} {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

func runRecipe(t *testing.T, r recipe, setup recipeSetup) {
	for _, tool := range setup.tools {
		requireTool(t, tool, setup.pkgs)
	}
	if len(setup.check) > 0 {
		if out, err := exec.Command(setup.check[0], setup.check[1:]...).CombinedOutput(); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%q failed (Debian: %s): %v\n%s", setup.check, setup.pkgs, err, out)
			}
			t.Skipf("%q failed (Debian: %s): %v", setup.check, setup.pkgs, err)
		}
	}
	env := []string{"PATH=" + filepath.Dir(bins.goapp) + string(os.PathListSeparator) + os.Getenv("PATH")}
	args := baseArgs("-i", "2")
	if setup.portEnv {
		port := strconv.Itoa(freePort(t))
		env = append(env, "PORT="+port)
		args = []string{"--health-addr", "127.0.0.1:0", "--listen", "127.0.0.1:" + port, "-i", "2"}
	}
	args = append(args, r.flags...)
	args = append(append(args, "--"), r.command...)
	in := startInitIn(t, repoPath(t, setup.dir), env, args...)
	addr := in.Addr("")
	in.WaitReady(2, 30*time.Second)

	first := startedPids(in.Lines())
	bothServe(t, addr, first)
	readyInTime(t, in)

	ld := httpload.Start(addr, httpload.Options{Clients: 6, Limit: 2 * time.Minute})
	if !ld.WaitRequests(20, 20*time.Second) {
		ok, failed, errs := ld.Stop().Sums()
		t.Fatalf("the load gets no answers (%d ok, %d failed: %v)", ok, failed, errs)
	}
	l, _ := in.reload(0)
	if l.Str("result") != "ok" || l.Int("replaced") != 2 {
		ld.Stop()
		t.Fatalf("reload: %v", l)
	}
	if !ld.WaitRequests(20, 20*time.Second) {
		ld.Stop()
		t.Fatal("no traffic after the reload")
	}
	ok, failed, errs := ld.Stop().Sums()
	t.Logf("%s: %d requests during the reload, %d failed", r.line, ok, failed)
	switch {
	case failed == 0:
	case setup.knownLoss == "":
		t.Errorf("%d requests failed during the reload: %v", failed, errs)
	default:
		t.Logf("%d requests failed during the reload, as the README says: %s", failed, setup.knownLoss)
		for _, e := range errs {
			if !closedUnanswered(e) {
				t.Errorf("a failure that is not the known one (%s): %s", setup.knownLoss, e)
			}
		}
	}

	var second []int
	for _, p := range startedPids(in.Lines()) {
		if !slices.Contains(first, p) {
			second = append(second, p)
		}
	}
	if len(second) != 2 {
		t.Fatalf("workers after the reload %v (before %v): want 2 new ones", second, first)
	}
	// Each old worker stopped once its replacement was ready (the other
	// slot and the socket's queue would hide a slot stopped first).
	checkStoppedAfterReplacementReady(t, in.Lines(), 2)
	bothServe(t, addr, second)
	readyInTime(t, in)

	in.Signal(syscall.SIGTERM)
	if code := in.Wait(20 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
}

// readyInTime fails when a worker became ready only because
// --listen-timeout passed: the recipe's readiness does not work as the
// README says.
func readyInTime(t *testing.T, in *Init) {
	t.Helper()
	for _, l := range in.Lines() {
		if l.Msg() == "worker ready" && l.Str("by") == "listen-timeout" {
			t.Errorf("worker %d became ready only at --listen-timeout: %v", l.Int("pid"), l)
		}
	}
}

// startedPids lists the pids of the "worker started" lines, in order.
func startedPids(lines []logLine) []int {
	var pids []int
	for _, l := range lines {
		if l.Msg() == "worker started" {
			pids = append(pids, l.Int("pid"))
		}
	}
	return pids
}

// answerPids reads the pids an answer names: "pid P ppid Q" from the
// recipe apps, "hello from worker N pid P" from goapp, a bare pid from
// examples/node. Pids are as seen inside gm2-init's namespace, as in its log.
var answerPid = regexp.MustCompile(`(?:^|\s)(?:pp|p)id (\d+)`)

func answerPids(body string) []int {
	body = strings.TrimSpace(body)
	if n, err := strconv.Atoi(body); err == nil {
		return []int{n}
	}
	var out []int
	for _, m := range answerPid.FindAllStringSubmatch(body, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// bothServe makes requests on new connections until each of the workers
// has answered (itself, or a process it started: gunicorn's worker names
// its master as ppid), for at most 20 s: a worker made ready by
// --min-uptime may still be loading its code.
func bothServe(t *testing.T, addr string, workers []int) {
	t.Helper()
	served := map[int]bool{}
	var bodies []string
	deadline := time.Now().Add(20 * time.Second)
	for len(served) < len(workers) && time.Now().Before(deadline) {
		code, body, err := httpGet(addr, "/")
		if err != nil || code != 200 {
			t.Fatalf("GET /: %d %v %q", code, err, body)
		}
		if len(bodies) < 5 {
			bodies = append(bodies, body)
		}
		for _, p := range answerPids(body) {
			if slices.Contains(workers, p) {
				served[p] = true
				break
			}
		}
	}
	if len(served) < len(workers) {
		t.Fatalf("only workers %v of %v answered in 20 s (answers like %q)", served, workers, bodies)
	}
}

// parseRecipes reads the rows of the README's recipe table: the table whose
// header is "| Server | Command | gm2-init flags | Ready when |".
func parseRecipes(readme string) ([]recipe, error) {
	const header = "| Server | Command | gm2-init flags | Ready when |"
	i := strings.Index(readme, header)
	if i < 0 {
		return nil, fmt.Errorf("no recipe table (header %q)", header)
	}
	var out []recipe
	rows := strings.Split(readme[i:], "\n")
	for n, row := range rows[1:] {
		if !strings.HasPrefix(row, "|") {
			break
		}
		if n == 0 {
			continue // |---|---|
		}
		cells := strings.Split(strings.Trim(row, "|"), "|")
		if len(cells) != 4 {
			return nil, fmt.Errorf("recipe row %q: %d cells, want 4", row, len(cells))
		}
		cmd := codeSpans(cells[1])
		if len(cmd) != 1 {
			return nil, fmt.Errorf("recipe row %q: the command must be one `code` span", row)
		}
		words, err := splitWords(cmd[0])
		if err != nil {
			return nil, fmt.Errorf("recipe row %q: %w", row, err)
		}
		var flags []string
		for _, span := range codeSpans(cells[2]) {
			f, err := splitWords(span)
			if err != nil {
				return nil, fmt.Errorf("recipe row %q: flags: %w", row, err)
			}
			flags = append(flags, f...)
		}
		out = append(out, recipe{server: strings.TrimSpace(cells[0]), command: words, flags: flags, line: cmd[0]})
	}
	if len(out) == 0 {
		return nil, errors.New("the recipe table has no rows")
	}
	return out, nil
}

// codeSpans returns the `code` spans of a table cell.
func codeSpans(cell string) []string {
	parts := strings.Split(cell, "`")
	var out []string
	for i := 1; i < len(parts); i += 2 {
		out = append(out, parts[i])
	}
	return out
}

// splitWords splits a command line as sh would for the plain forms the
// README uses: words separated by blanks, and 'single-quoted' text. Any
// other shell syntax is refused, so that the test never guesses.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, c := range s {
		switch {
		case quoted:
			if c == '\'' {
				quoted = false
			} else {
				cur.WriteRune(c)
			}
		case c == '\'':
			quoted, inWord = true, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("\"\\$`;&|<>(){}*?[]~#\n", c):
			return nil, fmt.Errorf("%q: %q is shell syntax the test does not interpret", s, c)
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("%q: unterminated quote", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%q: no command", s)
	}
	return words, nil
}

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "gunicorn app:app", want: []string{"gunicorn", "app:app"}},
		{in: "  uvicorn   --fd 3 app:app ", want: []string{"uvicorn", "--fd", "3", "app:app"}},
		{in: "sh -c 'exec gunicorn app:app'", want: []string{"sh", "-c", "exec gunicorn app:app"}},
		{in: "a'b c'd", want: []string{"ab cd"}},
		{in: "''", want: []string{""}},
		{in: "--wait-ready", want: []string{"--wait-ready"}},
		{in: "", err: true},
		{in: "   ", err: true},
		{in: "sh -c 'exec x", err: true},
		{in: `sh -c "exec x"`, err: true},
		{in: "echo $HOME", err: true},
		{in: "a; b", err: true},
		{in: "a | b", err: true},
		{in: `a\ b`, err: true},
	} {
		got, err := splitWords(tc.in)
		if (err != nil) != tc.err || (!tc.err && !slices.Equal(got, tc.want)) {
			t.Errorf("splitWords(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseRecipes(t *testing.T) {
	const table = "x\n| Server | Command | gm2-init flags | Ready when |\n|---|---|---|---|\n" +
		"| gunicorn | `gunicorn app:app` | `--wait-ready` | READY=1 |\n" +
		"| uvicorn | `uvicorn --fd 3 app:app` | none | min-uptime |\n\nafter\n| not | a | row | |\n"
	got, err := parseRecipes(table)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].line != "gunicorn app:app" || !slices.Equal(got[0].flags, []string{"--wait-ready"}) ||
		!slices.Equal(got[1].command, []string{"uvicorn", "--fd", "3", "app:app"}) || len(got[1].flags) != 0 {
		t.Errorf("parseRecipes = %+v", got)
	}
	for _, bad := range []string{
		"no table",
		"| Server | Command | gm2-init flags | Ready when |\n|---|---|---|---|\n",
		"| Server | Command | gm2-init flags | Ready when |\n|---|---|---|---|\n| a | no code | | |\n",
		"| Server | Command | gm2-init flags | Ready when |\n|---|---|---|---|\n| a | `x` |\n",
		"| Server | Command | gm2-init flags | Ready when |\n|---|---|---|---|\n| a | `x $Y` | | |\n",
	} {
		if _, err := parseRecipes(bad); err == nil {
			t.Errorf("parseRecipes(%q): no error", bad)
		}
	}
}

// TestGunicornBrokenReloadKeepsOldWorkers: the README's gunicorn recipe
// with a new version that fails to import. With --preload, gunicorn's
// master imports the app before it sends READY=1, so the replacement dies
// unready, the reload fails, and the old workers keep serving. (Without
// --preload the master said READY=1 at once, the reload passed, and every
// request failed once the old workers were gone.)
func TestGunicornBrokenReloadKeepsOldWorkers(t *testing.T) {
	t.Parallel()
	requireTool(t, "gunicorn", "gunicorn python3-gunicorn")
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "recipes", "wsgi", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "app.py")
	if err := os.WriteFile(app, src, 0o644); err != nil {
		t.Fatal(err)
	}
	in := startInitIn(t, dir, nil, "--health-addr", "off", "--listen", "127.0.0.1:0", "-i", "2", "--max-restarts", "1",
		"--wait-ready", "--", "gunicorn", "--preload", "app:app")
	addr := in.Addr("")
	in.WaitReady(2, 30*time.Second)
	before := workerPids(in)
	if err := os.WriteFile(app, append(src, "raise RuntimeError('new version is broken')\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	l, _ := in.reload(0)
	if !strings.HasPrefix(l.Str("result"), "failed") {
		t.Errorf("reload of a version that cannot import: %q, want failed", l.Str("result"))
	}
	for range 10 {
		code, body, err := httpGet(addr, "/")
		if err != nil || code != 200 {
			t.Fatalf("after the failed reload: %d %q %v", code, body, err)
		}
		var pid, ppid int
		_, err = fmt.Sscanf(body, "pid %d ppid %d", &pid, &ppid)
		if _, old := before[ppid]; err != nil || !old {
			t.Errorf("answered by %q: want a worker of gunicorn %v, from before the reload", body, before)
		}
	}
	in.AllowUncleanStops()
}
