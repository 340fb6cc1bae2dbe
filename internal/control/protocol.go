package control

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/gm2-init/gm2-init/internal/status"
)

// Supervisor is what the control socket asks of gm2-init's supervisor. The
// server calls it from one goroutine per connection, concurrently: each
// method must hand its work to the supervisor's own loop and wait there,
// never touch the supervisor's state from the caller's goroutine.
type Supervisor interface {
	// Snapshot is the state /status serves (it may be shared; the server
	// never modifies it).
	Snapshot() *status.Snapshot

	// Reload replaces the workers of the named apps — every app when apps
	// is empty — on the same path as SIGHUP: rolling, the new worker of a
	// slot ready before the old one gets the stop signal (a fork app, which
	// binds its own ports, is stopped and then started). It returns once
	// the reload has finished, with an error if it failed or was
	// abandoned — one that names each app that failed ("api: failed: …"),
	// shown as is after "gm2-init reload: " —; ctx bounds only the wait
	// (the client gave up, or gm2-init is stopping): the reload itself
	// goes on.
	Reload(ctx context.Context, apps []string) error

	// Scale sets the worker count of app to n, or changes it by n when
	// delta is set (+N / -N: computed by the supervisor, so that two
	// commands at once add up), and returns once the change is under way
	// (new slots started, surplus slots told to stop) with the count
	// before and after. The server checked that app exists. An error
	// tells why not (out of range, a fork app, shutting down).
	Scale(ctx context.Context, app string, n int, delta bool) (from, to int, err error)
}

// ErrUnknownApp may be wrapped by a Supervisor's error for an app name it
// does not know.
var ErrUnknownApp = errors.New("unknown app")

// request is one command, one JSON line from the client.
type request struct {
	Cmd   string   `json:"cmd"`             // "status", "reload" or "scale"
	Apps  []string `json:"apps,omitempty"`  // reload: the apps, none or "all" = every app
	App   string   `json:"app,omitempty"`   // scale: the app; "all" = the only one
	N     int      `json:"n,omitempty"`     // scale: the count, or the change with Delta
	Delta bool     `json:"delta,omitempty"` // scale +N / -N
}

// response is the server's one JSON line.
type response struct {
	OK      bool            `json:"ok"`
	Error   string          `json:"error,omitempty"`
	Message string          `json:"message,omitempty"`
	Status  json.RawMessage `json:"status,omitempty"` // the document GET /status serves
}
