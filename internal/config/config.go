package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/sockets"
)

// Prefix is the prefix of every environment variable gm2-init reads.
const Prefix = "GM2"

// UsageError is bad input: the process exits with status 2 before binding
// or starting anything.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Config is the validated configuration.
type Config struct {
	Instances     appspec.Instances
	CPUs          int  // --cpus override, 0 = detect
	CPUCeil       bool // --cpu-rounding ceil
	Listen        []sockets.Spec
	KillTimeout   time.Duration
	StopSignal    syscall.Signal
	Restart       appspec.RestartPolicy
	MinUptime     time.Duration
	MaxRestarts   int
	WaitReady     bool
	ListenTimeout time.Duration
	ReloadBatch   int
	HealthAddr    string // "" = off
	MinReady      int    // 0 = every slot
	ShutdownDelay time.Duration
	NodePreload   string // auto, on or off
	LogLevel      zerolog.Level
	LogFormat     string // json or console

	Command []string // as given after --
	Path    string   // Command[0] resolved through PATH

	DryRun      bool
	ShowVersion bool
	ShowHelp    bool
	Warnings    []string // to log once the logger exists
}

// option is the reflected description of one Options field.
type option struct {
	field  int
	name   string // long flag name
	short  string
	env    string
	arg    string
	desc   string
	def    string
	isBool bool
}

func describe() []option {
	t := reflect.TypeOf(Options{})
	out := make([]option, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		out = append(out, option{
			field:  i,
			name:   f.Tag.Get("flag"),
			short:  f.Tag.Get("short"),
			env:    Prefix + "_" + envName(f.Name),
			arg:    f.Tag.Get("arg"),
			desc:   f.Tag.Get("desc"),
			def:    f.Tag.Get("default"),
			isBool: f.Tag.Get("bool") == "true",
		})
	}
	return out
}

// envName is envconfig's split_words rule for the plain CamelCase names
// Options uses: a word starts at each upper-case letter.
func envName(field string) string {
	var b strings.Builder
	for i, r := range field {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// origin says where a value came from, for error messages.
type origin struct {
	given map[string]bool // long flag names given on the command line
}

func (o origin) of(opt option) string {
	if o.given[opt.name] {
		if opt.short != "" {
			return "-" + opt.short + "/--" + opt.name
		}
		return "--" + opt.name
	}
	if _, ok := os.LookupEnv(opt.env); ok {
		return opt.env
	}
	return "--" + opt.name + " default"
}

// stringValue is a flag.Value writing into an Options field.
type stringValue struct {
	p      *string
	isBool bool
	repeat bool // --listen: the first use replaces the variable's value, later ones append
	used   bool
}

func (v *stringValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *stringValue) Set(s string) error {
	if v.repeat && v.used {
		*v.p += "," + s
	} else {
		*v.p = s
	}
	v.used = true
	return nil
}

func (v *stringValue) IsBoolFlag() bool { return v.isBool }

// Parse reads the environment (through envconfig) and then args (without the
// program name). A *UsageError means exit status 2.
func Parse(args []string) (*Config, error) {
	cfg, err := parse(args)
	var ue *UsageError
	if errors.As(err, &ue) {
		// Messages quote the values they show, but some come from other
		// packages (flag, os/exec): whatever a user typed, the message
		// stays one line.
		ue.Msg = oneLine(ue.Msg)
	}
	return cfg, err
}

// oneLine escapes the characters that would break a message over lines or
// garble a terminal: control characters, line separators, invalid UTF-8.
func oneLine(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

func parse(args []string) (*Config, error) {
	var o Options
	if err := envconfig.Process(Prefix, &o); err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	opts := describe()
	fs := flag.NewFlagSet("gm2-init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	rv := reflect.ValueOf(&o).Elem()
	for _, opt := range opts {
		v := &stringValue{p: rv.Field(opt.field).Addr().Interface().(*string), isBool: opt.isBool, repeat: opt.name == "listen"}
		fs.Var(v, opt.name, opt.desc)
		if opt.short != "" {
			fs.Var(v, opt.short, opt.desc)
		}
	}
	cfg := &Config{}
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "")
	fs.BoolVar(&cfg.ShowVersion, "version", false, "")
	fs.BoolVar(&cfg.ShowHelp, "help", false, "")
	fs.BoolVar(&cfg.ShowHelp, "h", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, &UsageError{Msg: flagError(err)}
	}
	if cfg.ShowHelp || cfg.ShowVersion {
		return cfg, nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		for _, opt := range opts {
			if f.Name == opt.name || (opt.short != "" && f.Name == opt.short) {
				given[opt.name] = true
			}
		}
	})
	if err := resolve(cfg, &o, opts, origin{given: given}); err != nil {
		return nil, err
	}
	cfg.Command = fs.Args()
	if len(cfg.Command) == 0 {
		return nil, &UsageError{Msg: "missing command: usage is gm2-init [flags] -- COMMAND [ARGS...] (see gm2-init -h)"}
	}
	path, err := exec.LookPath(cfg.Command[0])
	if err != nil {
		return nil, &UsageError{Msg: fmt.Sprintf("command %q: %s", cfg.Command[0], lookPathReason(cfg.Command[0], err))}
	}
	cfg.Path = path
	cfg.Warnings = append(cfg.Warnings, unknownVars(opts)...)
	return cfg, nil
}

func lookPathReason(name string, err error) string {
	switch {
	case errors.Is(err, exec.ErrNotFound):
		// LookPath skips the files it cannot execute: say so when that is
		// why nothing was found.
		if !strings.Contains(name, "/") {
			for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
				if dir == "" {
					continue
				}
				p := filepath.Join(dir, name)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					return fmt.Sprintf("found as %q in PATH, but it is not executable (chmod +x, or run it through its interpreter)", p)
				}
			}
		}
		return "not found in PATH (give a path or install it in the image)"
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return "is not executable (chmod +x, or run it through its interpreter)"
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return "no such file"
	}
	return err.Error()
}

