//go:build gm2testhooks

package spawn

import "context"

// FreezeLoop blocks the supervisor's loop until thaw is closed, as a loop
// stuck in a handler would be: the end-to-end tests use it to check that
// the watchdog pings to gm2-init's own supervisor stop then (and /livez
// fails). It returns true once the loop is blocked, false if ctx ends
// first (the loop is busy elsewhere or Run has returned).
//
// Only in binaries built with -tags gm2testhooks.
func (s *Supervisor) FreezeLoop(ctx context.Context, thaw <-chan struct{}) bool {
	in := make(chan struct{})
	go s.post(func() {
		close(in)
		<-thaw
	})
	select {
	case <-in:
		return true
	case <-ctx.Done():
		return false
	}
}
