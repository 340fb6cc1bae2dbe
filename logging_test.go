package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/logsink/logsinktest"
)

// logConfig is a configuration with these --log-level and --log-format.
func logConfig(level zerolog.Level, format string) *config.Config {
	c := &config.Config{}
	c.LogLevel, c.LogFormat = level, format
	return c
}

// The exit statuses of the README's table that gm2-init decides itself.
func TestExitStatuses(t *testing.T) {
	if exitRuntime != 1 || exitUsage != 2 {
		t.Errorf("runtime error %d, bad input %d; the README says 1 and 2", exitRuntime, exitUsage)
	}
}

func waitCall(t *testing.T, w *logsinktest.StalledWriter) {
	t.Helper()
	select {
	case <-w.Calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no write began within 10 s")
	}
}

// A stderr that takes no writes: gm2-init's log queue holds up to 256 KiB
// (the README's figure), and the lines dropped after it are counted in a
// warning of their own, written also at --log-level error.
func TestLogDropNote(t *testing.T) {
	w := logsinktest.NewStalledWriter()
	w.Gate.Lock()
	log, sink := newLoggerTo(logConfig(zerolog.ErrorLevel, "json"), w, false)
	pad := strings.Repeat("x", 1000)
	const sent = 400 // about 400 KB: more than the queue holds
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		log.Error().Msg("first") // the writer takes it and blocks: the rest waits
		for i := range sent {
			log.Error().Int("i", i).Str("pad", pad).Msg("fill")
		}
	}()
	select {
	case <-logged:
	case <-time.After(10 * time.Second):
		w.Gate.Unlock()
		t.Fatal("logging blocked behind a stderr that takes no writes")
	}
	w.Gate.Unlock()
	if !sink.Close(10 * time.Second) {
		t.Fatal("Close did not write out the queue")
	}
	lines := w.Written()
	var queued, kept, dropped, notes int
	for _, l := range lines[1:] {
		var m struct {
			Level, Message string
			Dropped        int
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		switch m.Message {
		case "fill":
			kept++
			queued += len(l)
		default:
			notes++
			dropped += m.Dropped
			if m.Level != "warn" || !strings.HasPrefix(m.Message, "log lines dropped") || m.Dropped == 0 {
				t.Errorf("drop note %s, want a warning with the count", l)
			}
		}
	}
	if notes != 1 || kept+dropped != sent {
		t.Errorf("%d lines kept, %d counted as dropped in %d notes; want %d in all, one note", kept, dropped, notes, sent)
	}
	if held, one := queued+len(lines[0]), len(lines[1]); held > 256<<10 || held+one <= 256<<10 {
		t.Errorf("%d bytes held (%d-byte lines behind a %d-byte one), want as many lines as 256 KiB holds", held, one, len(lines[0]))
	}
}

var consoleTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}`)

var millisecondTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`)

// The log's two formats: JSON with "logger" and "time" to the millisecond,
// or console lines with no colour codes when stderr is no terminal; both
// at --log-level's level and above.
func TestLogFormats(t *testing.T) {
	w := logsinktest.NewStalledWriter()
	log, sink := newLoggerTo(logConfig(zerolog.InfoLevel, "json"), w, false)
	log.Debug().Msg("not at info")
	log.Info().Str("k", "v").Msg("hello")
	sink.Close(10 * time.Second)
	lines := w.Written()
	if len(lines) != 1 {
		t.Fatalf("json at info: %q, want the info line alone", lines)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("json: %q: %v", lines[0], err)
	}
	if m["logger"] != "gm2-init" || m["level"] != "info" || m["message"] != "hello" || m["k"] != "v" || !millisecondTime.MatchString(m["time"]) {
		t.Errorf("json line %q", lines[0])
	}

	for _, terminal := range []bool{false, true} {
		w = logsinktest.NewStalledWriter()
		log, sink = newLoggerTo(logConfig(zerolog.WarnLevel, "console"), w, terminal)
		log.Info().Msg("not at warn")
		log.Warn().Str("k", "v").Msg("careful")
		sink.Close(10 * time.Second)
		lines = w.Written()
		if len(lines) != 1 {
			t.Fatalf("console at warn: %q, want the warning alone", lines)
		}
		l := lines[0]
		if json.Valid([]byte(l)) || !strings.Contains(l, "careful") || !strings.Contains(l, "k=") ||
			strings.Contains(l, "\x1b[") != terminal || !consoleTime.MatchString(l) {
			t.Errorf("console line (terminal %v) %q", terminal, l)
		}
	}
}

// The one line of an error that ends gm2-init: prefixed, one line however
// many the message has, ended by a newline.
func TestErrorLine(t *testing.T) {
	if got, want := errorLine("bad\nthing"), `gm2-init: bad\nthing`+"\n"; got != want {
		t.Errorf("errorLine = %q, want %q", got, want)
	}
}

// fail writes its line and returns the status; a stderr that takes no
// writes holds it up for appspec.LogFlush at most.
func TestFail(t *testing.T) {
	w := logsinktest.NewStalledWriter()
	if got := failTo(w, exitUsage, "nope"); got != exitUsage {
		t.Errorf("status %d", got)
	}
	if got := w.Written(); !slices.Equal(got, []string{"gm2-init: nope\n"}) {
		t.Errorf("written %q, want the line, written before fail returned", got)
	}
	w = logsinktest.NewStalledWriter()
	w.Gate.Lock()
	defer w.Gate.Unlock()
	returned := make(chan int, 1)
	go func() { returned <- failTo(w, exitRuntime, "stuck") }()
	select {
	case got := <-returned:
		if got != exitRuntime {
			t.Errorf("status %d", got)
		}
	case <-time.After(appspec.LogFlush + 10*time.Second):
		t.Fatal("fail blocked on a stderr that takes no writes")
	}
}

// Once the logger exists, the error is the log's last line, after the
// lines queued before it, and written once.
func TestFailLoggedIsTheLastLine(t *testing.T) {
	w := logsinktest.NewStalledWriter()
	w.Gate.Lock()
	log, sink := newLoggerTo(logConfig(zerolog.InfoLevel, "json"), w, false)
	log.Info().Msg("one")
	waitCall(t, w)
	log.Info().Msg("two")
	if got := failLogged(sink, exitRuntime, "port in use"); got != exitRuntime {
		t.Errorf("status %d", got)
	}
	w.Gate.Unlock()
	if !sink.Close(10 * time.Second) {
		t.Fatal("Close did not write out the queue")
	}
	lines := w.Written()
	if len(lines) != 3 || !strings.Contains(lines[1], `"two"`) || lines[2] != "gm2-init: port in use\n" {
		t.Errorf("written %q, want two log lines, then the error once", lines)
	}
}