// flagError rewrites the standard flag package's messages into one line that
// points at the help.
func flagError(err error) string {
	msg := err.Error()
	if arg, ok := strings.CutPrefix(msg, "bad flag syntax: "); ok {
		return fmt.Sprintf("bad flag syntax %q (see gm2-init -h; put the command after --)", arg)
	}
	if strings.HasPrefix(msg, "flag provided but not defined: ") {
		name := strings.TrimLeft(strings.TrimPrefix(msg, "flag provided but not defined: "), "-")
		return "unknown flag " + dashed(name) + " (see gm2-init -h; put the command after --)"
	}
	if strings.HasPrefix(msg, "flag needs an argument: ") {
		name := strings.TrimLeft(strings.TrimPrefix(msg, "flag needs an argument: "), "-")
		return "flag " + dashed(name) + " needs a value (see gm2-init -h)"
	}
	return msg + " (see gm2-init -h)"
}

// dashed spells a flag name the way the help does: -i, --instances. A name
// that is not plain text (it comes from the command line) is quoted.
func dashed(name string) string {
	d := "--" + name
	if len(name) == 1 {
		d = "-" + name
	}
	if q := strconv.Quote(d); q[1:len(q)-1] != d {
		return q
	}
	return d
}

func resolve(cfg *Config, o *Options, opts []option, org origin) error {
	byName := map[string]option{}
	for _, opt := range opts {
		byName[opt.name] = opt
	}
	bad := func(name, value, accepted string) error {
		return &UsageError{Msg: fmt.Sprintf("%s: invalid value %q: %s", org.of(byName[name]), value, accepted)}
	}
	var err error
	if cfg.Instances, err = appspec.ParseInstances(o.Instances); err != nil {
		return bad("instances", o.Instances, err.Error())
	}
	if cfg.CPUs, err = strconv.Atoi(strings.TrimSpace(o.Cpus)); err != nil || cfg.CPUs < 0 {
		return bad("cpus", o.Cpus, "accepted: a whole number of CPUs ≥ 1, or 0 to detect")
	}
	switch strings.ToLower(strings.TrimSpace(o.CpuRounding)) {
	case "floor":
	case "ceil":
		cfg.CPUCeil = true
	default:
		return bad("cpu-rounding", o.CpuRounding, "accepted: floor or ceil")
	}
	for _, part := range strings.Split(o.Listen, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		s, err := sockets.ParseSpec(part)
		if err != nil {
			return &UsageError{Msg: fmt.Sprintf("%s: %v", org.of(byName["listen"]), err)}
		}
		cfg.Listen = append(cfg.Listen, s)
	}
	if err := checkDistinct(cfg.Listen); err != nil {
		return &UsageError{Msg: fmt.Sprintf("%s: %v", org.of(byName["listen"]), err)}
	}
	durations := []struct {
		name string
		raw  string
		dst  *time.Duration
		min  time.Duration
	}{
		{"kill-timeout", o.KillTimeout, &cfg.KillTimeout, time.Millisecond},
		{"min-uptime", o.MinUptime, &cfg.MinUptime, 0},
		{"listen-timeout", o.ListenTimeout, &cfg.ListenTimeout, time.Millisecond},
		{"shutdown-delay", o.ShutdownDelay, &cfg.ShutdownDelay, 0},
	}
	for _, d := range durations {
		v, err := ParseDuration(d.raw)
		if err == nil && v < d.min {
			err = fmt.Errorf("accepted: a duration of at least %v", d.min)
		}
		if err != nil {
			return bad(d.name, d.raw, err.Error())
		}
		*d.dst = v
	}
	if cfg.StopSignal, err = ParseSignal(o.StopSignal); err != nil {
		return bad("stop-signal", o.StopSignal, err.Error())
	}
	if cfg.Restart, err = appspec.ParseRestartPolicy(o.Restart); err != nil {
		return bad("restart", o.Restart, "accepted: always, on-failure or never")
	}
	if cfg.MaxRestarts, err = strconv.Atoi(strings.TrimSpace(o.MaxRestarts)); err != nil || cfg.MaxRestarts < 0 {
		return bad("max-restarts", o.MaxRestarts, "accepted: a whole number ≥ 0")
	}
	if cfg.WaitReady, err = ParseBool(o.WaitReady); err != nil {
		return bad("wait-ready", o.WaitReady, err.Error())
	}
	if cfg.ReloadBatch, err = strconv.Atoi(strings.TrimSpace(o.ReloadBatch)); err != nil || cfg.ReloadBatch < 1 {
		return bad("reload-batch", o.ReloadBatch, "accepted: a whole number ≥ 1")
	}
	if cfg.HealthAddr, err = parseHealthAddr(o.HealthAddr); err != nil {
		return bad("health-addr", o.HealthAddr, err.Error())
	}
	if l, clash := checkHealthAddr(cfg.HealthAddr, cfg.Listen); clash {
		return &UsageError{Msg: fmt.Sprintf("%s %q and %s %q bind the same address; give one of them another port (or --health-addr off)",
			org.of(byName["health-addr"]), cfg.HealthAddr, org.of(byName["listen"]), l.Raw)}
	}
	switch v := strings.ToLower(strings.TrimSpace(o.MinReady)); v {
	case "all":
		cfg.MinReady = 0
	default:
		if cfg.MinReady, err = strconv.Atoi(v); err != nil || cfg.MinReady < 1 {
			return bad("min-ready", o.MinReady, "accepted: a whole number ≥ 1, or all")
		}
	}
	switch v := strings.ToLower(strings.TrimSpace(o.NodePreload)); v {
	case "auto", "on", "off":
		cfg.NodePreload = v
	default:
		return bad("node-preload", o.NodePreload, "accepted: auto, on or off")
	}
	if cfg.LogLevel, err = zerolog.ParseLevel(strings.ToLower(strings.TrimSpace(o.LogLevel))); err != nil || o.LogLevel == "" {
		return bad("log-level", o.LogLevel, "accepted: debug, info, warn or error")
	}
	switch v := strings.ToLower(strings.TrimSpace(o.LogFormat)); v {
	case "json", "console":
		cfg.LogFormat = v
	default:
		return bad("log-format", o.LogFormat, "accepted: json or console")
	}
	return nil
}

