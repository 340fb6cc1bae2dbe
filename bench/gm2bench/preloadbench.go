package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gm2-init/gm2-init/internal/preload"
)

// PreloadRun is one start of a Node process that exits at once, with the
// preload loaded one way.
type PreloadRun struct {
	Node    string `json:"node"` // its version
	Mode    string `json:"mode"` // none, require, import
	Round   int    `json:"round"`
	WallMs  millis `json:"wall_ms"` // fork to exit
	CPUMs   millis `json:"cpu_ms"`  // user + system time of the process
	Problem string `json:"problem,omitempty"`
}

// PreloadResult is benchmark 4b: what each way of loading the preload costs
// every Node process (issue 14: gm2-init chooses --require of a file first,
// and the data: URL only when no directory takes the file).
type PreloadResult struct {
	Modes []string     `json:"modes"`
	Runs  []PreloadRun `json:"runs"`
}

var preloadModes = []string{"none", "require", "import"}

// preloadNodes returns the node binaries to measure: the one of the other
// benchmarks, and every major scripts/test.sh installed under .tools/node.
func (e *Env) preloadNodes() []string {
	nodes := []string{e.Node}
	found, _ := filepath.Glob(filepath.Join(e.Root, ".tools", "node", "*", "node_modules", ".bin", "node"))
	sort.Strings(found)
	return append(nodes, found...)
}

func benchPreload(e *Env) (*PreloadResult, error) {
	res := &PreloadResult{Modes: preloadModes}
	script := filepath.Join(e.Tmp, "exit.js")
	if err := os.WriteFile(script, []byte("'use strict';\n"), 0o644); err != nil {
		return nil, err
	}
	file, cleanup, err := preload.WriteFile(e.Tmp)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	require, err := preload.RequireOption(file)
	if err != nil {
		return nil, err
	}
	options := map[string]string{"none": "", "require": require, "import": preload.ImportOption()}
	for _, node := range e.preloadNodes() {
		out, err := exec.Command(node, "--version").Output()
		if err != nil {
			logf("  preload: %s --version: %v (skipped)", node, err)
			continue
		}
		version := strings.TrimSpace(string(out))
		for r := 0; r < e.P.StartRounds; r++ {
			for _, mode := range rotate(preloadModes, r) {
				run := PreloadRun{Node: version, Mode: mode, Round: r + 1}
				cmd := exec.Command(node, script)
				// The workers' own variables are absent, so the preload is
				// loaded and returns at once: what differs between the
				// modes is how Node loads it.
				cmd.Env = append(os.Environ(), "NODE_OPTIONS="+options[mode])
				t := time.Now()
				if b, err := cmd.CombinedOutput(); err != nil {
					run.Problem = fmt.Sprintf("%v: %.200s", err, b)
				}
				run.WallMs = millis(float64(time.Since(t)) / 1e6)
				if st := cmd.ProcessState; st != nil {
					run.CPUMs = millis(float64(st.UserTime()+st.SystemTime()) / 1e6)
				}
				res.Runs = append(res.Runs, run)
			}
		}
		logf("  preload %s: %d rounds", version, e.P.StartRounds)
	}
	return res, nil
}

func preloadSection(b *strings.Builder, s *PreloadResult) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## 4b. Loading the Node preload\n\n")
	w("A Node process that runs an empty script and exits, with no preload, with the preload loaded by\n")
	w("`--require` of its file (what gm2-init does when a directory takes the file), and by `--import` of the\n")
	w("data: URL (when none does); the modes interleaved, round by round. Wall time from the fork to the exit\n")
	w("and the process's CPU time (user + system), in ms; the differences are computed round by round.\n\n")
	w("| node | none: wall | CPU | --require: wall | CPU | --import: wall | CPU | --require − none, CPU | --import − --require, CPU |\n|---|---|---|---|---|---|---|---|---|\n")
	var versions []string
	for _, x := range s.Runs {
		if !slices.Contains(versions, x.Node) {
			versions = append(versions, x.Node)
		}
	}
	for _, v := range versions {
		of := func(mode string) func(PreloadRun) bool {
			return func(x PreloadRun) bool { return x.Node == v && x.Mode == mode && x.Problem == "" }
		}
		wall := func(x PreloadRun) float64 { return float64(x.WallMs) }
		cpu := func(x PreloadRun) float64 { return float64(x.CPUMs) }
		byRound := map[string]map[int]float64{}
		for _, x := range s.Runs {
			if x.Node == v && x.Problem == "" {
				if byRound[x.Mode] == nil {
					byRound[x.Mode] = map[int]float64{}
				}
				byRound[x.Mode][x.Round] = float64(x.CPUMs)
			}
		}
		diff := func(a, b string) Summary {
			var d []float64
			for r, x := range byRound[a] {
				if y, ok := byRound[b][r]; ok {
					d = append(d, x-y)
				}
			}
			return summarize(d)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", v,
			cell(summarize(collect(s.Runs, of("none"), wall)), 1), cell(summarize(collect(s.Runs, of("none"), cpu)), 1),
			cell(summarize(collect(s.Runs, of("require"), wall)), 1), cell(summarize(collect(s.Runs, of("require"), cpu)), 1),
			cell(summarize(collect(s.Runs, of("import"), wall)), 1), cell(summarize(collect(s.Runs, of("import"), cpu)), 1),
			cell(diff("require", "none"), 1), cell(diff("import", "require"), 1))
	}
	for _, x := range s.Runs {
		if x.Problem != "" {
			w("\nA run failed (%s, %s, round %d): %s\n", x.Node, x.Mode, x.Round, x.Problem)
			break
		}
	}
	w("\n")
}
