package procfile

// aliases maps PM2's alternative spellings of a key (its schema's "alias"
// lists, and the cmd/command aliases of script) to the key gm2-init reads.
var aliases = map[string]string{
	"cmd":              "script",
	"command":          "script",
	"exec_interpreter": "interpreter",
	"interpreterArgs":  "interpreter_args",
	"node_args":        "interpreter_args",
	"out":              "out_file",
	"output":           "out_file",
	"out_log":          "out_file",
	"error":            "error_file",
	"err":              "error_file",
	"err_file":         "error_file",
	"err_log":          "error_file",
	"log":              "log_file",
	"cron":             "cron_restart",
	"combine_logs":     "merge_logs",
	"pid":              "pid_file",
	"user":             "uid",
}

// supported are the keys an app may have that gm2-init reads (after
// aliases; env_<NAME> keys are handled apart).
var supported = map[string]bool{
	"name": true, "script": true, "args": true, "interpreter": true, "interpreter_args": true,
	"cwd": true, "instances": true, "exec_mode": true, "env": true, "port": true,
	"wait_ready": true, "listen_timeout": true, "kill_timeout": true, "min_uptime": true,
	"max_restarts": true, "restart_delay": true, "exp_backoff_restart_delay": true,
	"autorestart": true, "autostart": true, "stop_exit_codes": true, "max_memory_restart": true,
	"instance_var": true, "listen": true,
}

// unsupported are PM2 keys that make no sense in a container, or that
// gm2-init does differently, with what to do instead. Each gives one
// warning (naming every app that has it), never an error: a file written
// for PM2 must start.
type advice struct {
	// noop, when set, tells whether the value asks for what gm2-init does
	// anyway (watch: false): the warning then only says the key can go.
	noop func(v any) bool
	msg  string
}

func isFalse(v any) bool { b, ok := v.(bool); return ok && !b }
func isTrue(v any) bool  { b, ok := v.(bool); return ok && b }

const (
	adviceWatch = "gm2-init watches no files: in a container the code changes with the image; deploy a new image, or reload the app with `gm2-init reload APP` (or SIGHUP)"
	adviceLogs  = "gm2-init writes no log files: the workers' stdout and stderr go to the container's log as they are (docker logs, kubectl logs)"
	adviceFmt   = "gm2-init never relays, merges or timestamps the workers' output; let the log collector add timestamps"
	advicePMX   = "PM2.io monitoring is not part of gm2-init: scrape /metrics (Prometheus) and read /status on the health port"
	adviceUser  = "gm2-init runs every app as the container's user: set it in the image (USER) or in Kubernetes (securityContext.runAsUser)"
)

var unsupported = map[string]advice{
	"watch":                      {isFalse, adviceWatch},
	"ignore_watch":               {nil, adviceWatch},
	"watch_options":              {nil, adviceWatch},
	"watch_delay":                {nil, adviceWatch},
	"out_file":                   {nil, adviceLogs},
	"error_file":                 {nil, adviceLogs},
	"log_file":                   {isFalse, adviceLogs},
	"disable_logs":               {isTrue, adviceLogs},
	"pid_file":                   {nil, "gm2-init writes no pid files: `gm2-init status` lists the pids"},
	"merge_logs":                 {isTrue, adviceFmt},
	"log_type":                   {nil, adviceFmt},
	"log_date_format":            {nil, adviceFmt},
	"time":                       {isFalse, adviceFmt},
	"cron_restart":               {nil, "gm2-init runs no cron: schedule `gm2-init reload APP` from outside (a Kubernetes CronJob running kubectl exec, or the host's scheduler running docker exec)"},
	"vizion":                     {isFalse, "no versioning metadata: the image is the version"},
	"post_update":                {nil, "no update hooks: the image is the version; run such steps when building it"},
	"pmx":                        {isFalse, advicePMX},
	"automation":                 {isFalse, advicePMX},
	"trace":                      {isFalse, advicePMX},
	"disable_trace":              {isTrue, advicePMX},
	"v8":                         {isFalse, advicePMX},
	"event_loop_inspector":       {isFalse, advicePMX},
	"deep_monitoring":            {isFalse, advicePMX},
	"io":                         {nil, advicePMX},
	"source_map_support":         {isFalse, "gm2-init installs no source-map hook: put --enable-source-maps in node_args"},
	"disable_source_map_support": {isTrue, "gm2-init installs no source-map hook: put --enable-source-maps in node_args"},
	"uid":                        {nil, adviceUser},
	"gid":                        {nil, adviceUser},
	"namespace":                  {nil, "gm2-init has no namespaces: it runs the apps of one file per container, known by their names"},
	"increment_var":              {nil, "not supported: derive a per-instance value from NODE_APP_INSTANCE (or GM2_INSTANCE, or instance_var); with ports shared by gm2-init, instances need no port of their own"},
	"filter_env":                 {nil, "not supported: workers inherit the container's environment; set or override variables per app in env"},
	"shutdown_with_message":      {isFalse, "no 'shutdown' message is sent: handle SIGINT or SIGTERM (with the Node preload, SIGINT handlers also run on SIGTERM)"},
	"kill_retry_time":            {nil, "gm2-init sends SIGKILL once, kill_timeout after the stop signal"},
	"treekill":                   {isTrue, "gm2-init always signals the worker's whole process group"},
	"force":                      {nil, "not needed: every app of the file starts once"},
	"append_env_to_name":         {isFalse, "not supported: the app keeps its name whatever --env says"},
	"name_prefix":                {nil, "not supported: the app keeps its name"},
	"username":                   {nil, "not used: gm2-init runs every app as the container's user"},
	"windowsHide":                {nil, "not used on Linux"},
	"write":                      {nil, "not used by gm2-init"},
	"execute_command":            {nil, "not used by gm2-init: give the program in script (with interpreter: none)"},
	"install_url":                {nil, "not used by gm2-init: install modules when building the image"},
}

// topLevel are the keys of the file itself besides apps.
var topLevel = map[string]string{
	"deploy": "pm2 deploy is not part of gm2-init: build an image and roll it out",
	"static": "pm2 serve is not part of gm2-init: serve static files from an app of your own",
}
