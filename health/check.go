package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// defaultCheckTimeout bounds Check when the caller gives no timeout: a
// HEALTHCHECK command that hangs is otherwise cut only by Docker's own
// --timeout (30 s by default), long after the answer stopped mattering.
const defaultCheckTimeout = 5 * time.Second

// Check GETs http://host:port<path> from the health address addr, for a
// Docker HEALTHCHECK in images that have no curl (gm2-init healthcheck).
//
// A wildcard host (":9000", "0.0.0.0:9000", "[::]:9000") is reached through
// 127.0.0.1: the server listens on every interface and loopback is the one
// that always exists (a wildcard IPv6 listener in Go accepts IPv4 too). A
// specific host is used as is, since the server listens only there.
//
// It returns nil on 2xx and 3xx (redirects are not followed), as the kubelet
// counts them; otherwise an error with the status and the first line of the
// body, which for /livez and /readyz is the first failed check. Proxy
// variables do not apply: a health check must reach this container, not a
// proxy. timeout ≤ 0 means 5 s.
func Check(ctx context.Context, addr, path string, timeout time.Duration) error {
	target, err := checkURL(addr, path)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = defaultCheckTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = fetch(ctx, target)
	if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		// The connection's deadline is the context's, and it can fire
		// before the context's own timer: either way this is the
		// timeout, which says more than "i/o timeout".
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return fmt.Errorf("health check %s: no answer within %s: %w", target, timeout, cause)
	}
	return err
}

// fetch performs one GET on its own connection. It writes the request and
// reads the response with net/http's Request.Write and ReadResponse instead
// of an http.Client: the client's Transport (and its HTTP/2 half) would add
// half a megabyte to a binary whose size matters, for one request over
// loopback that needs no pooling, proxy or redirect handling.
func fetch(ctx context.Context, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("health check %s: %w", target, err)
	}
	req.Close = true // one request per connection: no keep-alive to manage
	req.Header.Set("User-Agent", "gm2-init-healthcheck")

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", req.URL.Host)
	if err != nil {
		return fmt.Errorf("health check %s: %w", target, err)
	}
	defer conn.Close()
	// The deadline bounds a server that accepts and never answers; the
	// AfterFunc also honours a cancellation before the deadline.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := req.Write(conn); err != nil {
		return fmt.Errorf("health check %s: send request: %w", target, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("health check %s: read response: %w", target, err)
	}
	defer resp.Body.Close()
	// 3xx is success and is not followed, as for the kubelet.
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return nil
	}
	line := firstLine(io.LimitReader(resp.Body, 1<<10))
	if line == "" {
		return fmt.Errorf("health check %s: %s", target, resp.Status)
	}
	return fmt.Errorf("health check %s: %s: %s", target, resp.Status, line)
}

// checkURL builds the URL that Check requests.
func checkURL(addr, path string) (string, error) {
	if addr == "" || strings.EqualFold(addr, "off") {
		return "", errors.New("health check: health endpoints are disabled (--health-addr off)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("health check: address %q: %w", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("health check: address %q has no port", addr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if path == "" {
		path = "/livez"
	} else if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// firstLine returns the first non-empty line of r, trimmed.
func firstLine(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			return l
		}
	}
	return ""
}
