package procfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// interpreters is PM2's choice of interpreter by the script's extension
// (its lib/API/interpreter.json), plus .cjs and .mjs. Any other script runs
// as a program of its own (PM2 would run a text file without a known
// extension with node; gm2-init lets its #! line decide).
var interpreters = map[string]string{
	".js": "node", ".cjs": "node", ".mjs": "node",
	".ts": "bun", ".tsx": "bun",
	".py": "python", ".sh": "bash", ".rb": "ruby", ".php": "php", ".pl": "perl",
	".coffee": "coffee", ".ls": "lsc",
}

// app converts apps[i] into an App. autostart is the file's autostart key
// (true when absent).
func (l *loader) app(i int, raw any) (a appspec.App, autostart bool, err error) {
	id := fmt.Sprintf("apps[%d]", i)
	m, ok := raw.(map[string]any)
	if !ok {
		return a, false, l.fail(id, "", "%s; each app is an object with at least a script", invalid(raw, "an object").Error())
	}
	// Aliases first: the canonical key wins when both are given.
	keys := map[string]any{}
	var shadowed [][2]string // alias, canonical: warned once the name is known
	for _, k := range sortedKeys(m) {
		canon := k
		if c, ok := aliases[k]; ok {
			canon = c
		}
		if _, dup := keys[canon]; dup || (canon != k && hasKey(m, canon)) {
			if canon != k {
				shadowed = append(shadowed, [2]string{k, canon})
				continue
			}
		}
		keys[canon] = m[k]
	}

	a = l.template
	a.Name, a.Command, a.Path, a.Env, a.Listen = "", nil, "", nil, nil
	a.StopExitCodes = slices.Clone(l.template.StopExitCodes)
	if a.ExecMode == "" {
		a.ExecMode = appspec.Cluster
	}
	autostart = true

	// name: as written, or derived from the script as PM2 does.
	if v, ok := keys["name"]; ok {
		s, err := asString(v, appspec.NameAccepted)
		if err == nil {
			err = appspec.CheckName(s)
			if err != nil {
				err = invalid(v, err.Error())
			}
		}
		if err != nil {
			return a, false, l.fail(id, "name", "%s", err.Error())
		}
		a.Name = s
	}
	script, ok := keys["script"]
	if !ok || script == nil {
		return a, false, l.fail(l.appID(id, a.Name), "script", "missing: give the file or command to run (script: \"server.js\")")
	}
	scriptStr, err := asString(script, "a file or command to run")
	if err == nil && strings.TrimSpace(scriptStr) == "" {
		err = invalid(script, "a file or command to run")
	}
	if err != nil {
		return a, false, l.fail(l.appID(id, a.Name), "script", "%s", err.Error())
	}
	if a.Name == "" {
		a.Name = deriveName(scriptStr)
	}
	id = fmt.Sprintf("app %q", a.Name)

	// The keys gm2-init reads, in an order where each can rely on the
	// previous ones (cwd before script, instances before exec_mode).
	fail := func(key string, err error) error { return l.fail(id, key, "%s", err.Error()) }
	if v, ok := keys["cwd"]; ok {
		s, err := asString(v, "a directory")
		if err != nil {
			return a, false, fail("cwd", err)
		}
		dir, err := filepath.Abs(s)
		if err != nil {
			return a, false, fail("cwd", err)
		}
		if st, ok := exists(dir); !ok || !st.IsDir() {
			return a, false, fail("cwd", fmt.Errorf("%q is not a directory", s))
		}
		a.Dir = dir
	}
	var args, interpArgs []string
	if v, ok := keys["args"]; ok {
		if args, err = asWords(v); err != nil {
			return a, false, fail("args", err)
		}
	}
	if v, ok := keys["interpreter_args"]; ok {
		if interpArgs, err = asWords(v); err != nil {
			return a, false, fail("interpreter_args", err)
		}
	}
	interp := ""
	if v, ok := keys["interpreter"]; ok {
		if interp, err = asString(v, "none, or an interpreter's name or path (node, python3, /usr/bin/ruby)"); err != nil {
			return a, false, fail("interpreter", err)
		}
		interp = strings.TrimSpace(interp)
	}
	if err := l.command(&a, id, scriptStr, interp, interpArgs, args); err != nil {
		return a, false, err
	}

	instancesSet := false
	if v, ok := keys["instances"]; ok && v != nil {
		spec, err := asInstances(v)
		if err != nil {
			return a, false, fail("instances", err)
		}
		a.Instances, instancesSet = spec, true
	}
	if v, ok := keys["exec_mode"]; ok {
		s, _ := v.(string)
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "cluster", "cluster_mode":
			a.ExecMode = appspec.Cluster
		case "fork", "fork_mode":
			a.ExecMode = appspec.Fork
		default:
			return a, false, fail("exec_mode", invalid(v, "cluster (or cluster_mode) or fork (or fork_mode)"))
		}
	}
	if a.ExecMode == appspec.Fork {
		if instancesSet && (a.Instances.Relative || a.Instances.N != 1) {
			return a, false, l.fail(id, "instances", "%s with exec_mode fork: fork runs exactly one instance; use exec_mode cluster for %s workers", a.Instances, a.Instances)
		}
		a.Instances = appspec.Instances{N: 1}
		a.MinReady = appspec.ForkMinReady(a.MinReady)
	}

	env := map[string]string{}
	envKey := map[string]string{} // the key each variable came from: env or env_NAME
	if v, ok := keys["env"]; ok && v != nil {
		e, err := asEnv(v)
		if err != nil {
			return a, false, fail("env", err)
		}
		env = e
		for k := range e {
			envKey[k] = "env"
		}
	}
	for _, k := range sortedKeys(m) {
		name, ok := strings.CutPrefix(k, "env_")
		if !ok || m[k] == nil {
			continue
		}
		e, err := asEnv(m[k])
		if err != nil {
			return a, false, fail(k, err)
		}
		if name == l.opts.Env && name != "" {
			for kk, vv := range e {
				env[kk], envKey[kk] = vv, k
			}
		}
	}
	if v, ok := keys["port"]; ok {
		n, err := asInt(v, "a port number from 1 to 65535")
		if err == nil && (n < 1 || n > 65535) {
			err = invalid(v, "a port number from 1 to 65535")
		}
		if err != nil {
			return a, false, fail("port", err)
		}
		env["PORT"] = strconv.Itoa(n)
	}

	if v, ok := keys["wait_ready"]; ok {
		if a.WaitReady, err = asBool(v); err != nil {
			return a, false, fail("wait_ready", err)
		}
	}
	durations := []struct {
		key   string
		dst   *time.Duration
		least time.Duration
		short bool // a few milliseconds is likely seconds meant
	}{
		{"listen_timeout", &a.ListenTimeout, time.Millisecond, true},
		{"kill_timeout", &a.KillTimeout, time.Millisecond, true},
		{"min_uptime", &a.MinUptime, 0, true},
		{"restart_delay", &a.RestartDelay, 0, false},
		// PM2's exponential backoff starts at this delay: so does
		// gm2-init's, always.
		{"exp_backoff_restart_delay", &a.RestartDelay, 0, false},
	}
	for _, d := range durations {
		v, ok := keys[d.key]
		if !ok {
			continue
		}
		if *d.dst, err = asDuration(v, d.least); err != nil {
			return a, false, fail(d.key, err)
		}
		if n, bare := bareNumber(v); bare && d.short && *d.dst > 0 && *d.dst < 100*time.Millisecond {
			// A bare number is milliseconds, as under PM2: kill_timeout:
			// 1.5 meant as seconds is a stop that SIGKILLs at once.
			l.warn(d.key, id, fmt.Sprintf("%s is %s: a bare number is milliseconds, as PM2 reads it; write \"%ss\" for seconds", n, *d.dst, n))
		}
	}
	if _, ok := keys["restart_delay"]; ok {
		if _, ok := keys["exp_backoff_restart_delay"]; ok {
			return a, false, l.fail(id, "exp_backoff_restart_delay", "give restart_delay or exp_backoff_restart_delay, not both (both are the least restart delay: gm2-init's restarts always back off exponentially, from 100 ms up to 15 s, and never wait less than that)")
		}
	}
	if v, ok := keys["max_restarts"]; ok {
		n, err := asInt(v, appspec.MaxRestartsAccepted)
		if err == nil && appspec.CheckMaxRestarts(n) != nil {
			err = invalid(v, appspec.MaxRestartsAccepted)
		}
		if err != nil {
			return a, false, fail("max_restarts", err)
		}
		a.MaxRestarts = n
	}
	if v, ok := keys["autorestart"]; ok {
		b, err := asBool(v)
		if err != nil {
			return a, false, fail("autorestart", err)
		}
		if b {
			a.Restart = appspec.Always
		} else {
			a.Restart = appspec.Never
		}
	}
	if v, ok := keys["autostart"]; ok {
		if autostart, err = asBool(v); err != nil {
			return a, false, fail("autostart", err)
		}
	}
	if v, ok := keys["stop_exit_codes"]; ok {
		if a.StopExitCodes, err = asExitCodes(v); err != nil {
			return a, false, fail("stop_exit_codes", err)
		}
	}
	if v, ok := keys["max_memory_restart"]; ok {
		if a.MaxMemory, err = asSize(v); err != nil {
			return a, false, fail("max_memory_restart", err)
		}
	}
	if v, ok := keys["instance_var"]; ok {
		s, err := asString(v, "a variable name")
		if err == nil {
			err = checkEnvName(s)
		}
		if err != nil {
			return a, false, fail("instance_var", err)
		}
		a.InstanceVar = s
	}
	// gm2-init sets these for every worker, and instance_var's variable:
	// a value of the file's would hide the real one (of two equal names in
	// an environment, the first wins), so it is dropped, with a warning.
	for _, k := range sortedKeys(env) {
		if appspec.IsWorkerEnvKey(k) || k == a.InstanceVar {
			l.warn(envKey[k], id, k+" is set by gm2-init for each worker; the file's value is ignored")
			continue
		}
		a.Env = append(a.Env, k+"="+env[k])
	}
	if v, ok := keys["listen"]; ok {
		if a.Listen, err = asListen(v); err != nil {
			return a, false, fail("listen", err)
		}
		if a.ExecMode == appspec.Fork && len(a.Listen) > 0 {
			return a, false, l.fail(id, "listen", "a fork app binds its own ports; use exec_mode cluster for gm2-init to hold them")
		}
	}

	// What is left: PM2 keys gm2-init does not use, and unknown keys.
	for _, s := range shadowed {
		l.warn(s[0], id, fmt.Sprintf("ignored: %s is given too", s[1]))
	}
	for _, k := range sortedKeys(keys) {
		if supported[k] || strings.HasPrefix(k, "env_") {
			continue
		}
		if adv, ok := unsupported[k]; ok {
			msg := adv.msg
			if adv.noop != nil && adv.noop(keys[k]) {
				msg = fmt.Sprintf("%s is what gm2-init does anyway; the key can go", describe(keys[k]))
			}
			l.warn(k, id, msg)
			continue
		}
		l.warn(k, id, "unknown key, ignored (a typo? the README's process-file table lists the keys gm2-init reads)")
	}
	return a, autostart, nil
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

