// The project's rule: every command the README shows is run by a test,
// exactly as written. This file holds the list of those commands with the
// test that runs each (TestReadmeCommandsHaveTests keeps it equal to the
// README), and the tests of the commands no other test ran.

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeSnippet is one command-like text of the README: a line of a code
// block (its trailing "# comment" cut), or an inline `code` span that
// starts like a command line (see isCommandSpan).
type readmeSnippet struct {
	text    string
	line    int    // 1-based line in README.md
	block   int    // index of its code block (0 for inline spans, blocks count from 1)
	section string // the heading above it
}

// readmeText returns README.md.
func readmeText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// commandPrograms are the programs whose inline `code` spans are command
// lines (with at least one argument): a span such as `npm start` or
// `kill -HUP 1`. Add a program here when the README starts to show it.
var commandPrograms = []string{
	"apt-get", "bash", "curl", "docker", "dumb-init", "exec", "gm2-init", "go", "gunicorn", "helm",
	"kill", "kubectl", "node", "npm", "npx", "nsenter", "pm2", "pm2-runtime", "podman", "puma",
	"python", "python3", "ruby", "setpriv", "sh", "ss", "systemctl", "systemd-analyze",
	"systemd-run", "systemd-socket-activate", "taskset", "tini", "unshare", "uvicorn", "wget", "yarn",
	// Dockerfile instructions: lines of a Dockerfile shown inline.
	"CMD", "COPY", "ENTRYPOINT", "FROM", "HEALTHCHECK", "RUN",
}

var envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=\S*$`)

// isCommandSpan tells whether an inline span is a command line: a program
// of commandPrograms with arguments (after VAR=value assignments), or a
// script of the repository (`scripts/demo.sh`, `bench/run`), with or
// without arguments.
func isCommandSpan(span string) bool {
	words := strings.Fields(span)
	for len(words) > 1 && envAssignment.MatchString(words[0]) {
		words = words[1:]
	}
	if len(words) == 0 {
		return false
	}
	if isRepoScript(words[0]) {
		return true
	}
	return len(words) > 1 && slices.Contains(commandPrograms, words[0])
}

// isRepoScript tells whether word is the relative path of an executable
// file of the repository.
func isRepoScript(word string) bool {
	if !strings.Contains(word, "/") || strings.HasPrefix(word, "/") || strings.HasSuffix(word, "/") {
		return false
	}
	st, err := os.Stat(filepath.Join("..", strings.TrimPrefix(word, "./")))
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

var inlineCode = regexp.MustCompile("`([^`]+)`")

// parseReadme returns every code-block line and every command-like inline
// span of a Markdown text, in order. Code blocks are fenced (```) or
// indented by four spaces after a blank line; an inline span may run over
// a line break (Markdown reads it as a space).
func parseReadme(src string) []readmeSnippet {
	lines := strings.Split(src, "\n")
	var out []readmeSnippet
	prose := make([]string, len(lines)) // the text outside code blocks, line for line
	section := ""
	blocks := 0
	fenced, indented, prevBlank := false, false, true
	for i, l := range lines {
		code := ""
		isCode := false
		switch {
		case strings.HasPrefix(l, "```"):
			if !fenced {
				blocks++
			}
			fenced = !fenced
			prevBlank = false
			continue
		case fenced:
			code, isCode = l, true
		case indented && (strings.HasPrefix(l, "    ") || strings.TrimSpace(l) == ""):
			code, isCode = l, true
		case prevBlank && strings.HasPrefix(l, "    "):
			blocks++
			indented = true
			code, isCode = l, true
		default:
			indented = false
		}
		prevBlank = strings.TrimSpace(l) == ""
		if isCode {
			if text := codeLineCommand(code); text != "" {
				out = append(out, readmeSnippet{text: text, line: i + 1, block: blocks, section: section})
			}
			continue
		}
		if strings.HasPrefix(l, "#") {
			section = strings.TrimSpace(l)
		}
		prose[i] = l
	}
	// Inline spans, over the prose with code blocks blanked (a span may
	// cross a line break; line numbers stay those of the README).
	text := strings.Join(prose, "\n")
	for _, m := range inlineCode.FindAllStringSubmatchIndex(text, -1) {
		span := strings.Join(strings.Fields(text[m[2]:m[3]]), " ")
		span = strings.ReplaceAll(span, `\|`, "|") // a table cell's escaped bar
		if !isCommandSpan(span) {
			continue
		}
		line := strings.Count(text[:m[0]], "\n") + 1
		out = append(out, readmeSnippet{text: span, line: line, section: sectionAt(lines, line)})
	}
	slices.SortStableFunc(out, func(a, b readmeSnippet) int { return a.line - b.line })
	return out
}

// codeLineCommand is a code-block line without its trailing comment (from
// the first " #") and surrounding blanks; "" for a blank or comment line.
func codeLineCommand(l string) string {
	if i := strings.Index(l, " #"); i >= 0 {
		l = l[:i]
	}
	l = strings.TrimSpace(l)
	if strings.HasPrefix(l, "#") {
		return ""
	}
	return l
}

// sectionAt is the last heading at or above line (1-based).
func sectionAt(lines []string, line int) string {
	for i := line - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "#") && (i == 0 || strings.TrimSpace(lines[i-1]) == "") {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

// readmeCommand is one command the README shows (a code-block line or a
// command-like inline span, exactly as parseReadme reads it) and what
// covers it.
type readmeCommand struct {
	text string
	// tests run text exactly as written (TestX, or TestX/subtest). A test
	// of this package that runs it takes it from the README through
	// readmeLine, which checks that this list names that test.
	tests []string
	// file, when set, is a file of the repository that holds text
	// verbatim (a Dockerfile line, what a script runs).
	file string
	// note says how the tests run it (with which operands), or, when no
	// test does, why: what the text is instead of a command to run (a
	// fragment of one, a synopsis, gm2-init's output, another tool's
	// command shown for comparison).
	note string
}

// readmeInventory is every command of the README, in the README's order
// (first occurrence). TestReadmeCommandsHaveTests keeps it equal to the
// README: a command added to the README without a line here fails it.
var readmeInventory = []readmeCommand{
	// The top, Quick start, the tests, install.
	{text: `ENTRYPOINT ["gm2-init", "-i", "max", "--"]`, tests: []string{"TestReadmeNodeCommands", "TestReadOnlyRootNonRootNode", "TestShortestNodeForm"}, file: "Dockerfile.example",
		note: "Dockerfile line: TestReadmeNodeCommands runs the argv that ENTRYPOINT + CMD make; the e2e/container tests build and run Dockerfile.example and the two-line image"},
	{text: `CMD ["node", "app.js"]`, tests: []string{"TestReadmeNodeCommands", "TestShortestNodeForm"}, file: "e2e/container/container_test.go",
		note: "Dockerfile line, with the ENTRYPOINT above"},
	{text: "kill -HUP 1", tests: []string{"TestReadmeNodeCommands"}, note: "run inside gm2-init's PID namespace, as docker/kubectl exec would"},
	{text: "podman kill -s HUP", tests: []string{"TestReloadByPodmanKillUnderLoad"}, note: "with the container's name"},
	{text: "docker kill -s HUP", note: "Docker's spelling of the podman command beside it (TestReloadByPodmanKillUnderLoad); no Docker engine in the tests"},
	{text: "gm2-init -i max -- node app.js", tests: []string{"TestReadmeNodeCommands"}},
	{text: "scripts/demo.sh", tests: []string{"TestReadmeQuickStart"}},
	// Memory.
	{text: "gm2-init -i 2 --max-memory-restart 300M -- node server.js", tests: []string{"TestReadmeMaxMemoryRestartCommand"}},
	{text: "podman run --memory 256m", tests: []string{"TestMemoryLimitLogged"}, file: "e2e/container/memory_test.go",
		note: "with -i 2 --max-memory-restart 200M, as the sentence says"},
	{text: "gm2-init -i max --listen :8080 --wait-ready -- goapp", tests: []string{"TestReadmeQuickStart"},
		note: "what scripts/demo.sh runs (.demo/ paths, console log); the test checks that the demo announces exactly this line"},
	{text: "curl localhost:8080/", tests: []string{"TestReadmeQuickStart"}},
	{text: "curl localhost:9000/status", tests: []string{"TestReadmeQuickStart"}},
	{text: `kill -HUP "$(cat .demo/gm2-init.pid)"`, tests: []string{"TestReadmeQuickStart"}},
	{text: `kill -TTIN "$(cat .demo/gm2-init.pid)"`, tests: []string{"TestReadmeQuickStart"}},
	{text: "scripts/test.sh", file: ".ci/run", note: "CI runs it (.ci/run: exec scripts/test.sh); it is what runs every test"},
	{text: "npm ci", file: "scripts/test.sh", note: "what scripts/test.sh runs in examples/node"},
	{text: "go vet", file: "scripts/test.sh", note: "what scripts/test.sh runs (go vet ./...)"},
	{text: "go test -race ./...", note: "what scripts/test.sh runs (with -count=1 -timeout 20m)"},
	{text: "unshare --pid --fork --mount-proc", note: "how the e2e harness starts gm2-init (namespaceCmd adds --kill-child)"},
	{text: ".ci/run", note: "CI's entry point: it runs scripts/test.sh, which runs every test"},
	{text: "CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' -gcflags=all=-l github.com/gm2-init/gm2-init@latest", tests: []string{"TestReadmeGoInstall"},
		note: "with a module proxy of files holding this tree as the latest version (no network)"},
	{text: "docker stop", note: "Docker's spelling of podman stop (TestPodmanStop); no Docker engine in the tests"},
	{text: "podman stop", tests: []string{"TestPodmanStop"}, note: "podman stop -t 10 with the container's name"},
	{text: "podman stop -t 10", tests: []string{"TestPodmanStop"}, note: "with the container's name"},
	{text: "gm2-init healthcheck", tests: []string{"TestHealthcheck", "TestHealthcheckSubcommand"}, note: "TestHealthcheck: podman healthcheck run runs Dockerfile.example's HEALTHCHECK CMD [\"gm2-init\", \"healthcheck\"]"},

	// Docker and Kubernetes: what e2e/container runs.
	{text: "kill -s HUP", note: "fragment of podman kill -s HUP NAME (TestReloadByPodmanKillUnderLoad)"},
	{text: "FROM scratch", note: "how e2e/container builds its test images (TestMain)"},
	{text: "podman build --format docker", tests: []string{"TestHealthcheck"}, note: "with -f, -t and the context: every image of e2e/container (podmanBuild)"},
	{text: "podman run --init", tests: []string{"TestPodmanStop"}, note: "subtest podman_run_--init"},
	{text: `HEALTHCHECK CMD ["gm2-init", "healthcheck"]`, tests: []string{"TestHealthcheck"}, note: "Dockerfile.example's HEALTHCHECK, shown without its --interval/--timeout options"},
	{text: "podman healthcheck run", tests: []string{"TestHealthcheck"}, note: "with the container's name"},
	{text: "podman run", tests: []string{"TestBadFlagInAContainer"}, note: "fragment: every container test runs podman run"},
	{text: "kubectl apply --validate=strict", tests: []string{"TestManifestsDecodeStrictly"},
		note: "a comparison: examples/kubernetes/check decodes the manifests as strictly as this flag would; no cluster in the tests"},

	// Usage, signals, recipes.
	{text: "gm2-init [flags] -- COMMAND [ARGS...]", note: "synopsis (placeholders); gm2-init --help prints it"},
	{text: "gm2-init --config FILE [flags] [-- COMMAND [ARGS...]]", note: "synopsis (placeholders)"},
	{text: "gm2-init status|ls|list|reload|scale ...", note: "synopsis of the control commands, each run by TestControlReachesItsOwnNamespace"},
	{text: "gm2-init help [COMMAND]", note: "synopsis; TestReadmeCommandNames runs gm2-init help"},
	{text: "gm2-init -- ls", tests: []string{"TestReadmeCommandNames"}},
	{text: "docker run IMAGE -i 4", note: "the mistake the paragraph explains; TestFlagAfterDashes (internal/config) parses its argv after the ENTRYPOINT's, -i max -- -i 4"},
	{text: "docker run -e GM2_INSTANCES=4", note: "fragment: how to set the variable in an image, as the message says (TestFlagAfterDashes)"},
	{text: "docker run --entrypoint", note: "fragment: Docker's flag named by the message (TestFlagAfterDashes)"},
	{text: "gm2-init healthcheck [PATH [ADDR]]", note: "synopsis; TestHealthcheckSubcommand runs each form"},
	{text: "gm2-init scale APP N", note: "template; TestControlReachesItsOwnNamespace runs gm2-init scale api 3"},
	{text: "sh -c", note: "fragment: a wrapper named in prose"},
	{text: "npm start", tests: []string{"TestNodeNpmStart"}, note: "as a worker command (npm --prefix DIR start --silent)"},
	{text: "gunicorn --preload app:app", tests: []string{"TestRecipes"}},
	{text: "uvicorn --fd 3 app:app", tests: []string{"TestRecipes"}},
	{text: "puma --bind-to-activated-sockets=only config.ru", tests: []string{"TestRecipes"}},
	{text: "python3 server.py", tests: []string{"TestRecipes"}},
	{text: "node http-server.js", tests: []string{"TestRecipes"}},
	{text: "node fd3-server.js", tests: []string{"TestRecipes"}},
	{text: "sh -c 'exec gunicorn --preload app:app'", tests: []string{"TestRecipes"}},
	{text: "exec server …", note: "template: what a wrapper must end with"},
	{text: "worker 10 holds none of the sockets gm2-init passed (tcp-8080 0.0.0.0:8080), so it cannot be serving them; it listens on 0.0.0.0:9292 (pid 10) itself; puma: add --bind-to-activated-sockets=only …",
		tests: []string{"TestCheckFakeTrees", "TestPumaWithoutActivatedSocketsIsNotReady"}, note: "gm2-init's warning, shown as output"},
	{text: "sh -c 'gunicorn …; exit $?'", tests: []string{"TestGunicornBehindANonExecWrapper"}, note: "the shape the README warns about, run with gunicorn app:app"},
	{text: "gm2-init reload", tests: []string{"TestControlReachesItsOwnNamespace"}},
	{text: "ss -lnt", note: "names the column of ss that gm2-init reads itself (TCP_INFO); not run"},
	{text: "pm2 monit", note: "PM2's command, for comparison"},
	{text: "shutdown-delay + kill-timeout + 1 s ≤ terminationGracePeriodSeconds", tests: []string{"TestStopBudgetHoldsWithStubbornOrphans"}, note: "a formula, not a command"},
	{text: "(docker stop -t, default 10 s)", note: "part of the formula above"},

	// systemd.
	{text: "systemd-socket-activate -l 127.0.0.1:8080 gm2-init -i 2 -- ./goapp", tests: []string{"TestReadmeSocketActivateCommand"}},
	{text: "systemctl reload", note: "systemd's command on the example units; no systemd runs in the tests: TestReadinessToOwnSupervisor runs what it relies on"},
	{text: "systemctl start", note: "systemd's command on the example units; TestReadinessToOwnSupervisor runs what it relies on (READY=1)"},
	{text: "systemctl status", note: "systemd's command on the example units; TestReadinessToOwnSupervisor runs what it relies on (STATUS=)"},
	{text: "systemd-analyze verify", tests: []string{"TestSystemdUnitFiles"}, note: "with --man=no and the unit files"},

	// Node apps.
	{text: "pm2-runtime start app.js -i max", note: "PM2's command, for comparison"},
	{text: "gm2-init -- node migrate.js", tests: []string{"TestReadmeNodeCommands"}},
	{text: "sh -c 'node app.js'", tests: []string{"TestReadmeNodeCommands"}, note: "as the worker command of gm2-init -i max --"},
	{text: "docker run --read-only", note: "Docker's flag; TestNodeReadOnlyRoot (read-only /, /tmp, /dev/shm) and TestReadOnlyRootNonRootNode (podman run --read-only) run it"},
	{text: "node --version", note: "what gm2-init runs itself at start (every Node test)"},
	{text: "pm2 reload app", note: "PM2's command, for comparison"},
	{text: "kubectl exec … -- kill -HUP 1", note: "template; no cluster in the tests: TestReadmeNodeCommands runs kill -HUP 1 in gm2-init's namespaces, as exec does"},
	{text: "pm2 scale app +1", note: "PM2's command, for comparison"},
	{text: "gm2-init scale app +1", tests: []string{"TestReadmeNodeCommands"}},
	{text: "kill -TTIN 1", tests: []string{"TestReadmeNodeCommands"}},
	{text: "kill -TTOU 1", tests: []string{"TestReadmeNodeCommands"}},
	{text: "pm2 logs", note: "PM2's command, for comparison"},
	{text: "pm2 ls", note: "PM2's command, for comparison"},
	{text: "gm2-init status", tests: []string{"TestReadmeNodeCommands", "TestControlReachesItsOwnNamespace"}},
	{text: "gm2-init reload app", tests: []string{"TestReadmeNodeCommands"}},
	{text: "gm2-init --config ecosystem.config.js", tests: []string{"TestReadmeEcosystemEntrypoint"}},
	{text: "sh -c 'node a.js & node b.js'", note: "the shape the caveat warns against, not a command to run"},
	{text: "node migrate.js && exec node app.js", tests: []string{"TestReadmeNodeCommands"}, note: "as the worker command: sh -c '…'"},

	// Several apps.
	{text: "pm2-runtime ecosystem.config.js", note: "PM2's command, for comparison"},
	{text: `ENTRYPOINT ["gm2-init","--config","ecosystem.config.js"]`, tests: []string{"TestReadmeEcosystemEntrypoint"}, note: "Dockerfile line: the test runs its argv"},
	{text: "pm2 start … --env production", note: "PM2's command, for comparison"},
	{text: `gm2-init: ecosystem.json: app "api": instances: invalid value "abc": accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to 1024)`,
		tests: []string{"TestMultiAppBadFile"}, note: "gm2-init's output (the test's file is bad.json)"},
	{text: `gm2-init: ecosystem.yaml: line 4: mapping values are not allowed in this context (quote a value that holds ": ")`, tests: []string{"TestLoadErrors"}, note: "gm2-init's output"},
	{text: "gm2-init: ecosystem.config.js: line 2: Error: no DATABASE_URL", tests: []string{"TestLoadJSErrors"}, note: "gm2-init's output"},
	{text: `gm2-init: ecosystem.json: apps[1]: script: missing: give the file or command to run (script: "server.js")`, tests: []string{"TestLoadErrors"}, note: "gm2-init's output"},
	{text: "gm2-init reload NAME", note: "template; TestControlReachesItsOwnNamespace runs gm2-init reload api"},
	{text: "bash -c", note: "fragment: how PM2 and gm2-init run a script with blanks"},
	{text: "gm2-init reload APP", note: "template; TestControlReachesItsOwnNamespace runs gm2-init reload api"},

	// Control commands.
	{text: "pm2 reload api", note: "PM2's command, for comparison"},
	{text: "pm2 scale api 3", note: "PM2's command, for comparison"},
	{text: "docker exec", note: "what runs a control command in a container; the tests enter the container's namespaces with nsenter, as exec does"},
	{text: "kubectl exec", note: "what runs a control command in a pod; the tests enter the namespaces with nsenter, as exec does"},
	{text: "gm2-init status --json", tests: []string{"TestControlReachesItsOwnNamespace"}},
	{text: "gm2-init ls", tests: []string{"TestControlReachesItsOwnNamespace"}},
	{text: "gm2-init reload api worker", tests: []string{"TestControlReachesItsOwnNamespace"}},
	{text: "gm2-init reload all", tests: []string{"TestControlReachesItsOwnNamespace"}},
	{text: "gm2-init help", tests: []string{"TestControlReachesItsOwnNamespace", "TestReadmeCommandNames"}},
	{text: "gm2-init reload: api: failed: 1 slot(s) not replaced", tests: []string{"TestSupervisorErrors", "TestReloadWaiterError"},
		note: "gm2-init's output: TestReloadWaiterError (internal/spawn) checks the supervisor's error, TestSupervisorErrors (internal/control) the line"},
	{text: "gm2-init reload api", tests: []string{"TestControlReachesItsOwnNamespace", "TestMultiAppControl"}},
	{text: "gm2-init scale api 3", tests: []string{"TestControlReachesItsOwnNamespace", "TestMultiAppControl"}},
	{text: "gm2-init scale api +1", tests: []string{"TestControlReachesItsOwnNamespace"}},

	// PID 1 duties, benchmarks, design notes, layout.
	{text: "docker run --init", note: "Docker's spelling of podman run --init beside it (TestPodmanStop)"},
	{text: "exec 7<file", note: "fragment: what a wrapper may do"},
	{text: "exec 7</etc/hostname; gm2-init --restart never -- sh -c 'ls -l /proc/self/fd'", tests: []string{"TestReadmeNoInheritedDescriptor"}},
	{text: "bench/run --quick --only scale --md -", tests: []string{"TestReadmeBenchCommand"}},
	{text: "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -gcflags=all=-l", tests: []string{"TestReadmeDesignNotesCommands"}, note: "in a copy of the tree (it writes ./gm2-init)"},
	{text: "go list -deps", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "gm2-init --wait-ready true", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "go test -short ./internal/spawn", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "go test -cover ./internal/spawn", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "go test -short -cover ./internal/spawn", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "go test -run '^$' -fuzz FuzzInterleavings -fuzztime 5000x ./internal/spawn", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "go test -run '^$' -fuzz FuzzYAMLMatchesLibrary -fuzztime 20000x ./internal/procfile", tests: []string{"TestReadmeDesignNotesCommands"}},
	{text: "go tool nm -size", note: "a measuring tool named with its flags; it needs a binary as operand"},
	{text: "gm2-init status|reload|scale", note: "synopsis in the layout table"},
}

// TestReadmeCommandsHaveTests fails when the README shows a command that
// readmeInventory does not list (a new command with no test), when the list
// holds a command the README no longer shows, or when an entry names a test
// or a file that does not exist.
func TestReadmeCommandsHaveTests(t *testing.T) {
	listed := map[string]readmeCommand{}
	for _, c := range readmeInventory {
		if _, dup := listed[c.text]; dup {
			t.Errorf("readmeInventory lists %q twice", c.text)
		}
		listed[c.text] = c
	}
	shown := map[string][]int{}
	var order []string
	for _, s := range parseReadme(readmeText(t)) {
		if _, ok := shown[s.text]; !ok {
			order = append(order, s.text)
		}
		shown[s.text] = append(shown[s.text], s.line)
	}
	for _, text := range order {
		if _, ok := listed[text]; !ok {
			t.Errorf("README.md line %v shows the command %q, which no test is known to run.\n"+
				"\tThe rule: every command the README shows is run by a test exactly as written. Write that test\n"+
				"\t(take the command from the README with readmeLine, as e2e/readme_run_test.go does), then add\n"+
				"\t{text: %q, tests: []string{\"TestYours\"}} to readmeInventory in e2e/readme_test.go.\n"+
				"\tIf it is not a command a reader would type (a fragment, a synopsis, output, another tool's\n"+
				"\tcommand for comparison), add it with a note that says so instead.", shown[text], text, text)
		}
	}
	for _, c := range readmeInventory {
		if _, ok := shown[c.text]; !ok {
			t.Errorf("readmeInventory lists %q, which README.md no longer shows as a command: remove or update the entry", c.text)
		}
		if len(c.tests) == 0 && c.note == "" {
			t.Errorf("%q: no test runs it and no note says why", c.text)
		}
		if c.file != "" {
			b, err := os.ReadFile(filepath.Join("..", c.file))
			if err != nil || !strings.Contains(string(b), c.text) {
				t.Errorf("%q: %s does not hold it (%v)", c.text, c.file, err)
			}
		}
	}
	declared := declaredTests(t)
	for _, c := range readmeInventory {
		for _, name := range c.tests {
			top, _, _ := strings.Cut(name, "/")
			if !declared[top] {
				t.Errorf("%q: readmeInventory names %s, which no _test.go file of the repository declares", c.text, top)
			}
		}
	}
}

// declaredTests lists the test functions declared in the repository's
// _test.go files (modules of examples included).
func declaredTests(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	out := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readmeLine returns text, a command of the README, for the calling test to
// run exactly as written. It fails when the README does not show text as a
// command, or when readmeInventory does not name the calling test for it:
// the README, the list and the test cannot drift apart.
func readmeLine(t *testing.T, text string) string {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	named := false
	for _, c := range readmeInventory {
		if c.text == text {
			named = slices.Contains(c.tests, top)
		}
	}
	if !named {
		t.Fatalf("readmeInventory does not name %s for %q", top, text)
	}
	for _, s := range parseReadme(readmeText(t)) {
		if s.text == text {
			return text
		}
	}
	t.Fatalf("README.md does not show %q any more: update %s with the README's new command", text, top)
	return ""
}

// readmeBlock returns the lines of the n-th code block (from 1) of the
// README section whose heading is heading.
func readmeBlock(t *testing.T, heading string, n int) []string {
	t.Helper()
	first, count := -1, 0
	var lines []string
	for _, s := range parseReadme(readmeText(t)) {
		if s.section != heading || s.block == 0 {
			continue
		}
		if s.block != first {
			first, count = s.block, count+1
		}
		if count == n {
			lines = append(lines, s.text)
		}
	}
	return lines
}