// checkDistinct rejects two listeners whose addresses overlap: the second
// bind would fail with a confusing EADDRINUSE ("another process listens
// there") when the other listener is gm2-init's own.
func checkDistinct(specs []sockets.Spec) error {
	for i, a := range specs {
		for _, b := range specs[:i] {
			if overlap(a, b) {
				return fmt.Errorf("%q and %q bind the same address", b.Raw, a.Raw)
			}
		}
	}
	return nil
}

func isUnix(s sockets.Spec) bool {
	return s.Network == sockets.Unix || s.Network == sockets.Unixgram
}

// overlap tells whether binding both specs fails with EADDRINUSE: the same
// socket path, or the same network and port (not 0, which the kernel picks)
// on addresses that intersect. It follows how sockets.Bind binds: :PORT is
// dual-stack, an explicit [::] is IPv6 only, localhost is one loopback.
func overlap(a, b sockets.Spec) bool {
	switch {
	case isUnix(a) || isUnix(b):
		return isUnix(a) && isUnix(b) && a.Addr == b.Addr
	case a.Network != b.Network || a.Port() == 0 || a.Port() != b.Port():
		return false
	}
	a4, a6 := coverage(a)
	b4, b6 := coverage(b)
	return meet(a4, b4) || meet(a6, b6)
}

// coverage returns the local address a TCP/UDP spec binds in each family:
// nil for none, the unspecified address for every one.
func coverage(s sockets.Spec) (v4, v6 net.IP) {
	host, _, _ := net.SplitHostPort(s.Addr)
	switch {
	case host == "localhost" && s.Family == "6":
		return nil, net.IPv6loopback
	case host == "localhost":
		return net.IPv4(127, 0, 0, 1).To4(), nil
	case host == "" && s.Family == "4":
		return net.IPv4zero.To4(), nil
	case host == "" && s.Family == "6":
		return nil, net.IPv6unspecified
	case host == "":
		return net.IPv4zero.To4(), net.IPv6unspecified
	}
	ip := net.ParseIP(host)
	if ip4 := ip.To4(); ip4 != nil {
		return ip4, nil
	}
	return nil, ip
}

