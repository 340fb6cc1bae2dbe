package spawn

import (
	"time"
)

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
