package procfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every bad file is one line naming the file, the app and the key, and
// nothing is returned. $DIR stands for the project directory.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string // file name; its extension picks the format
		content string
		opts    Options
		want    string
	}{
		{"json syntax error", "p.json", "{\n  \"apps\": [\n    { \"script\": \"api.js\", }\n    { }\n  ]\n}\n", Options{},
			`p.json: line 4, column 5: invalid character '{' after array element`},
		{"json unterminated", "p.json", `{"apps": [`, Options{},
			`p.json: line 1, column 11: unexpected end of file`},
		{"json trailing data", "p.json", "{\"apps\": []}\n{}\n", Options{},
			`p.json: line 2, column 1: unexpected data after the top-level value`},
		{"json empty", "p.json", "  \n", Options{},
			`p.json: empty file (expected an object with apps: [...])`},
		{"yaml syntax error", "p.yaml", "apps:\n  - name: api\n    script: api.js\n    env: NODE_ENV: production\n", Options{},
			`p.yaml: line 4: mapping values are not allowed in this context (quote a value that holds ": ")`},
		{"yaml tab", "p.yml", "apps:\n\t- script: api.js\n", Options{},
			`p.yml: line 2: a tab indents this line; YAML indents with spaces`},
		{"yaml non-string key", "p.yaml", "apps:\n  - script: api.js\n    1: x\n", Options{},
			`p.yaml: line 3: apps[0]: key 1 is not a string`},
		{"unknown extension", "p.txt", "{}", Options{},
			`p.txt: unknown process file type; accepted: a file ending in .json, .yaml, .yml, .js, .cjs or .mjs`},
		{"missing file", "", "", Options{},
			`nope.json: cannot read: no such file or directory`},
		{"no apps at all", "p.json", `null`, Options{},
			`p.json: no configuration (expected an object with apps: [...])`},
		{"apps empty", "p.json", `{"apps": []}`, Options{},
			`p.json: apps: no app (the list is empty)`},
		{"apps not a list", "p.json", `{"apps": "api.js"}`, Options{},
			`p.json: apps: invalid value "api.js": accepted: a list of apps; accepted: a list of apps`},
		{"app not an object", "p.json", `{"apps": ["api.js"]}`, Options{},
			`p.json: apps[0]: invalid value "api.js": accepted: an object; each app is an object with at least a script`},
		{"missing script", "p.json", `{"apps": [{"name": "api"}]}`, Options{},
			`p.json: app "api": script: missing: give the file or command to run (script: "server.js")`},
		{"missing script, no name", "p.json", `{"apps": [{"script": "api.js"}, {"instances": 2}]}`, Options{},
			`p.json: apps[1]: script: missing: give the file or command to run (script: "server.js")`},
		{"script not a string", "p.json", `{"apps": [{"script": ["api.js"]}]}`, Options{},
			`p.json: apps[0]: script: invalid value a list: accepted: a file or command to run`},
		{"script not found", "p.json", `{"apps": [{"name": "api", "script": "nope.js"}]}`, Options{},
			`p.json: app "api": script: "nope.js": no such file in $DIR`},
		{"program not executable", "p.json", `{"apps": [{"script": "data.txt"}]}`, Options{},
			`p.json: app "data": script: "data.txt": is not executable (chmod +x, or set interpreter)`},
		{"interpreter not found", "p.json", `{"apps": [{"script": "api.js", "interpreter": "nodejs-99"}]}`, Options{},
			`p.json: app "api": interpreter: "nodejs-99": not found in PATH`},
		{"interpreter by extension not found", "p.json", `{"apps": [{"script": "main.ls"}]}`, Options{},
			`p.json: app "main": interpreter: "lsc": not found in PATH (chosen for .ls files, as PM2 does; set interpreter to change it)`},
		{"bad name", "p.json", `{"apps": [{"name": "my api", "script": "api.js"}]}`, Options{},
			`p.json: apps[0]: name: invalid value "my api": accepted: 1 to 100 characters without blanks, commas, quotes, backslashes or control characters`},
		{"duplicate names", "p.json", `{"apps": [{"name": "api", "script": "api.js"}, {"name": "api", "script": "worker.js"}]}`, Options{},
			`p.json: apps[1]: name: "api" is also the name of apps[0]; give each app a distinct name`},
		{"duplicate derived names", "p.json", `{"apps": [{"script": "api.js"}, {"script": "sub/../api.js"}]}`, Options{},
			`p.json: apps[1]: name: "api" is also the name of apps[0]; give each app a distinct name`},
		{"unknown exec_mode", "p.json", `{"apps": [{"name": "api", "script": "api.js", "exec_mode": "daemon"}]}`, Options{},
			`p.json: app "api": exec_mode: invalid value "daemon": accepted: cluster (or cluster_mode) or fork (or fork_mode)`},
		{"instances abc", "p.json", `{"apps": [{"name": "api", "script": "api.js", "instances": "abc"}]}`, Options{},
			`p.json: app "api": instances: invalid value "abc": accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to 1024)`},
		{"instances fraction", "p.yaml", "apps:\n  - name: api\n    script: api.js\n    instances: 1.5\n", Options{},
			`p.yaml: app "api": instances: invalid value 1.5: accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to 1024)`},
		{"instances too many", "p.json", `{"apps": [{"name": "api", "script": "api.js", "instances": 5000}]}`, Options{},
			`p.json: app "api": instances: invalid value 5000: accepted: max or 0 (every usable CPU), -N (usable CPUs minus N, at least 1) or N (a whole number from 1 to 1024)`},
		{"instances sum too many", "p.json", `{"apps": [{"name": "a", "script": "api.js", "instances": 1000}, {"name": "b", "script": "api.js", "instances": 1000}]}`, Options{},
			`p.json: instances: the apps ask for at least 2000 workers together; at most 1024 run under one gm2-init`},
		{"fork with instances", "p.json", `{"apps": [{"name": "w", "script": "worker.js", "exec_mode": "fork", "instances": 4}]}`, Options{},
			`p.json: app "w": instances: 4 with exec_mode fork: fork runs exactly one instance; use exec_mode cluster for 4 workers`},
		{"instances sum with a fork app", "p.json", `{"apps": [{"name": "a", "script": "api.js", "instances": 1024}, {"name": "w", "script": "worker.js", "exec_mode": "fork"}]}`, Options{},
			`p.json: instances: the apps ask for at least 1025 workers together; at most 1024 run under one gm2-init`},
		{"fork with instances -1", "p.json", `{"apps": [{"name": "w", "script": "worker.js", "exec_mode": "fork", "instances": -1}]}`, Options{},
			`p.json: app "w": instances: -1 with exec_mode fork: fork runs exactly one instance; use exec_mode cluster for -1 workers`},
		{"stop exit code above 255", "p.json", `{"apps": [{"name": "api", "script": "api.js", "stop_exit_codes": [0, 256]}]}`, Options{},
			`p.json: app "api": stop_exit_codes: invalid value 256: accepted: an exit code from 0 to 255, or a list of them`},
		{"fork with listen", "p.json", `{"apps": [{"name": "w", "script": "worker.js", "exec_mode": "fork", "listen": ":3000"}]}`, Options{},
			`p.json: app "w": listen: a fork app binds its own ports; use exec_mode cluster for gm2-init to hold them`},
		{"env not an object", "p.json", `{"apps": [{"name": "api", "script": "api.js", "env": "NODE_ENV=production"}]}`, Options{},
			`p.json: app "api": env: invalid value "NODE_ENV=production": accepted: an object of NAME: value`},
		{"env null value", "p.json", `{"apps": [{"name": "api", "script": "api.js", "env": {"TOKEN": null}}]}`, Options{},
			`p.json: app "api": env: TOKEN: invalid value null: accepted: a string, number or boolean (an empty string for an empty variable)`},
		{"env bad name", "p.json", `{"apps": [{"name": "api", "script": "api.js", "env_production": {"A=B": "1"}}]}`, Options{},
			`p.json: app "api": env_production: variable name "A=B": accepted: letters, digits and '_', not starting with a digit`},
		{"wait_ready not a bool", "p.json", `{"apps": [{"name": "api", "script": "api.js", "wait_ready": "yes"}]}`, Options{},
			`p.json: app "api": wait_ready: invalid value "yes": accepted: true or false`},
		{"kill_timeout garbage", "p.json", `{"apps": [{"name": "api", "script": "api.js", "kill_timeout": "soon"}]}`, Options{},
			`p.json: app "api": kill_timeout: invalid value "soon": accepted: milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s)`},
		{"kill_timeout negative", "p.json", `{"apps": [{"name": "api", "script": "api.js", "kill_timeout": -5}]}`, Options{},
			`p.json: app "api": kill_timeout: invalid value -5: accepted: milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s)`},
		{"listen_timeout zero", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen_timeout": 0}]}`, Options{},
			`p.json: app "api": listen_timeout: invalid value 0: accepted: milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s), from 1ms to 24h`},
		{"max_restarts negative", "p.json", `{"apps": [{"name": "api", "script": "api.js", "max_restarts": -1}]}`, Options{},
			`p.json: app "api": max_restarts: invalid value -1: accepted: a whole number from 0 to 1000000`},
		{"max_restarts above the cap (was accepted)", "p.json", `{"apps": [{"name": "api", "script": "api.js", "max_restarts": 1000001}]}`, Options{},
			`p.json: app "api": max_restarts: invalid value 1000001: accepted: a whole number from 0 to 1000000`},
		{"kill_timeout above 24h (was accepted)", "p.json", `{"apps": [{"name": "api", "script": "api.js", "kill_timeout": 86400001}]}`, Options{},
			`p.json: app "api": kill_timeout: invalid value 86400001: accepted: milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s), from 1ms to 24h`},
		{"min_uptime above 24h (was accepted)", "p.yaml", "apps:\n  - name: api\n    script: api.js\n    min_uptime: 25h\n", Options{},
			`p.yaml: app "api": min_uptime: invalid value "25h": accepted: milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s), up to 24h`},
		{"restart_delay far above 24h (was accepted)", "p.json", `{"apps": [{"name": "api", "script": "api.js", "restart_delay": "2562047h"}]}`, Options{},
			`p.json: app "api": restart_delay: invalid value "2562047h": accepted: milliseconds as a number (1600, as PM2 reads it) or a duration with a unit (1.6s, 500ms, 1m30s), up to 24h`},
		{"listen with no address (was no listener)", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": ","}]}`, Options{},
			`p.json: app "api": listen: invalid value ",": no address; accepted: [NAME=]ADDR with ADDR one of :PORT, HOST:PORT, [IPv6]:PORT, tcp://HOST:PORT, tcp4://…, tcp6://…, udp://HOST:PORT, udp4://…, udp6://…, unix:///path or unixgram:///path (PORT 0–65535), several separated by commas`},
		{"listen empty (was no listener)", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": ""}]}`, Options{},
			`p.json: app "api": listen: invalid value "": no address; accepted: [NAME=]ADDR with ADDR one of :PORT, HOST:PORT, [IPv6]:PORT, tcp://HOST:PORT, tcp4://…, tcp6://…, udp://HOST:PORT, udp4://…, udp6://…, unix:///path or unixgram:///path (PORT 0–65535), several separated by commas`},
		{"listen list of blanks (was no listener)", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": [" ", ""]}]}`, Options{},
			`p.json: app "api": listen: invalid value a list: no address; accepted: [NAME=]ADDR with ADDR one of :PORT, HOST:PORT, [IPv6]:PORT, tcp://HOST:PORT, tcp4://…, tcp6://…, udp://HOST:PORT, udp4://…, udp6://…, unix:///path or unixgram:///path (PORT 0–65535), several separated by commas`},
		{"max_memory_restart unit", "p.json", `{"apps": [{"name": "api", "script": "api.js", "max_memory_restart": "10X"}]}`, Options{},
			`p.json: app "api": max_memory_restart: invalid value "10X": accepted: a number of bytes (1048576) or a number with a K, M, G or T suffix, powers of 1024 (512K, 300M, 1G, 1.5G; 300MB, 300Mi, 300MiB alike)`},
		{"stop_exit_codes", "p.json", `{"apps": [{"name": "api", "script": "api.js", "stop_exit_codes": [0, "x"]}]}`, Options{},
			`p.json: app "api": stop_exit_codes: invalid value "x": accepted: an exit code from 0 to 255, or a list of them`},
		{"stop_exit_codes range", "p.yaml", "apps:\n  - name: api\n    script: api.js\n    stop_exit_codes: 300\n", Options{},
			`p.yaml: app "api": stop_exit_codes: invalid value 300: accepted: an exit code from 0 to 255, or a list of them`},
		{"args unterminated quote", "p.json", `{"apps": [{"name": "api", "script": "api.js", "args": "--name 'x"}]}`, Options{},
			`p.json: app "api": args: invalid value "--name 'x": an unterminated ' quote; accepted: a string (split into words like a shell, without expansion) or a list of strings`},
		{"args with an object", "p.json", `{"apps": [{"name": "api", "script": "api.js", "args": ["-p", {"x": 1}]}]}`, Options{},
			`p.json: app "api": args: item 1: invalid value an object: accepted: a string`},
		{"cwd missing", "p.json", `{"apps": [{"name": "api", "script": "api.js", "cwd": "nope"}]}`, Options{},
			`p.json: app "api": cwd: "nope" is not a directory`},
		{"instance_var", "p.json", `{"apps": [{"name": "api", "script": "api.js", "instance_var": "1X"}]}`, Options{},
			`p.json: app "api": instance_var: variable name "1X": accepted: letters, digits and '_', not starting with a digit`},
		{"port out of range", "p.json", `{"apps": [{"name": "api", "script": "api.js", "port": 70000}]}`, Options{},
			`p.json: app "api": port: invalid value 70000: accepted: a port number from 1 to 65535`},
		{"listen bad address", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": "http://:80"}]}`, Options{},
			`p.json: app "api": listen: address "http://:80": unknown scheme "http"; accepted: [NAME=]ADDR with ADDR one of :PORT, HOST:PORT, [IPv6]:PORT, tcp://HOST:PORT, tcp4://…, tcp6://…, udp://HOST:PORT, udp4://…, udp6://…, unix:///path or unixgram:///path (PORT 0–65535)`},
		{"listen twice in one app", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": [":3000", "0.0.0.0:3000"]}]}`, Options{},
			`p.json: app "api": listen: ":3000" and "0.0.0.0:3000" bind the same address`},
		{"two apps, one port, bound differently", "p.json", `{"apps": [{"name": "a", "script": "api.js", "listen": ":3000"}, {"name": "b", "script": "worker.js", "listen": "127.0.0.1:3000"}]}`, Options{},
			`p.json: app "b": listen: "127.0.0.1:3000" and app "a"'s ":3000" bind the same port differently; give both apps the same address to share one socket, or different ports`},
		{"only names no app", "p.json", `{"apps": [{"name": "api", "script": "api.js"}, {"name": "worker", "script": "worker.js"}]}`, Options{Only: []string{"api", "web"}},
			`p.json: --only: no app named "web" (the file has api, worker)`},
		{"autorestart as a string", "p.json", `{"apps": [{"name": "api", "script": "api.js", "autorestart": "false"}]}`, Options{},
			`p.json: app "api": autorestart: invalid value "false" (a string): accepted: true or false, without quotes`},
		{"wait_ready as a string", "p.json", `{"apps": [{"name": "api", "script": "api.js", "wait_ready": "true"}]}`, Options{},
			`p.json: app "api": wait_ready: invalid value "true" (a string): accepted: true or false, without quotes`},
		{"autostart as a string", "p.json", `{"apps": [{"name": "api", "script": "api.js", "autostart": " FALSE "}]}`, Options{},
			`p.json: app "api": autostart: invalid value " FALSE " (a string): accepted: true or false, without quotes`},
		{"YAML autorestart quoted", "p.yaml", "apps:\n  - name: api\n    script: api.js\n    autorestart: \"false\"\n", Options{},
			`p.yaml: app "api": autorestart: invalid value "false" (a string): accepted: true or false, without quotes`},
		{"autorestart as a number", "p.json", `{"apps": [{"name": "api", "script": "api.js", "autorestart": 0}]}`, Options{},
			`p.json: app "api": autorestart: invalid value 0: accepted: true or false`},
		{"listen names one name twice", "p.json", `{"apps": [{"name": "api", "script": "api.js", "listen": ["web=:3000", "web=:3001"]}]}`, Options{},
			`p.json: app "api": listen: name "web" is given to both "web=:3000" and "web=:3001"; give each listener its own name (LISTEN_FDNAMES tells them apart by name)`},
		{"only from GM2_ONLY names the variable", "p.json", `{"apps": [{"name": "api", "script": "api.js"}]}`, Options{Only: []string{"nope"}, OnlyFrom: "GM2_ONLY"},
			`p.json: GM2_ONLY: no app named "nope" (the file has api)`},
		{"autostart everywhere false", "p.json", `{"apps": [{"name": "api", "script": "api.js", "autostart": false}]}`, Options{},
			`p.json: autostart: every app has autostart: false; nothing would run (name the apps to start in --only)`},
		{"restart_delay and exp_backoff", "p.json", `{"apps": [{"name": "api", "script": "api.js", "restart_delay": 100, "exp_backoff_restart_delay": 100}]}`, Options{},
			`p.json: app "api": exp_backoff_restart_delay: give restart_delay or exp_backoff_restart_delay, not both (both are the least restart delay: gm2-init's restarts always back off exponentially, from 100 ms up to 15 s, and never wait less than that)`},
		{"shell command with args", "p.json", `{"apps": [{"name": "py", "script": "python3 -m http.server", "args": "8000"}]}`, Options{},
			`p.json: app "py": args: a script with blanks is run as a shell command (bash -c); put the arguments in script`},
		{"control characters stay on one line", "p.json", `{"apps": [{"name": "api", "script": "api.js", "exec_mode": "a\nb\u001b[31m"}]}`, Options{},
			`p.json: app "api": exec_mode: invalid value "a\nb\x1b[31m": accepted: cluster (or cluster_mode) or fork (or fork_mode)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := project(t)
			path := "nope.json"
			if tt.file != "" {
				write(t, dir, tt.file, tt.content)
				path = tt.file
			}
			if tt.name == "shell command with args" {
				if _, err := os.Stat("/bin/bash"); err != nil {
					t.Skip("no bash")
				}
			}
			apps, warnings, err := Load(path, template, tt.opts)
			if err == nil {
				t.Fatalf("Load = %+v, %v; want the error %q", apps, warnings, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("error %T, want *procfile.Error", err)
			}
			want := strings.ReplaceAll(tt.want, "$DIR", dir)
			if err.Error() != want {
				t.Errorf("Load error\n got %s\nwant %s", err, want)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line: %q", err)
			}
			if apps != nil || warnings != nil {
				t.Errorf("an error returned apps or warnings too: %v %v", apps, warnings)
			}
		})
	}
}

// A .js process file is evaluated by node: its exceptions, syntax errors,
// infinite loops and exits are one line each.
func TestLoadJSErrors(t *testing.T) {
	needNode(t)
	tests := []struct {
		name, file, content string
		timeout             bool
		want                string
	}{
		{"throws", "e.config.js", "const x = 1;\nthrow new Error('no DATABASE_URL');\n", false,
			`e.config.js: line 2: Error: no DATABASE_URL`},
		{"syntax error", "e.config.js", "module.exports = {\n  apps: [ { script: 'api.js' } \n  oops\n};\n", false,
			`e.config.js: line 3: SyntaxError: Unexpected identifier 'oops'`},
		{"throws a string", "e.config.cjs", "throw 'plain';\n", false,
			`e.config.cjs: threw plain`},
		{"esm throws", "e.config.mjs", "export default {};\nthrow new TypeError('bad');\n", false,
			`e.config.mjs: line 2: TypeError: bad`},
		{"exits", "e.config.js", "process.exit(3);\n", false,
			`e.config.js: node gave no configuration (it exited with status 3)`},
		{"exports nothing", "e.config.js", "const apps = [];\n", false,
			`e.config.js: no apps key (expected an object with apps: [...])`},
		{"exports undefined", "e.config.mjs", "export const x = undefined;\nexport default undefined;\n", false,
			`e.config.mjs: no apps key (expected an object with apps: [...])`},
		{"cycle", "e.config.js", "const a = {}; a.a = a; module.exports = { apps: [a] };\n", false,
			`e.config.js: the exported value cannot be converted to JSON: Converting circular structure to JSON`},
		{"loops forever", "e.config.js", "for (;;) {}\n", true,
			`e.config.js: node did not finish evaluating the file within 300ms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := project(t)
			write(t, dir, tt.file, tt.content)
			opts := Options{}
			if tt.timeout {
				opts.EvalTimeout = 300 * time.Millisecond
			}
			_, _, err := Load(tt.file, template, opts)
			if err == nil {
				t.Fatalf("Load: no error, want %q", tt.want)
			}
			got := err.Error()
			if tt.name == "cycle" {
				// V8's text goes on with the path of the cycle.
				got, _, _ = strings.Cut(got, "\\n")
				got, _, _ = strings.Cut(got, " --- ")
			}
			if got != tt.want {
				t.Errorf("Load error\n got %s\nwant %s", err, tt.want)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
}

// Without node in PATH, a .js file is a clear error.
func TestLoadJSWithoutNode(t *testing.T) {
	dir := project(t)
	write(t, dir, "e.config.js", ecosystemJS)
	t.Setenv("PATH", filepath.Join(dir, "empty"))
	_, _, err := Load("e.config.js", template, Options{})
	want := "e.config.js: a .js process file is evaluated by node, which is not in PATH (install node in the image, or write the file as .json or .yaml)"
	if err == nil || err.Error() != want {
		t.Errorf("Load error\n got %v\nwant %s", err, want)
	}
}