func (l *loader) appID(index, name string) string {
	if name != "" {
		return fmt.Sprintf("app %q", name)
	}
	return index
}

// deriveName names an app after its script, as PM2 does: the base name
// without its extension ("api.js" → "api"); for a command with blanks,
// after the program it runs.
func deriveName(script string) string {
	if f := strings.Fields(script); len(f) > 1 {
		return appspec.CleanName(appspec.NameFromCommand(f))
	}
	base := filepath.Base(strings.TrimSpace(script))
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	return appspec.CleanName(base)
}

// command builds the app's argv as PM2 would run it:
//   - a script with blanks is a shell command: bash -c (sh -c without bash);
//   - interpreter none: the script is the program;
//   - otherwise the interpreter (given, or chosen by the script's
//     extension) runs interpreter_args, the script, then args.
//
// Relative paths are resolved against the app's cwd (else gm2-init's own
// working directory); the script must exist, and the program must be found
// and executable, before anything starts.
func (l *loader) command(a *appspec.App, id, script, interp string, interpArgs, args []string) error {
	base := a.Dir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return l.fail(id, "script", "cannot read the working directory: %v", err)
		}
		base = wd
	}
	if strings.ContainsAny(strings.TrimSpace(script), " \t") && interp == "" {
		shell := "bash"
		p, err := exec.LookPath(shell)
		if err != nil {
			shell = "sh"
			if p, err = exec.LookPath(shell); err != nil {
				return l.fail(id, "script", "%q is a shell command, but neither bash nor sh is in PATH", script)
			}
		}
		if len(args) > 0 {
			return l.fail(id, "args", "a script with blanks is run as a shell command (%s -c); put the arguments in script", shell)
		}
		a.Command, a.Path = []string{shell, "-c", script}, p
		return nil
	}
	chosen := false
	if interp == "" {
		chosen = true
		interp = interpreters[strings.ToLower(filepath.Ext(script))]
		if interp == "python" {
			if _, err := exec.LookPath("python"); err != nil {
				interp = "python3"
			}
		}
	}
	if interp == "" || interp == "none" {
		if len(interpArgs) > 0 {
			return l.fail(id, "interpreter_args", "the script runs without an interpreter (interpreter: none); put these arguments in args")
		}
		p, err := program(base, script)
		if err != nil {
			return l.fail(id, "script", "%q: %v", script, err)
		}
		a.Command, a.Path = append([]string{script}, args...), p
		return nil
	}
	ip, err := exec.LookPath(interp)
	if err != nil {
		why := "not found in PATH"
		if strings.Contains(interp, "/") {
			why = "not found or not executable"
		}
		how := ""
		if chosen {
			how = fmt.Sprintf(" (chosen for %s files, as PM2 does; set interpreter to change it)", filepath.Ext(script))
		}
		return l.fail(id, "interpreter", "%q: %s%s", interp, why, how)
	}
	sp := script
	if !filepath.IsAbs(sp) {
		sp = filepath.Join(base, sp)
	}
	if st, ok := exists(sp); !ok || st.IsDir() {
		// PM2 falls back to a command of that name in PATH.
		found, err := exec.LookPath(script)
		if err != nil || strings.Contains(script, "/") {
			return l.fail(id, "script", "%q: no such file in %s", script, base)
		}
		sp = found
	}
	a.Command = append(append(append([]string{interp}, interpArgs...), sp), args...)
	a.Path = ip
	return nil
}

