// Package logsinktest has the writer that the tests of gm2-init's log
// (internal/logsink, and main's log setup) write to: one whose Write blocks
// while its gate is held, as write(2) to a pipe nobody reads does. Only
// tests import it.
package logsinktest

import (
	"slices"
	"sync"
)

// StalledWriter records each Write as one line; while Gate is held, Write
// blocks.
type StalledWriter struct {
	Gate  sync.Mutex
	Calls chan struct{} // one per Write that began

	mu    sync.Mutex
	lines []string
}

// NewStalledWriter returns a writer whose gate is open.
func NewStalledWriter() *StalledWriter { return &StalledWriter{Calls: make(chan struct{}, 4096)} }

func (w *StalledWriter) Write(p []byte) (int, error) {
	w.Calls <- struct{}{}
	w.Gate.Lock()
	defer w.Gate.Unlock()
	w.mu.Lock()
	w.lines = append(w.lines, string(p))
	w.mu.Unlock()
	return len(p), nil
}

// Written returns the lines written so far.
func (w *StalledWriter) Written() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}
