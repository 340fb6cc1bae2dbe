// Package config turns the command line and the GM2_* environment into a
// validated Config.
//
// Every option is declared once, as a field of Options with struct tags: the
// environment variable comes from envconfig (prefix GM2, split words), the
// flag name, short name and help text from the `flag`, `short` and `desc`
// tags. Options are read in two passes over the same struct — envconfig fills
// defaults and variables, then the flag parser overwrites only the flags that
// were actually given — which yields the precedence users expect from the
// docker CLI: flag > environment > default.
//
// Values are kept as strings until Resolve, so that a bad value is reported
// in one line that names where it came from (the flag or the variable) and
// which forms are accepted, instead of envconfig's generic conversion error.
package config

// Options is the raw, unvalidated configuration. Field names are chosen so
// that envconfig's split_words (set on every field) gives the documented
// variable names (Cpus → GM2_CPUS, CpuRounding → GM2_CPU_ROUNDING): acronyms
// in Go names would be split differently; without split_words KillTimeout
// would be GM2_KILLTIMEOUT. Never add an `envconfig:"name"` tag: it makes
// envconfig fall back to the unprefixed name, i.e. to the app's own PORT or
// LOG_LEVEL.
type Options struct {
	Instances     string `split_words:"true" default:"1" flag:"instances" short:"i" arg:"N" desc:"workers: max or 0 (every usable CPU), -N (that minus N, at least 1) or N"`
	Cpus          string `split_words:"true" default:"0" flag:"cpus" arg:"N" desc:"override the usable CPU count that max is computed from (0 = detect)"`
	CpuRounding   string `split_words:"true" default:"floor" flag:"cpu-rounding" arg:"floor|ceil" desc:"how a fractional CPU quota is rounded"`
	Listen        string `split_words:"true" flag:"listen" arg:"[NAME=]ADDR" desc:"bind ADDR once and pass it to every worker (repeatable; the variable is comma-separated): :8080, 127.0.0.1:8080, [::1]:8080, tcp://…, udp://…, unix:///path, unixgram:///path"`
	KillTimeout   string `split_words:"true" default:"8s" flag:"kill-timeout" arg:"DURATION" desc:"how long a worker may take to exit after the stop signal before SIGKILL"`
	StopSignal    string `split_words:"true" default:"SIGTERM" flag:"stop-signal" arg:"SIGNAL" desc:"signal that asks a worker to stop gracefully (TERM, INT for apps written for PM2, …)"`
	Restart       string `split_words:"true" default:"always" flag:"restart" arg:"always|on-failure|never" desc:"when an exited worker is started again"`
	MinUptime     string `split_words:"true" default:"1s" flag:"min-uptime" arg:"DURATION" desc:"a worker that lived less than this crashed on start (counts toward --max-restarts)"`
	MaxRestarts   string `split_words:"true" default:"16" flag:"max-restarts" arg:"N" desc:"consecutive short-lived restarts after which a slot is marked errored"`
	WaitReady     string `split_words:"true" default:"false" flag:"wait-ready" bool:"true" desc:"a worker is ready only when it says so (READY=1 on NOTIFY_SOCKET, or process.send('ready') in Node)"`
	ListenTimeout string `split_words:"true" default:"10s" flag:"listen-timeout" arg:"DURATION" desc:"a worker alive but not ready after this is treated as ready, with a warning"`
	ReloadBatch   string `split_words:"true" default:"1" flag:"reload-batch" arg:"N" desc:"slots replaced at a time during a rolling reload (SIGHUP)"`
	HealthAddr    string `split_words:"true" default:":9000" flag:"health-addr" arg:"ADDR|off" desc:"address of the /livez, /readyz, /status and /metrics endpoints"`
	MinReady      string `split_words:"true" default:"1" flag:"min-ready" arg:"N|all" desc:"ready workers needed for /readyz to answer 200"`
	ShutdownDelay string `split_words:"true" default:"0s" flag:"shutdown-delay" arg:"DURATION" desc:"on SIGTERM, fail /readyz at once but keep serving this long before stopping workers"`
	NodePreload   string `split_words:"true" default:"auto" flag:"node-preload" arg:"auto|on|off" desc:"let unmodified Node apps listen(PORT) on the passed sockets (auto: when there are listeners)"`
	LogLevel      string `split_words:"true" default:"info" flag:"log-level" arg:"LEVEL" desc:"debug, info, warn or error"`
	LogFormat     string `split_words:"true" default:"json" flag:"log-format" arg:"json|console" desc:"format of gm2-init's own log lines on stderr"`
}

// isWorkerSideVar tells the GM2_* names that gm2-init sets for its workers.
// They are not options, and seeing them in the environment (a nested
// gm2-init, a worker spawning a tool) is no typo.
func isWorkerSideVar(name string) bool {
	switch name {
	case "GM2_INSTANCE", "GM2_LISTENERS", "GM2_PRELOAD_FD":
		return true
	}
	return false
}