func meet(x, y net.IP) bool {
	return x != nil && y != nil && (x.IsUnspecified() || y.IsUnspecified() || x.Equal(y))
}

// checkHealthAddr rejects a health endpoint on a port a TCP listener
// already takes (--listen :9000 with the default --health-addr :9000),
// which would otherwise fail only after the workers started.
func checkHealthAddr(addr string, listen []sockets.Spec) (sockets.Spec, bool) {
	if addr == "" {
		return sockets.Spec{}, false
	}
	h, err := sockets.ParseSpec("tcp://" + addr)
	if err != nil {
		return sockets.Spec{}, false
	}
	for _, l := range listen {
		if overlap(h, l) {
			return l, true
		}
	}
	return sockets.Spec{}, false
}

func parseHealthAddr(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "off") {
		return "", nil
	}
	const accepted = "accepted: off, :PORT, HOST:PORT or [IPv6]:PORT with PORT 0–65535"
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", errors.New(accepted)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", errors.New(accepted)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return "", errors.New(accepted)
	}
	return v, nil
}

// ParseDuration accepts Go durations ("8s", "1m30s", "500ms"). A bare number
// is refused with a hint, because PM2's kill_timeout is in milliseconds and
// a silent guess in either direction would be wrong. Zero needs no unit.
func ParseDuration(s string) (time.Duration, error) {
	const accepted = "accepted: a duration such as 500ms, 8s or 1m30s"
	v := strings.TrimSpace(s)
	if isDecimal(v) {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f == 0 {
			return 0, nil
		}
		var forms []string
		for _, unit := range []string{"s", "ms"} {
			if _, err := time.ParseDuration(v + unit); err == nil {
				forms = append(forms, v+unit)
			}
		}
		if len(forms) == 0 {
			return 0, errors.New(accepted)
		}
		return 0, fmt.Errorf("accepted: a duration with a unit, such as %s", strings.Join(forms, " or "))
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errors.New(accepted)
	}
	return d, nil
}

// isDecimal tells a bare unsigned number: digits with at most one '.'.
func isDecimal(v string) bool {
	digits, dots := 0, 0
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// ParseBool accepts the usual spellings of a switch.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off", "":
		return false, nil
	}
	return false, errors.New("accepted: true or false")
}

// unknownVars lists GM2_* variables that no option reads: most likely typos
// (GM2_INSTANCE for GM2_INSTANCES). A warning, not an error: gm2-init sets
// some GM2_* names for its own workers, and a newer deployment may set an
// option an older binary does not know.
func unknownVars(opts []option) []string {
	known := map[string]bool{}
	for _, o := range opts {
		known[o.env] = true
	}
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") && !known[name] && !isWorkerSideVar(name) {
			out = append(out, fmt.Sprintf("unknown variable %s ignored (gm2-init -h lists the GM2_* variables)", name))
		}
	}
	sort.Strings(out)
	return out
}

// Usage writes the help text.
func Usage(w io.Writer, version string) {
	fmt.Fprintf(w, "gm2-init %s — PID 1 for containers, with PM2-style cluster mode for any language\n\n", version)
	fmt.Fprintf(w, "Usage: gm2-init [flags] -- COMMAND [ARGS...]\n       gm2-init healthcheck [PATH [ADDR]]   (probe the health endpoint, for Docker HEALTHCHECK)\n\n")
	fmt.Fprintf(w, "Flags (each also read from the environment variable shown; a flag wins over the variable):\n")
	for _, o := range describe() {
		name := "    --" + o.name
		if o.short != "" {
			name = "-" + o.short + ", --" + o.name
		}
		if o.arg != "" {
			name += " " + o.arg
		}
		def := ""
		if o.def != "" {
			def = " (default " + o.def + ")"
		}
		fmt.Fprintf(w, "  %s\n      %s%s [%s]\n", name, o.desc, def, o.env)
	}
	fmt.Fprintf(w, "      --dry-run\n      print the resolved configuration as JSON and exit without starting anything\n")
	fmt.Fprintf(w, "  -h, --help\n      --version\n\nSignals: TERM/INT graceful shutdown, HUP rolling reload, TTIN/TTOU one worker more/less,\nQUIT/USR1/USR2/WINCH forwarded to every worker (QUIT then shuts down).\n")
}
