package main

import (
	"bytes"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/gm2-init/gm2-init/internal/appspec"
	"github.com/gm2-init/gm2-init/internal/config"
	"github.com/gm2-init/gm2-init/internal/echo"
	"github.com/gm2-init/gm2-init/internal/logsink"
)

// newLogger returns gm2-init's logger and the queue under it, whose Close
// writes out what it still holds (call it last). Lines go through a
// logsink: a log reader that stops reading must not freeze PID 1 in
// write(2).
func newLogger(cfg *config.Config) (zerolog.Logger, *logsink.Sink) {
	return newLoggerTo(cfg, os.Stderr, isTerminal(os.Stderr))
}

// newLoggerTo is newLogger on out, a terminal or not.
func newLoggerTo(cfg *config.Config, out io.Writer, terminal bool) (zerolog.Logger, *logsink.Sink) {
	format := func(w io.Writer) zerolog.Logger {
		var l zerolog.Logger
		if cfg.LogFormat == "console" {
			// Colour codes only for a terminal: in a log file or a
			// collector they are noise.
			l = zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: logTimeLayout, NoColor: !terminal})
		} else {
			l = zerolog.New(w)
		}
		return l.Level(cfg.LogLevel).With().Str("logger", "gm2-init").Logger().Hook(logTime{})
	}
	sink := logsink.New(out, logQueueBytes, func(n int) []byte {
		var b bytes.Buffer
		l := format(&b).Level(zerolog.TraceLevel) // said at every --log-level
		l.Warn().Int("dropped", n).Msg("log lines dropped: stderr took no writes (its reader stopped reading) and gm2-init's log queue was full")
		return b.Bytes()
	})
	return format(sink), sink
}

// fail writes msg as gm2-init's one line on stderr and returns status. The
// write is bounded by appspec.LogFlush: a stderr nobody reads must not keep
// a gm2-init that refuses its input from exiting (the line is then lost).
func fail(status int, msg string) int { return failTo(os.Stderr, status, msg) }

// failTo is fail on w.
func failTo(w io.Writer, status int, msg string) int {
	written := make(chan struct{})
	go func() { // left blocked in write(2) when stderr takes no writes: gm2-init exits next
		_, _ = io.WriteString(w, errorLine(msg))
		close(written)
	}()
	t := time.NewTimer(appspec.LogFlush)
	defer t.Stop()
	select {
	case <-written:
	case <-t.C:
	}
	return status
}

// failLogged is fail once the logger exists: its line is the log's last,
// after the lines queued before it, written when the log is closed.
func failLogged(logs *logsink.Sink, status int, msg string) int {
	logs.SetLast([]byte(errorLine(msg)))
	return status
}

// errorLine is the one line of an error that ends gm2-init.
func errorLine(msg string) string { return "gm2-init: " + echo.Line(msg) + "\n" }

// logQueueBytes bounds what a stalled stderr can hold up in gm2-init's
// memory: about a thousand lines.
const logQueueBytes = 256 << 10

// logTimeLayout is RFC 3339 to the millisecond: the steps of a reload or a
// restart fall within one second, and zerolog's own Timestamp cuts to the
// second (its layout is a package variable of zerolog's, left alone).
const logTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// logTime stamps every line with its time, as "time".
type logTime struct{}

func (logTime) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().Format(logTimeLayout))
}
