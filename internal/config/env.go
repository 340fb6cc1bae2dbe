package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/kelseyhightower/envconfig"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/echo"
)

// readEnv reads every option's variable with envconfig, into a struct built
// from the options table: one string field per option, named after the
// variable's suffix (kill-timeout → KILL_TIMEOUT), which envconfig prefixes
// and upper-cases into GM2_KILL_TIMEOUT. The result maps each option to its
// value and whether the variable is set.
//
// The field's name is the variable, so no field needs split_words (which
// envconfig releases after v1.2.0 read with a regular expression, see the
// README's design notes) or an `envconfig:"name"` tag: with that tag
// envconfig would also read the unprefixed name, i.e. the app's own PORT or
// LOG_LEVEL, which every worker inherits. Defaults are applied by parse, not
// by a `default` tag, so that a message can tell a default from a variable.
func readEnv() (map[*option]string, error) {
	var fields []reflect.StructField
	var opts []*option
	for _, o := range options {
		if o.scope == actionScope {
			continue
		}
		fields = append(fields, reflect.StructField{
			Name: fieldName(o.long),
			Type: reflect.TypeFor[string](),
		})
		opts = append(opts, o)
	}
	v := reflect.New(reflect.StructOf(fields))
	if err := envconfig.Process(Prefix, v.Interface()); err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	out := map[*option]string{}
	for i, o := range opts {
		if _, set := os.LookupEnv(o.env()); set {
			out[o] = v.Elem().Field(i).String()
		}
	}
	return out, nil
}

// fieldName is the Go field name envconfig sees for a long flag name: the
// variable without its prefix (kill-timeout → KILL_TIMEOUT), an exported
// identifier since every long name starts with a letter.
func fieldName(long string) string {
	return strings.ToUpper(strings.ReplaceAll(long, "-", "_"))
}

// unknownVars warns about GM2_* variables that no option reads: most
// likely typos. A warning, not an error: a newer deployment may set an
// option an older binary does not know.
//
// The GM2_* variables gm2-init sets for its workers (appspec.WorkerEnvKeys)
// are no typos: seen in the environment (a gm2-init started inside a
// worker, a worker spawning a tool) they are skipped. GM2_INSTANCE is
// special: it is both what gm2-init gives each worker (its slot) and the
// likeliest typo of GM2_INSTANCES. An outer gm2-init always sets
// NODE_APP_INSTANCE to the same value next to it (appspec.FromOuterInit),
// so GM2_INSTANCE alone, or with a different NODE_APP_INSTANCE, is a typo.
func unknownVars(environ []string) []string {
	values := envMap(environ)
	known := map[string]bool{}
	var names []string
	for _, o := range options {
		if e := o.env(); e != "" {
			known[e] = true
			names = append(names, e)
		}
	}
	var out []string
	for name, value := range values {
		if !strings.HasPrefix(name, Prefix+"_") || known[name] {
			continue
		}
		if name == "GM2_INSTANCE" {
			// Empty, it sets nothing, whatever it meant.
			if value != "" && !appspec.FromOuterInit(values) {
				out = append(out, fmt.Sprintf("GM2_INSTANCE=%s ignored: gm2-init sets it for its workers (their slot number), it is no option; did you mean GM2_INSTANCES?", echo.Quote(value)))
			}
			continue
		}
		if appspec.IsWorkerEnvKey(name) {
			continue
		}
		msg := fmt.Sprintf("unknown variable %s ignored", plain(name))
		if s := suggest(name, names); s != "" {
			msg += "; did you mean " + s + "?"
		} else {
			msg += " (gm2-init -h lists the GM2_* variables)"
		}
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}

// envMap maps the names of environ to their values.
func envMap(environ []string) map[string]string {
	values := make(map[string]string, len(environ))
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		values[name] = value
	}
	return values
}

// outerInstances drops GM2_INSTANCES from env when it is the one an outer
// gm2-init set for the worker this gm2-init runs in (its worker count, not
// a -i for this one), and returns the warning that says so; "" otherwise.
// A -i on the command line overrides the variable anyway: no warning then.
func outerInstances(env map[*option]string, environ []string, given map[*option][]string) string {
	o := byLong("instances")
	v, set := env[o]
	if !set || len(given[o]) > 0 || !appspec.FromOuterInit(envMap(environ)) {
		return ""
	}
	delete(env, o)
	return fmt.Sprintf("%s=%s ignored: an outer gm2-init set it for its workers (its worker count), it is not this gm2-init's -i; give %s",
		o.env(), echo.Quote(v), o.spelling())
}

// suggest returns the known name closest to name when it is close enough
// to be a typo of it: at most 2 edits, or a plural/singular away.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(name, k, bestD); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b, or limit when it is at
// least limit (names are short; the limit only saves work).
func distance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// HealthCheckAddr is the health address `gm2-init healthcheck` probes when
// it is given none: GM2_HEALTH_ADDR as set (even empty, which is refused
// there as by the server), else --health-addr's default. The caller reads it with
// sockets.ParseHealthAddr, --health-addr's own parser.
func HealthCheckAddr() string {
	o := byLong("health-addr")
	if v, ok := os.LookupEnv(o.env()); ok {
		return v
	}
	return o.def
}
