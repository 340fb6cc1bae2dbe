package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/notify"
)

// logged returns the level and message of each line of buf.
func logged(t *testing.T, buf *bytes.Buffer) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var line struct{ Level, Message string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, line.Level+": "+line.Message)
	}
	return out
}

// What gm2-init took from its parent is said once the logger exists, and
// nothing when there was nothing.
func TestFromParentLog(t *testing.T) {
	var buf bytes.Buffer
	fromParent{}.log(zerolog.New(&buf))
	if got := logged(t, &buf); len(got) != 0 {
		t.Errorf("nothing taken: logged %q", got)
	}
	buf.Reset()
	fromParent{closedFDs: []int{7}, fdErr: errors.New("EBADF"), ignored: "LISTEN_PID=1 is not gm2-init's pid"}.log(zerolog.New(&buf))
	want := []string{
		"info: closed descriptors inherited from the parent process, so that workers do not inherit them",
		"warn: some inherited descriptors could not be marked close-on-exec; workers may inherit them",
		"info: LISTEN_FDS is not for gm2-init; its sockets are not taken over",
	}
	if got := logged(t, &buf); !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// gm2-init's own supervisor: none without NOTIFY_SOCKET (a WATCHDOG_USEC
// alone is a warning); with it, a Parent and the watchdog interval.
func TestDialParent(t *testing.T) {
	var buf bytes.Buffer
	if p, every := dialParent(upstreamEnv{}, zerolog.New(&buf)); p != nil || every != 0 || buf.Len() != 0 {
		t.Errorf("no NOTIFY_SOCKET: %v, %v, log %s", p, every, buf.String())
	}
	if p, every := dialParent(upstreamEnv{watchdog: "2000000"}, zerolog.New(&buf)); p != nil || every != 0 ||
		!slices.Equal(logged(t, &buf), []string{"warn: WATCHDOG_USEC is set but NOTIFY_SOCKET is not: no watchdog pings"}) {
		t.Errorf("WATCHDOG_USEC alone: %v, %v, log %s", p, every, buf.String())
	}
	buf.Reset()
	path := filepath.Join(t.TempDir(), "notify")
	p, every := dialParent(upstreamEnv{notify: path, watchdog: "2000000", watchdogPid: itoa(os.Getpid())}, zerolog.New(&buf))
	if p == nil {
		t.Fatalf("NOTIFY_SOCKET=%s: no Parent; log %s", path, buf.String())
	}
	defer p.Close()
	if every <= 0 || every >= 2*time.Second {
		t.Errorf("watchdog every %v, want a positive interval under WATCHDOG_USEC's 2 s", every)
	}
	if got := logged(t, &buf); len(got) != 1 || !strings.HasPrefix(got[0], "info: notifying gm2-init's own supervisor") {
		t.Errorf("logged %q", got)
	}
}

// The variables of gm2-init's own supervisor are read, then removed: no
// worker, nor the probe of node, may take them for its own (a worker of a
// gm2-init whose notify socket failed would send READY=1 to systemd).
func TestConsumeUpstreamEnv(t *testing.T) {
	vars := map[string]string{
		"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1",
		"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http",
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	if got, want := consumeUpstreamEnv(), (upstreamEnv{notify: "/run/notify", watchdog: "3000000", watchdogPid: "1"}); got != want {
		t.Errorf("read %+v, want %+v", got, want)
	}
	for k := range vars {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%s left in the environment", k, v)
		}
	}
}

// Where the workers' notify socket went when the first directory could
// not hold it: the abstract namespace is a warning (some clients cannot
// reach it), another directory a note, the first directory nothing.
func TestLogNotifyFallback(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tt := range []struct {
		dirs []string
		want string
	}{
		{[]string{t.TempDir()}, ""},
		{[]string{missing, t.TempDir()}, "info: notify socket in a fallback directory"},
		{[]string{missing}, "warn: no writable directory for the notify socket"},
	} {
		s, err := notify.Config{Dirs: tt.dirs}.Listen()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		logNotifyFallback(zerolog.New(&buf), s)
		s.Close()
		got := logged(t, &buf)
		if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)) {
			t.Errorf("dirs %q: logged %q, want %q", tt.dirs, got, tt.want)
		}
	}
}