// program resolves a script that runs as a program of its own: a path
// (relative to base), a file in base, or a command in PATH.
func program(base, script string) (string, error) {
	p := script
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	if st, ok := exists(p); ok && !st.IsDir() {
		if st.Mode()&0o111 == 0 {
			return "", errors.New("is not executable (chmod +x, or set interpreter)")
		}
		return p, nil
	}
	if strings.Contains(script, "/") {
		return "", fmt.Errorf("no such file in %s", base)
	}
	found, err := exec.LookPath(script)
	if err != nil {
		return "", fmt.Errorf("no such file in %s, and not found in PATH", base)
	}
	return found, nil
}

// asInstances reads instances: max, 0, -N, N as a number or a string.
func asInstances(v any) (appspec.Instances, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	default:
		n, err := asInt(v, strings.TrimPrefix(appspec.InstancesAccepted, "accepted: "))
		if err != nil {
			return appspec.Instances{}, err
		}
		s = strconv.Itoa(n)
	}
	spec, err := appspec.ParseInstances(s)
	if err != nil {
		return spec, invalid(v, strings.TrimPrefix(err.Error(), "accepted: "))
	}
	return spec, nil
}

// asExitCodes reads stop_exit_codes: a code or a list of codes, 0–255.
func asExitCodes(v any) ([]int, error) {
	const accepted = "an exit code from 0 to 255, or a list of them"
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	out := make([]int, 0, len(list))
	for _, e := range list {
		n, err := asInt(e, accepted)
		if err == nil && (n < 0 || n > 255) {
			err = invalid(e, accepted)
		}
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// asListen reads gm2-init's listen key: one address, a comma-separated
// string, or a list, each in --listen's forms and read by the same rule
// (appspec.ParseListen): blank items are skipped, but no address at all
// ("", ",", a list of blanks) is refused, as GM2_LISTEN=, is — an app
// without listeners leaves the key out.
func asListen(v any) ([]sockets.Spec, error) {
	var raw []string
	switch x := v.(type) {
	case string:
		raw = []string{x}
	case json.Number:
		raw = []string{string(x)}
	case []any:
		for i, e := range x {
			switch s := e.(type) {
			case string:
				raw = append(raw, s)
			case json.Number:
				raw = append(raw, string(s))
			default:
				return nil, fmt.Errorf("item %d: %w", i, invalid(e, sockets.Accepted))
			}
		}
	default:
		return nil, invalid(v, "an address, or a list of them: "+sockets.Accepted)
	}
	specs, err := appspec.ParseListen(raw...)
	var none *appspec.NoListenAddressError
	if errors.As(err, &none) {
		return nil, fmt.Errorf("invalid value %s: %w", describe(v), err)
	}
	return specs, err
}
