package spawn

import (
	"fmt"
	"strings"
	"time"
)

// RestartPolicy says when a worker that exited on its own is started again.
type RestartPolicy string

const (
	Always    RestartPolicy = "always"     // every exit (a server should never end)
	OnFailure RestartPolicy = "on-failure" // a non-zero status or a signal
	Never     RestartPolicy = "never"      // the slot stays empty
)

// ParseRestartPolicy accepts always, on-failure and never.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	switch p := RestartPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case Always, OnFailure, Never:
		return p, nil
	}
	return "", fmt.Errorf("unknown restart policy %q (accepted: always, on-failure, never)", s)
}

// restarts tells whether an exit with this code is followed by a restart.
func (p RestartPolicy) restarts(code int) bool {
	switch p {
	case Always:
		return true
	case OnFailure:
		return code != 0
	}
	return false
}

// Backoff bounds: the first restart after 100 ms, doubling per consecutive
// short-lived run, never more than 15 s apart.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 15 * time.Second
)

// backoff is the delay before restart number n (1-based) of a crash loop.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}
