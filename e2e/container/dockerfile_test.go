package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gm2-init/gm2-init/internal/shellwords"
	"github.com/gm2-init/gm2-init/internal/testtool"
)

// Dockerfile.example is tested in two halves. Its build stages need a
// registry (golang and node images, npm) and are checked for syntax only, by
// the small parser below. Its final, runtime stage is built by podman from
// the file's own text, byte for byte: the base image it names and the stages
// it copies from are supplied as build contexts made on this machine (see
// exampleImage), so the image the tests run is the one the file describes.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // 1-based line of its keyword
	cmd  string // upper case
	args string
}

// stage is one FROM … section.
type stage struct {
	from, name string
	instrs     []instruction
	text       string // the source from its FROM line to the stage's end
}

var knownInstructions = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
	"HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// parseDockerfile splits a Dockerfile into stages and checks the syntax of
// every instruction this project's files use: what `docker build` would
// reject before running anything.
func parseDockerfile(src string) ([]stage, error) {
	lines := strings.Split(src, "\n")
	var stages []stage
	var cur *stage
	startLine := make([]int, 0)
	for i := 0; i < len(lines); i++ {
		raw := strings.TrimSpace(lines[i])
		if raw == "" || strings.HasPrefix(raw, "#") {
			continue
		}
		first := i
		text := raw
		for strings.HasSuffix(text, `\`) {
			text = strings.TrimSuffix(text, `\`)
			i++
			// Comment lines inside a continuation are dropped, as Docker does.
			for i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "#") {
				i++
			}
			if i >= len(lines) {
				return nil, fmt.Errorf("line %d: the file ends inside a continued line", first+1)
			}
			text += " " + strings.TrimSpace(lines[i])
		}
		kw, args, _ := strings.Cut(text, " ")
		in := instruction{line: first + 1, cmd: strings.ToUpper(kw), args: strings.TrimSpace(args)}
		if !slices.Contains(knownInstructions, in.cmd) {
			return nil, fmt.Errorf("line %d: unknown instruction %q", in.line, kw)
		}
		if in.cmd == "FROM" {
			st, err := parseFrom(in, stages)
			if err != nil {
				return nil, err
			}
			stages = append(stages, st)
			startLine = append(startLine, first)
			cur = &stages[len(stages)-1]
			continue
		}
		if cur == nil {
			if in.cmd == "ARG" {
				continue
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		if err := checkInstruction(in, stages); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", in.line, in.cmd, err)
		}
		cur.instrs = append(cur.instrs, in)
	}
	if len(stages) == 0 {
		return nil, errors.New("no FROM")
	}
	for k := range stages {
		end := len(lines)
		if k+1 < len(stages) {
			end = startLine[k+1]
		}
		// Blank and comment lines before the next FROM belong to it.
		for end > startLine[k]+1 {
			if l := strings.TrimSpace(lines[end-1]); l != "" && !strings.HasPrefix(l, "#") {
				break
			}
			end--
		}
		stages[k].text = strings.Join(lines[startLine[k]:end], "\n") + "\n"
	}
	return stages, nil
}

func parseFrom(in instruction, prev []stage) (stage, error) {
	f := strings.Fields(in.args)
	for len(f) > 0 && strings.HasPrefix(f[0], "--platform=") {
		f = f[1:]
	}
	var st stage
	switch {
	case len(f) == 1:
		st.from = f[0]
	case len(f) == 3 && strings.EqualFold(f[1], "AS"):
		st.from, st.name = f[0], f[2]
		if st.name != strings.ToLower(st.name) {
			return st, fmt.Errorf("line %d: stage name %q must be lower case", in.line, st.name)
		}
		for _, p := range prev {
			if p.name == st.name {
				return st, fmt.Errorf("line %d: stage %q defined twice", in.line, st.name)
			}
		}
	default:
		return st, fmt.Errorf("line %d: FROM wants IMAGE [AS NAME], got %q", in.line, in.args)
	}
	return st, nil
}

func checkInstruction(in instruction, stages []stage) error {
	a := in.args
	switch in.cmd {
	case "RUN", "CMD", "ENTRYPOINT", "SHELL":
		if a == "" {
			return errors.New("no command")
		}
		if strings.HasPrefix(a, "[") || in.cmd == "SHELL" {
			_, err := execForm(a)
			return err
		}
	case "COPY", "ADD":
		f := strings.Fields(a)
		for len(f) > 0 && strings.HasPrefix(f[0], "--") {
			flag, val, _ := strings.Cut(f[0], "=")
			switch flag {
			case "--from":
				if !slices.ContainsFunc(stages, func(s stage) bool { return s.name == val }) {
					return fmt.Errorf("--from=%s names no earlier stage", val)
				}
			case "--chown", "--chmod", "--link":
			default:
				return fmt.Errorf("unknown flag %s", flag)
			}
			f = f[1:]
		}
		if len(f) < 2 {
			return errors.New("wants SOURCE... DEST")
		}
	case "ENV":
		words, err := shellwords.Split(a)
		if err != nil {
			return err
		}
		if len(words) == 0 {
			return errors.New("no variable")
		}
		for _, w := range words {
			if k, _, ok := strings.Cut(w, "="); !ok || k == "" {
				return fmt.Errorf("%q is not NAME=VALUE", w)
			}
		}
	case "EXPOSE":
		for _, p := range strings.Fields(a) {
			num, proto, _ := strings.Cut(p, "/")
			if n, err := strconv.Atoi(num); err != nil || n < 1 || n > 65535 || (proto != "" && proto != "tcp" && proto != "udp") {
				return fmt.Errorf("%q is not PORT[/tcp|/udp]", p)
			}
		}
	case "HEALTHCHECK":
		_, err := parseHealthcheck(a)
		return err
	case "USER", "WORKDIR", "STOPSIGNAL", "LABEL", "ARG", "VOLUME", "MAINTAINER", "ONBUILD":
		if a == "" {
			return errors.New("no argument")
		}
	}
	return nil
}

// healthcheck is a parsed HEALTHCHECK instruction.
type healthcheck struct {
	options map[string]string
	cmd     []string // exec form; nil for NONE
}

func parseHealthcheck(a string) (healthcheck, error) {
	hc := healthcheck{options: map[string]string{}}
	if strings.EqualFold(a, "NONE") {
		return hc, nil
	}
	rest := a
	for strings.HasPrefix(rest, "--") {
		opt, r, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(r)
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			return hc, fmt.Errorf("option %q wants a value", opt)
		}
		switch k {
		case "--interval", "--timeout", "--start-period", "--start-interval":
			if d, err := time.ParseDuration(v); err != nil || d <= 0 {
				return hc, fmt.Errorf("%s=%s is not a duration", k, v)
			}
		case "--retries":
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				return hc, fmt.Errorf("--retries=%s is not a positive number", v)
			}
		default:
			return hc, fmt.Errorf("unknown option %s", k)
		}
		hc.options[k] = v
	}
	kw, cmd, _ := strings.Cut(rest, " ")
	if !strings.EqualFold(kw, "CMD") {
		return hc, fmt.Errorf("wants CMD, got %q", kw)
	}
	cmd = strings.TrimSpace(cmd)
	if strings.HasPrefix(cmd, "[") {
		words, err := execForm(cmd)
		if err != nil {
			return hc, err
		}
		hc.cmd = words
		return hc, nil
	}
	if cmd == "" {
		return hc, errors.New("CMD without a command")
	}
	hc.cmd = []string{"/bin/sh", "-c", cmd}
	return hc, nil
}

// execForm parses the JSON form ["prog", "arg"…].
func execForm(a string) ([]string, error) {
	var words []string
	if err := json.Unmarshal([]byte(a), &words); err != nil {
		return nil, fmt.Errorf("exec form %s is not a JSON array of strings: %w", a, err)
	}
	if len(words) == 0 {
		return nil, errors.New("empty exec form")
	}
	return words, nil
}

// goBuild is how a Dockerfile's gm2-init stage builds the binary.
type goBuild struct {
	env   []string // NAME=VALUE before `go`
	flags []string // between `build` and the package, without -o
	out   string   // -o
	stage string
}

// goBuildOf finds the `go build` that makes gm2-init in the stage named
// gm2-init, so that the tests build the binary the same way.
func goBuildOf(stages []stage) (goBuild, error) {
	for _, st := range stages {
		if st.name != "gm2-init" {
			continue
		}
		for _, in := range st.instrs {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			words, err := shellwords.Split(in.args)
			if err != nil {
				return goBuild{}, fmt.Errorf("line %d: %w", in.line, err)
			}
			gb := goBuild{stage: st.name}
			i := 0
			for ; i < len(words) && strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-"); i++ {
				gb.env = append(gb.env, words[i])
			}
			if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
				return goBuild{}, fmt.Errorf("line %d: want [VAR=VALUE...] go build ..., got %q", in.line, in.args)
			}
			rest := words[i+2:]
			if len(rest) == 0 || rest[len(rest)-1] != "." {
				return goBuild{}, fmt.Errorf("line %d: go build must build the repository's root package (.)", in.line)
			}
			rest = rest[:len(rest)-1]
			for j := 0; j < len(rest); j++ {
				if rest[j] == "-o" && j+1 < len(rest) {
					gb.out = rest[j+1]
					j++
					continue
				}
				gb.flags = append(gb.flags, rest[j])
			}
			if !strings.HasPrefix(gb.out, "/") {
				return goBuild{}, fmt.Errorf("line %d: go build -o needs an absolute path, got %q", in.line, gb.out)
			}
			return gb, nil
		}
	}
	return goBuild{}, errors.New(`no stage "gm2-init" with a RUN … go build … .`)
}

func TestParseDockerfile(t *testing.T) {
	ok := []struct {
		name, src string
		stages    int
	}{
		{"one stage", "FROM scratch\nCOPY a /a\nENTRYPOINT [\"/a\"]\n", 1},
		{"arg before from, comments, continuation", "ARG V=1\n# c\nFROM golang:1 AS b\nRUN go build \\\n  # inside\n  -o /x .\nFROM scratch\nCOPY --from=b /x /x\n", 2},
		{"env forms and quotes", "FROM scratch\nENV A=1 \\\n    B=\"two words\" C=''\n", 1},
		{"healthcheck", "FROM scratch\nHEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=2 CMD [\"x\", \"healthcheck\"]\n", 1},
		{"healthcheck none, shell form cmd", "FROM scratch\nHEALTHCHECK NONE\nCMD echo hi\n", 1},
		{"expose", "FROM scratch\nEXPOSE 8080 9000/tcp 53/udp\n", 1},
		{"lower-case keyword", "from scratch\ncopy a /a\n", 1},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseDockerfile(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if len(st) != tc.stages {
				t.Fatalf("%d stages, want %d", len(st), tc.stages)
			}
		})
	}
	bad := []struct{ name, src, want string }{
		{"empty", "# nothing\n", "no FROM"},
		{"before from", "COPY a /a\nFROM scratch\n", "before the first FROM"},
		{"unknown instruction", "FROM scratch\nCOPPY a /a\n", `unknown instruction "COPPY"`},
		{"bad exec form", "FROM scratch\nENTRYPOINT [\"a\",]\n", "not a JSON array"},
		{"exec form of numbers", "FROM scratch\nCMD [1]\n", "not a JSON array"},
		{"unknown stage", "FROM scratch\nCOPY --from=build /x /x\n", "names no earlier stage"},
		{"later stage", "FROM scratch\nCOPY --from=b /x /x\nFROM scratch AS b\n", "names no earlier stage"},
		{"duplicate stage", "FROM a AS b\nFROM c AS b\n", "defined twice"},
		{"upper-case stage", "FROM a AS Build\n", "lower case"},
		{"from garbage", "FROM a AS\n", "FROM wants"},
		{"copy one operand", "FROM scratch\nCOPY a\n", "SOURCE... DEST"},
		{"copy unknown flag", "FROM scratch\nCOPY --own=1 a /a\n", "unknown flag --own"},
		{"env without value", "FROM scratch\nENV A\n", "not NAME=VALUE"},
		{"env unterminated", "FROM scratch\nENV A=\"x\n", "unterminated"},
		{"expose port", "FROM scratch\nEXPOSE 80/sctp\n", "PORT"},
		{"expose range", "FROM scratch\nEXPOSE 70000\n", "PORT"},
		{"healthcheck duration", "FROM scratch\nHEALTHCHECK --interval=10 CMD [\"x\"]\n", "not a duration"},
		{"healthcheck option", "FROM scratch\nHEALTHCHECK --every=1s CMD [\"x\"]\n", "unknown option"},
		{"healthcheck without cmd", "FROM scratch\nHEALTHCHECK --interval=1s [\"x\"]\n", "wants CMD"},
		{"healthcheck retries", "FROM scratch\nHEALTHCHECK --retries=0 CMD [\"x\"]\n", "--retries"},
		{"dangling continuation", "FROM scratch\nRUN a \\", "ends inside"},
		{"empty user", "FROM scratch\nUSER\n", "no argument"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDockerfile(tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseDockerfile(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile.example")); err == nil {
		f.Add(string(b))
	}
	f.Add("FROM a AS b\nRUN x \\\n y\nFROM scratch\nCOPY --from=b /x /y\nHEALTHCHECK --interval=1s CMD [\"a\"]\n")
	f.Add("FROM scratch\nENV A=\"\\\"\" B='x'\n")
	f.Fuzz(func(t *testing.T, src string) {
		stages, err := parseDockerfile(src)
		if err != nil {
			return
		}
		if len(stages) == 0 {
			t.Fatal("no error and no stage")
		}
		for _, st := range stages {
			if !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(st.text)), "FROM") {
				t.Fatalf("stage text does not start at its FROM: %q", st.text)
			}
		}
		goBuildOf(stages)
	})
}

// TestDockerfileExampleSyntax checks every stage of Dockerfile.example
// (the build stages can only be checked, not built: they need a registry)
// and what the runtime stage promises: exec-form ENTRYPOINT so that
// gm2-init is PID 1, a HEALTHCHECK through `gm2-init healthcheck`, and no
// RUN, so that the stage is nothing but files and settings, which the
// container tests then build and run.
func TestDockerfileExampleSyntax(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(suite.root, "Dockerfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatalf("Dockerfile.example: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile.example has %d stage(s); want a build stage and a runtime stage", len(stages))
	}
	gb, err := goBuildOf(stages)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gb.env, "CGO_ENABLED=0") {
		t.Errorf("the build stage builds without CGO_ENABLED=0 (%q): the binary would need libc in the app image", gb.env)
	}
	final := stages[len(stages)-1]
	var entry, cmd []string
	var hc healthcheck
	for _, in := range final.instrs {
		switch in.cmd {
		case "RUN", "ADD", "ONBUILD":
			t.Errorf("line %d: the runtime stage has %s; keep it to COPY and settings (the tests build it with no shell and no registry)", in.line, in.cmd)
		case "ENTRYPOINT":
			if entry, err = execForm(in.args); err != nil {
				t.Errorf("line %d: ENTRYPOINT must be in exec form, or gm2-init is not PID 1: %v", in.line, err)
			}
		case "CMD":
			cmd, _ = execForm(in.args)
		case "HEALTHCHECK":
			hc, _ = parseHealthcheck(in.args)
		}
	}
	if len(entry) == 0 || entry[0] != "gm2-init" || entry[len(entry)-1] != "--" {
		t.Errorf(`ENTRYPOINT %q: want ["gm2-init", …, "--"]`, entry)
	}
	if len(cmd) == 0 {
		t.Error("no CMD in exec form: the app to run")
	}
	if !slices.Equal(hc.cmd, []string{"gm2-init", "healthcheck"}) {
		t.Errorf(`HEALTHCHECK CMD %q, want ["gm2-init", "healthcheck"] (no curl in the image)`, hc.cmd)
	}
}

// exampleImage builds Dockerfile.example's runtime stage, from its own text,
// with:
//   - its FROM image → the node base image made of this machine's node (no
//     registry here);
//   - COPY --from=gm2-init → the binary built by TestMain with the build
//     stage's own `go build` flags;
//   - COPY --from=app → the stage's WORKDIR filled with examples/node, whose
//     node_modules scripts/test.sh made with `npm ci`, as the stage's RUN
//     does.
//
// A stage name the test does not know how to supply fails the test: update
// this function together with Dockerfile.example.
func exampleImage(t *testing.T) string {
	t.Helper()
	base := nodeBaseImage(t)
	testtool.RequireFile(t, filepath.Join(suite.root, "examples", "node", "node_modules"), "run `npm ci` in examples/node, as scripts/test.sh does")
	return needImage(t, "dockerfile-example", func(name string) error {
		b, err := os.ReadFile(filepath.Join(suite.root, "Dockerfile.example"))
		if err != nil {
			return err
		}
		stages, err := parseDockerfile(string(b))
		if err != nil {
			return err
		}
		gb, err := goBuildOf(stages)
		if err != nil {
			return err
		}
		final := stages[len(stages)-1]
		byName := map[string]stage{}
		for _, st := range stages[:len(stages)-1] {
			byName[st.name] = st
		}
		if _, isStage := byName[final.from]; isStage {
			return fmt.Errorf("the runtime stage builds FROM stage %q; the test supplies only an image", final.from)
		}
		contexts := []string{"--build-context", final.from + "=container-image://" + base}
		seen := map[string]bool{}
		for _, in := range final.instrs {
			if in.cmd != "COPY" {
				continue
			}
			for _, f := range strings.Fields(in.args) {
				from, ok := strings.CutPrefix(f, "--from=")
				if !ok || seen[from] {
					continue
				}
				seen[from] = true
				dir := filepath.Join(suite.tmp, "ctx-stage-"+from)
				switch from {
				case gb.stage:
					err = copyFile(suite.gm2init, filepath.Join(dir, gb.out), 0o755)
				case "app":
					err = fillAppStage(byName[from], dir)
				default:
					err = fmt.Errorf("the runtime stage copies from stage %q, which the test cannot supply", from)
				}
				if err != nil {
					return err
				}
				contexts = append(contexts, "--build-context", from+"="+dir)
			}
		}
		return podmanBuild(name, suite.root, final.text, contexts...)
	})
}

// fillAppStage lays out what the app stage of Dockerfile.example produces:
// examples/node (with the node_modules of `npm ci`) in the stage's WORKDIR.
func fillAppStage(st stage, dir string) error {
	workdir := ""
	for _, in := range st.instrs {
		if in.cmd == "WORKDIR" {
			workdir = in.args
		}
	}
	if !strings.HasPrefix(workdir, "/") {
		return fmt.Errorf("stage app: no absolute WORKDIR")
	}
	return copyTree(filepath.Join(suite.root, "examples", "node"), filepath.Join(dir, workdir))
}
