package procfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultEvalTimeout bounds how long node may take to evaluate a .js
// process file: a file that loops, waits on the network or leaves a server
// open must not keep the container from starting (or from failing).
const DefaultEvalTimeout = 10 * time.Second

// loaderJS is run by node with the process file's absolute path as its
// argument. import() loads both kinds of module — a CommonJS file's
// module.exports arrives as the default export, an ES module's `export
// default` too — so .js, .cjs and .mjs files work as PM2 loads them
// (require for CommonJS; an ES module needs the .mjs extension or "type":
// "module" in its package.json, as Node decides).
//
// The answer goes to fd 3 as one JSON object, {"config": …} or {"error":
// …, "line": N}, so that whatever the file prints with console.log cannot be
// mistaken for the configuration. The loader exits as soon as it has
// answered: timers or servers the file leaves open cannot hold it.
const loaderJS = `'use strict';
const fs = require('fs'), path = require('path'), url = require('url');
const file = path.resolve(process.argv[1]);
const href = url.pathToFileURL(file).href;
function answer(o) {
  let s;
  try { s = JSON.stringify(o); } catch (e) { s = JSON.stringify({ error: 'the exported value cannot be converted to JSON: ' + e.message }); }
  fs.writeSync(3, s === undefined ? 'null' : s);
  process.exit(o.error === undefined ? 0 : 1);
}
function lineOf(e) {
  const st = String((e && e.stack) || '');
  for (const p of [file + ':', href + ':']) {
    const i = st.indexOf(p);
    if (i >= 0) {
      const m = /^\d+/.exec(st.slice(i + p.length));
      if (m) return Number(m[0]);
    }
  }
  return 0;
}
function describe(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'message' in e)) {
    return (e.name || 'Error') + ': ' + e.message;
  }
  return 'threw ' + String(e);
}
import(href).then(async (m) => {
  let c = m.default;
  if (c === undefined) c = Object.assign({}, m);
  c = await c;
  answer({ config: c === undefined ? null : c });
}).catch((e) => answer({ error: describe(e), line: lineOf(e) }));
`

// evalJS runs the process file through node and returns the JSON it
// exports.
func evalJS(ctx context.Context, path, node string, timeout time.Duration) ([]byte, error) {
	if node == "" {
		p, err := exec.LookPath("node")
		if err != nil {
			return nil, errors.New("a .js process file is evaluated by node, which is not in PATH (install node in the image, or write the file as .json or .yaml)")
		}
		node = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve its path: %w", err)
	}
	if st, err := os.Stat(abs); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read: %w", err)
	} else if st.IsDir() {
		return nil, errors.New("is a directory, not a process file")
	}
	if timeout <= 0 {
		timeout = DefaultEvalTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("evaluate with node: %w", err)
	}
	defer r.Close()
	// In gm2-init's working directory, as PM2 requires the file from its
	// own: a file that uses process.cwd() sees the same directory.
	cmd := exec.CommandContext(ctx, node, "-e", loaderJS, abs)
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	// Its own process group, so that a timeout ends whatever the file
	// started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start node (%s): %w", node, err)
	}
	w.Close()

	// The answer is one JSON object: stop at its end, even if a process the
	// file started still holds the pipe.
	type result struct {
		msg json.RawMessage
		err error
	}
	got := make(chan result, 1)
	go func() {
		var msg json.RawMessage
		err := json.NewDecoder(io.LimitReader(r, maxFileSize)).Decode(&msg)
		got <- result{msg, err}
	}()
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
	}
	waitErr := cmd.Wait()
	if res.msg == nil && res.err == nil {
		// The timeout won the race: the reader ends with the pipe.
		r.Close()
		res = <-got
	}
	if ctx.Err() == context.DeadlineExceeded && res.msg == nil {
		return nil, fmt.Errorf("node did not finish evaluating the file within %v", timeout)
	}
	if res.err != nil || res.msg == nil {
		return nil, fmt.Errorf("node gave no configuration (%v)%s", exitText(waitErr), lastLine(stderr.String()))
	}
	var ans struct {
		Config json.RawMessage `json:"config"`
		Error  *string         `json:"error"`
		Line   int             `json:"line"`
	}
	if err := json.Unmarshal(res.msg, &ans); err != nil {
		return nil, fmt.Errorf("node gave an unreadable answer: %w", err)
	}
	if ans.Error != nil {
		if ans.Line > 0 {
			return nil, fmt.Errorf("line %d: %s", ans.Line, *ans.Error)
		}
		return nil, errors.New(*ans.Error)
	}
	return ans.Config, nil
}

func exitText(err error) string {
	if err == nil {
		return "it exited with status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "it " + strings.Replace(ee.ProcessState.String(), "exit status", "exited with status", 1)
	}
	return err.Error()
}

// lastLine is the last non-empty line of node's stderr, as ": line".
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return ": " + l
	}
	return ""
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
