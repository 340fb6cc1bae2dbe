package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// load is a bounded HTTP load generator on loopback: a few clients in a loop,
// half on fresh connections (so that the kernel spreads them over the
// workers and a connection can arrive while no worker accepts) and half on
// keep-alive connections (so that a worker that stops must finish the request
// it has). It stops when stop is called or after its own time limit.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// startLoad sends GET / to addr with clients goroutines until stopped, for
// at most limit.
func startLoad(addr string, clients int, limit time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &load{cancel: cancel}
	for i := 0; i < clients; i++ {
		keepAlive := i%2 == 1
		tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
		c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer tr.CloseIdleConnections()
			for ctx.Err() == nil {
				l.one(c, addr, keepAlive)
			}
		}()
	}
	return l
}

func (l *load) one(c *http.Client, addr string, keepAlive bool) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	resp, err := c.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		l.failed.Add(1)
		l.mu.Lock()
		if len(l.errs) < 10 {
			l.errs = append(l.errs, fmt.Sprintf("%v (keep-alive %v)", err, keepAlive))
		}
		l.mu.Unlock()
		return
	}
	l.ok.Add(1)
}

// stop ends the load and waits for every client.
func (l *load) stop() (ok, failed int64, errs []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// waitRequests waits until the load has made n more successful requests than
// it had, so that a test knows traffic really flows at this point.
func (l *load) waitRequests(n int64, timeout time.Duration) bool {
	target := l.ok.Load() + n
	deadline := time.Now().Add(timeout)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
