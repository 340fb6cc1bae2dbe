// Package procfile reads a PM2 process file — ecosystem.config.js,
// processes.json, ecosystem.yaml — into the apps gm2-init runs
// (`gm2-init --config FILE`).
//
// Teams moving from PM2 already have that file, often with an API in cluster
// mode next to a queue worker in fork mode, which they start with
// `pm2-runtime ecosystem.config.js`. Load accepts it as it is: the keys that
// map to what gm2-init does become appspec.App fields; the keys that make no
// sense in a container (watch, log files, cron_restart …) give one warning
// each that says what to do instead, and unknown keys a warning too; the
// file is never silently half-read. Anything that would make the apps run
// other than written — a missing script, instances: "abc", a syntax error,
// two apps on the same port bound differently — is one error line naming the
// file, the app and the key, before anything starts.
//
// JSON and YAML are decoded here; a .js/.cjs/.mjs file is evaluated by the
// image's node, as PM2 evaluates it, through a small loader that prints the
// exported object as JSON (see evalJS). Load must therefore run before
// gm2-init starts reaping children with wait4(-1): it waits for that node
// process itself.
package procfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/gm2-init/gm2-init/internal/echo"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Options are the command-line settings that select from the file.
type Options struct {
	// Env is --env NAME (GM2_ENV): each app's env_NAME object is merged
	// over its env, as `pm2 start ecosystem.config.js --env NAME` does.
	Env string
	// Only is --only (GM2_ONLY) split at commas (see ParseOnly): only these
	// apps are returned. Empty means all.
	Only []string
	// Node is the node binary that evaluates .js files; "" looks it up in
	// PATH.
	Node string
	// EvalTimeout bounds node's evaluation of a .js file; 0 means
	// DefaultEvalTimeout.
	EvalTimeout time.Duration
	// OnlyFrom, EnvFrom and ListenFrom name where Only, Env and the
	// template's Listen came from, for messages: the flag the user typed or
	// the GM2_* variable (config.Source). "" means the flag (--only, --env,
	// --listen).
	OnlyFrom, EnvFrom, ListenFrom string
}

// from is name, or the flag when name is "".
func from(name, flag string) string {
	if name == "" {
		return flag
	}
	return name
}

// Error is a bad process file (or a bad --only/--env against it): gm2-init
// exits with status 2 before starting anything. Its text is one line: the
// file, the app (by name, or apps[i] while the name is unknown), the key,
// and what is wrong with the accepted forms.
type Error struct {
	File string
	App  string // `app "api"`, `apps[1]`, or "" for the file as a whole
	Key  string // "instances", "env.PORT", "--only" or "GM2_ONLY" (Options.OnlyFrom), or ""
	Msg  string
}

func (e *Error) Error() string {
	parts := []string{e.File}
	if e.App != "" {
		parts = append(parts, e.App)
	}
	if e.Key != "" {
		parts = append(parts, e.Key)
	}
	return echo.Line(strings.Join(append(parts, e.Msg), ": "))
}

// Warning is one key gm2-init does not use, with the apps that have it and
// what to do instead. Every such key gives one Warning, however many apps
// carry it.
type Warning struct {
	Key  string
	Apps []string // names (or apps[i]); empty for a top-level key or an option
	Msg  string
}

func (w Warning) String() string {
	s := w.Key
	if len(w.Apps) > 0 {
		s += " (" + strings.Join(w.Apps, ", ") + ")"
	}
	return echo.Line(s + ": " + w.Msg)
}

// ParseOnly splits --only's value at commas and blanks, as PM2 splits it.
func ParseOnly(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// Load reads the process file at path and returns its apps, in file order,
// each starting from template — the values of gm2-init's flags and GM2_*
// variables, which are therefore the defaults of every app — with the
// file's keys applied. An *Error means exit status 2.
//
// Instance counts stay as written (appspec.Instances); resolve them with
// appspec.Split once the usable CPUs are known.
func Load(path string, template appspec.App, opts Options) ([]appspec.App, []Warning, error) {
	return LoadContext(context.Background(), path, template, opts)
}

// LoadContext is Load, with ctx bounding what it waits for: the end of
// ctx ends node's evaluation of a .js file (gm2-init asked to stop while it
// starts). The error is then an *Error too.
func LoadContext(ctx context.Context, path string, template appspec.App, opts Options) ([]appspec.App, []Warning, error) {
	l := &loader{ctx: ctx, file: path, template: template, opts: opts, warned: map[string]int{}}
	apps, err := l.load()
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			err = &Error{File: path, Msg: err.Error()}
		}
		return nil, nil, err
	}
	return apps, l.warnings, nil
}

