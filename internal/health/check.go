package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/gm2-init/gm2-init/internal/sockets"
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
	host, target, err := checkTarget(addr, path)
	if err != nil {
		return err
	}
	url := "http://" + host + target
	if timeout <= 0 {
		timeout = defaultCheckTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = fetch(ctx, host, target, url)
	if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		// The connection's deadline is the context's, and it can fire
		// before the context's own timer: either way this is the
		// timeout, which says more than "i/o timeout".
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return fmt.Errorf("health check %s: no answer within %s: %w", url, timeout, cause)
	}
	return err
}

// fetch performs one GET of target from host on a connection of its own,
// with the HTTP/1.1 client half of http1.go: one request, then the status
// line, the header fields and, on failure, the first line of the body, all
// bounded. url is target's URL, for the errors.
func fetch(ctx context.Context, host, target, url string) error {
	ta, err := sockets.StdlibTCPAddr(host)
	if err != nil {
		return fmt.Errorf("health check %s: %w", url, err)
	}
	conn, err := sockets.DialTCP(ctx, ta)
	if err != nil {
		return fmt.Errorf("health check %s: %w", url, err)
	}
	defer conn.Close()
	// The deadline bounds a server that accepts and never answers; the
	// AfterFunc also honours a cancellation before the deadline.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(appendRequest(nil, host, target)); err != nil {
		return fmt.Errorf("health check %s: send request: %w", url, err)
	}
	st, err := readStatus(bufio.NewReaderSize(conn, maxResponseLine))
	if err != nil {
		return fmt.Errorf("health check %s: read response: %w", url, err)
	}
	// 3xx is success and is not followed, as for the kubelet.
	if st.code >= 200 && st.code < 400 {
		return nil
	}
	if st.firstLine == "" {
		return fmt.Errorf("health check %s: %s", url, st.text)
	}
	return fmt.Errorf("health check %s: %s: %s", url, st.text, st.firstLine)
}

// checkURL builds the URL that Check requests.
func checkURL(addr, path string) (string, error) {
	host, target, err := checkTarget(addr, path)
	if err != nil {
		return "", err
	}
	return "http://" + host + target, nil
}

// checkTarget returns the host:port that Check connects to and the request
// target ("/path?query") it sends.
func checkTarget(addr, path string) (host, target string, err error) {
	if addr == "" || strings.EqualFold(addr, "off") {
		return "", "", errors.New("health check: health endpoints are disabled (--health-addr off)")
	}
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("health check: address %q: %w", addr, err)
	}
	if port == "" {
		return "", "", fmt.Errorf("health check: address %q has no port", addr)
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
	}
	if path == "" {
		path = "/livez"
	} else if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	// The path goes on the request line as is: a space or a line break
	// would split it, and a fragment is never sent.
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return "", "", fmt.Errorf("health check: path %q: invalid character %q at %d", path, c, i)
		}
	}
	return net.JoinHostPort(h, port), path, nil
}