type loader struct {
	ctx      context.Context
	file     string
	template appspec.App
	opts     Options
	warnings []Warning
	warned   map[string]int // key+message → index in warnings
}

func (l *loader) fail(app, key string, format string, args ...any) error {
	return &Error{File: l.file, App: app, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func (l *loader) warn(key, app, msg string) {
	id := key + "\x00" + msg
	if i, ok := l.warned[id]; ok {
		if app != "" {
			l.warnings[i].Apps = append(l.warnings[i].Apps, app)
		}
		return
	}
	w := Warning{Key: key, Msg: msg}
	if app != "" {
		w.Apps = []string{app}
	}
	l.warned[id] = len(l.warnings)
	l.warnings = append(l.warnings, w)
}

func (l *loader) load() ([]appspec.App, error) {
	if len(l.template.Listen) > 0 {
		return nil, l.fail("", "", "%s applies to a single command; with a process file give each app its own listen key", from(l.opts.ListenFrom, "--listen"))
	}
	tree, err := l.decode()
	if err != nil {
		return nil, err
	}
	list, err := l.appList(tree)
	if err != nil {
		return nil, err
	}
	var apps []appspec.App
	var index []int // apps[k] is list[index[k]]
	skipped := map[string]bool{}
	for i, raw := range list {
		a, autostart, err := l.app(i, raw)
		if err != nil {
			return nil, err
		}
		for j, b := range apps {
			if b.Name == a.Name {
				return nil, l.fail(fmt.Sprintf("apps[%d]", i), "name", "%q is also the name of apps[%d]; give each app a distinct name", a.Name, index[j])
			}
		}
		apps = append(apps, a)
		index = append(index, i)
		if !autostart {
			skipped[a.Name] = true
		}
	}
	apps, err = l.selectApps(apps, skipped)
	if err != nil {
		return nil, err
	}
	if l.opts.Env != "" {
		l.checkEnvUsed(list)
	}
	if err := l.checkListen(apps); err != nil {
		return nil, err
	}
	fixed := 0
	for _, a := range apps {
		if a.ExecMode == appspec.Fork || a.Instances.Relative {
			fixed++
		} else {
			fixed += a.Instances.N
		}
	}
	if fixed > appspec.MaxWorkers {
		return nil, l.fail("", "instances", "the apps ask for at least %d workers together; at most %d run under one gm2-init", fixed, appspec.MaxWorkers)
	}
	return apps, nil
}

func (l *loader) decode() (any, error) {
	f, ok := formatOf(l.file)
	if !ok {
		return nil, l.fail("", "", "unknown process file type; accepted: a file ending in %s", acceptedExts)
	}
	var b []byte
	var err error
	if f == formatJS {
		b, err = evalJS(l.ctx, l.file, l.opts.Node, l.opts.EvalTimeout)
		if err != nil {
			return nil, l.fail("", "", "%s", err.Error())
		}
		f = formatJSON
	} else if b, err = readFile(l.file); err != nil {
		return nil, l.fail("", "", "%s", err.Error())
	}
	var tree any
	if f == formatYAML {
		tree, err = decodeYAML(b)
	} else {
		tree, err = decodeJSON(b)
	}
	if err != nil {
		return nil, l.fail("", "", "%s", err.Error())
	}
	return tree, nil
}

// appList finds the apps as PM2 does: the apps key (or pm2), else the file
// itself as one app, or as a list of apps.
func (l *loader) appList(tree any) ([]any, error) {
	var apps any
	switch t := tree.(type) {
	case map[string]any:
		key := ""
		for _, k := range []string{"apps", "pm2"} {
			if v, ok := t[k]; ok {
				key, apps = k, v
				break
			}
		}
		if key == "" {
			// A single app, as PM2 accepts it.
			for _, k := range []string{"script", "cmd", "command", "name"} {
				if hasKey(t, k) {
					return []any{t}, nil
				}
			}
			return nil, l.fail("", "", "no apps key (expected an object with apps: [...])")
		}
		for _, k := range sortedKeys(t) {
			if k == key {
				continue
			}
			if msg, ok := topLevel[k]; ok {
				l.warn(k, "", msg)
			} else {
				l.warn(k, "", "unknown top-level key, ignored (gm2-init reads apps)")
			}
		}
		if apps == nil {
			return nil, l.fail("", key, "no app (expected a list of apps)")
		}
	case []any:
		apps = t
	case nil:
		return nil, l.fail("", "", "no configuration (expected an object with apps: [...])")
	default:
		return nil, l.fail("", "", "holds %s; expected an object with apps: [...]", describe(tree))
	}
	switch a := apps.(type) {
	case []any:
		if len(a) == 0 {
			return nil, l.fail("", "apps", "no app (the list is empty)")
		}
		return a, nil
	case map[string]any:
		return []any{a}, nil
	}
	return nil, l.fail("", "apps", "%s; accepted: a list of apps", invalid(apps, "a list of apps").Error())
}

// selectApps applies --only and autostart: false.
func (l *loader) selectApps(apps []appspec.App, skipped map[string]bool) ([]appspec.App, error) {
	if len(l.opts.Only) > 0 {
		names := make([]string, len(apps))
		byName := map[string]bool{}
		for i, a := range apps {
			names[i] = a.Name
			byName[a.Name] = true
		}
		want := map[string]bool{}
		for _, n := range l.opts.Only {
			if !byName[n] {
				return nil, l.fail("", from(l.opts.OnlyFrom, "--only"), "no app named %q (the file has %s)", n, strings.Join(names, ", "))
			}
			want[n] = true
		}
		var out []appspec.App
		for _, a := range apps {
			if want[a.Name] {
				out = append(out, a)
			}
		}
		return out, nil
	}
	var out []appspec.App
	for _, a := range apps {
		if skipped[a.Name] {
			l.warn("autostart", fmt.Sprintf("app %q", a.Name), "autostart: false — the app is not started (name it in --only to start it)")
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, l.fail("", "autostart", "every app has autostart: false; nothing would run (name the apps to start in --only)")
	}
	return out, nil
}

// checkEnvUsed warns when no app has env_NAME for --env NAME: most likely
// a typo, and PM2 warns too.
func (l *loader) checkEnvUsed(list []any) {
	key := "env_" + l.opts.Env
	for _, raw := range list {
		if m, ok := raw.(map[string]any); ok {
			if _, ok := m[key]; ok {
				return
			}
		}
	}
	l.warn(from(l.opts.EnvFrom, "--env"), "", fmt.Sprintf("no app has %s; only env applies", key))
}

// checkListen refuses two apps (or one app twice) binding overlapping
// addresses differently. (An app on the health port is refused by main,
// with the rule of config.HealthClash: the health address is gm2-init's
// own setting, not the file's.) The same address
// in two apps (sockets.Same) is one socket shared by both, as two PM2
// cluster apps on one port share their master's handle: the caller binds it
// once and passes it to both apps' workers.
func (l *loader) checkListen(apps []appspec.App) error {
	type owner struct {
		app  string
		spec sockets.Spec
	}
	var seen []owner
	for _, a := range apps {
		id := fmt.Sprintf("app %q", a.Name)
		for i, s := range a.Listen {
			for _, t := range a.Listen[:i] {
				if sockets.Overlap(s, t) {
					return l.fail(id, "listen", "%q and %q bind the same address", t.Raw, s.Raw)
				}
			}
			for _, o := range seen {
				if o.app != a.Name && sockets.Overlap(s, o.spec) && !sockets.Same(s, o.spec) {
					return l.fail(id, "listen", "%q and app %q's %q bind the same port differently; give both apps the same address to share one socket, or different ports", s.Raw, o.app, o.spec.Raw)
				}
			}
		}
		if err := sockets.UniqueNames(a.Listen); err != nil {
			return l.fail(id, "listen", "%s", err.Error())
		}
		for _, s := range a.Listen {
			seen = append(seen, owner{a.Name, s})
		}
	}
	return nil
}

// exists reports whether a path exists (for messages about cwd and script).
func exists(p string) (os.FileInfo, bool) {
	st, err := os.Stat(p)
	return st, err == nil
}
