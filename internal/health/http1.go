package health

// This file is the HTTP/1.x wire format the health endpoints speak: reading
// and parsing a request head, writing an answer, and, for Check, writing a
// request and reading the status of the answer.
//
// It replaces net/http on purpose. Importing net/http links crypto/tls,
// crypto/x509, the FIPS 140 packages, HTTP/2, mime and more into the binary
// (about 2.5 MB of a 7 MB static binary), for five fixed GET paths that
// kubelet probes, Prometheus and Docker's HEALTHCHECK read. What they need is
// small: one request per connection, no body, a fixed set of answers. The
// subset below is strict where strictness is cheap (RFC 9112 syntax, one
// Host for HTTP/1.1, no obsolete line folding, no bare CR) and closes the
// connection after every answer, so that framing ambiguities (pipelining,
// bodies, Content-Length versus Transfer-Encoding) can never carry over into
// a second request.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// request is what routing needs from a request head.
type request struct {
	method string // case-sensitive, as RFC 9110 §9.1 says: "get" is not GET
	path   string // origin-form path, without the query; never decoded
	query  string // raw query, without the '?'; "" when there is none
	minor  int    // HTTP/1.minor: 0 or 1
}

// requestError is a request the server refuses, with the status to answer.
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{code: statusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// errHeadTooLarge is answered with 431: the head did not end within
// maxHeaderBytes.
var errHeadTooLarge = &requestError{
	code: statusHeaderTooLarge,
	msg:  fmt.Sprintf("request head larger than %d bytes", maxHeaderBytes),
}

// The status codes the server answers with.
const (
	statusOK                 = 200
	statusBadRequest         = 400
	statusNotFound           = 404
	statusMethodNotAllowed   = 405
	statusHeaderTooLarge     = 431
	statusInternalError      = 500
	statusServiceUnavailable = 503
	statusVersionUnsupported = 505
)

// reasonPhrase returns the reason phrase of the codes the server answers
// with; clients ignore it, people read it.
func reasonPhrase(code int) string {
	switch code {
	case statusOK:
		return "OK"
	case statusBadRequest:
		return "Bad Request"
	case statusNotFound:
		return "Not Found"
	case statusMethodNotAllowed:
		return "Method Not Allowed"
	case statusHeaderTooLarge:
		return "Request Header Fields Too Large"
	case statusInternalError:
		return "Internal Server Error"
	case statusServiceUnavailable:
		return "Service Unavailable"
	case statusVersionUnsupported:
		return "HTTP Version Not Supported"
	}
	return "Status " + strconv.Itoa(code)
}

// headScanner finds the end of a request head incrementally, so that a head
// that arrives a byte at a time is scanned once, not once per byte.
type headScanner struct {
	pos       int  // bytes already scanned
	lineStart int  // offset of the line being scanned
	started   bool // a non-empty line was seen
}

// scan looks at the bytes of b it has not seen yet and returns the offset
// just after the empty line that ends the head, or -1. Empty lines before
// the request line are skipped, as RFC 9112 §2.2 asks of servers.
func (s *headScanner) scan(b []byte) int {
	for ; s.pos < len(b); s.pos++ {
		if b[s.pos] != '\n' {
			continue
		}
		line := b[s.lineStart:s.pos]
		s.lineStart = s.pos + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			if s.started {
				return s.pos + 1
			}
			continue
		}
		s.started = true
	}
	return -1
}

// readHead reads from r into buf until the empty line that ends a request
// head and returns the head, that line included. Bytes after it (a body, a
// pipelined request) may have been read into buf too; they are ignored, as
// the connection is closed after the answer. It returns errHeadTooLarge when
// buf is full first, io.EOF when r ends before sending anything and
// io.ErrUnexpectedEOF when it ends inside the head.
func readHead(r io.Reader, buf []byte) ([]byte, error) {
	var sc headScanner
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		if end := sc.scan(buf[:n]); end >= 0 {
			return buf[:end], nil
		}
		switch {
		case err == io.EOF && n > 0:
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		case n == len(buf):
			return nil, errHeadTooLarge
		}
	}
}

// parseRequest parses a head returned by readHead. Its errors are
// *requestError: 505 for a well-formed version other than HTTP/1.0 and
// HTTP/1.1, 400 for anything else. Header fields are checked for syntax and
// then ignored, except Host (HTTP/1.1 needs exactly one, RFC 9112 §3.2) and
// the body framing fields (an invalid Content-Length, or one together with
// Transfer-Encoding, is refused). The body itself is never read.
func parseRequest(head []byte) (request, error) {
	var req request
	text := string(head)
	// Skip the empty lines readHead let through before the request line.
	text = strings.TrimLeft(text, "\r\n")
	line, text, _ := strings.Cut(text, "\n")
	line, err := trimCR(line)
	if err != nil {
		return req, err
	}
	if err := req.parseRequestLine(line); err != nil {
		return req, err
	}

	hosts, lengths, chunked := 0, "", false
	for {
		line, text, _ = strings.Cut(text, "\n")
		line, err := trimCR(line)
		if err != nil {
			return req, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return req, badRequest("header line without a colon")
		}
		if !isToken(name) {
			// Covers whitespace before the colon and obsolete line
			// folding (a line starting with a space), both refused by
			// RFC 9112 §5.
			return req, badRequest("invalid header field name")
		}
		value = strings.Trim(value, " \t")
		if !validFieldValue(value) {
			return req, badRequest("invalid character in header field %s", name)
		}
		switch {
		case strings.EqualFold(name, "Host"):
			hosts++
			// Empty is allowed: the target may have no authority.
			if value != "" && !validAuthority(value) {
				return req, badRequest("invalid Host")
			}
		case strings.EqualFold(name, "Content-Length"):
			if value == "" || strings.Trim(value, "0123456789") != "" || len(value) > 18 {
				return req, badRequest("invalid Content-Length")
			}
			if lengths != "" && lengths != value {
				return req, badRequest("conflicting Content-Length fields")
			}
			lengths = value
		case strings.EqualFold(name, "Transfer-Encoding"):
			chunked = true
		}
	}
	if lengths != "" && chunked {
		return req, badRequest("both Content-Length and Transfer-Encoding")
	}
	if hosts > 1 || req.minor == 1 && hosts == 0 {
		return req, badRequest("HTTP/1.1 request needs exactly one Host field, got %d", hosts)
	}
	return req, nil
}

// trimCR removes the CR of a CRLF line ending; a CR anywhere else is refused
// (RFC 9112 §2.2 allows refusing a bare CR).
func trimCR(line string) (string, error) {
	line = strings.TrimSuffix(line, "\r")
	if strings.IndexByte(line, '\r') >= 0 {
		return "", badRequest("bare CR in request head")
	}
	return line, nil
}

// parseRequestLine parses "METHOD SP request-target SP HTTP/1.x", with
// exactly one space between the parts.
func (req *request) parseRequestLine(line string) error {
	parts := strings.Split(line, " ")
	if len(parts) != 3 {
		return badRequest("malformed request line")
	}
	method, target, version := parts[0], parts[1], parts[2]
	switch {
	case version == "HTTP/1.1":
		req.minor = 1
	case version == "HTTP/1.0":
		req.minor = 0
	case len(version) == 8 && strings.HasPrefix(version, "HTTP/") &&
		isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return &requestError{code: statusVersionUnsupported, msg: "unsupported version " + version}
	default:
		return badRequest("malformed HTTP version")
	}
	if !isToken(method) {
		return badRequest("malformed method")
	}
	req.method = method
	path, query, err := parseTarget(target)
	if err != nil {
		return err
	}
	req.path, req.query = path, query
	return nil
}

// parseTarget splits a request-target in origin form ("/path?query") or in
// absolute form ("http://host/path?query", which RFC 9112 §3.2.2 requires
// servers to accept) into its path and raw query. The asterisk and
// authority forms mean nothing here and are refused.
func parseTarget(target string) (path, query string, err error) {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return "", "", badRequest("invalid character in request target")
		}
	}
	const scheme = "http://"
	if len(target) >= len(scheme) && strings.EqualFold(target[:len(scheme)], scheme) {
		rest := target[len(scheme):]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		if !validAuthority(rest[:end]) {
			return "", "", badRequest("invalid host in absolute request target")
		}
		target = rest[end:]
		if target == "" || target[0] == '?' {
			target = "/" + target
		}
	}
	if target == "" || target[0] != '/' {
		return "", "", badRequest("request target is not a path")
	}
	path, query, _ = strings.Cut(target, "?")
	return path, query, nil
}

// validAuthority reports whether s is host[:port] as RFC 3986 §3.2.2 allows
// it in an http URI, minus what no client of ours sends: user information,
// percent-encoding and IPv6 zones. The host is not used; it is checked so that
// a request we accept is one that any HTTP implementation would.
func validAuthority(s string) bool {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "]") {
		host, port = s[:i], s[i+1:]
	}
	if strings.Trim(port, "0123456789") != "" || host == "" {
		return false
	}
	if host[0] == '[' {
		addr, err := netip.ParseAddr(strings.TrimSuffix(host[1:], "]"))
		return strings.HasSuffix(host, "]") && err == nil && addr.Is6() && addr.Zone() == ""
	}
	return alnumOr(host, "-._~!$&'()*+,;=") // unreserved and sub-delims
}

// isToken reports whether s is a non-empty RFC 9110 token (methods, field
// names).
func isToken(s string) bool {
	return s != "" && alnumOr(s, "!#$%&'*+-.^_`|~")
}

// alnumOr reports whether every byte of s is an ASCII letter, a digit or one
// of extra.
func alnumOr(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		case strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldValue refuses control characters other than HTAB (obs-text,
// bytes ≥ 0x80, is allowed as RFC 9110 §5.5 does).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// queryHas reports whether the raw query has the key, with the semantics of
// net/url's Query().Has: pairs are separated by '&', a pair holding ';' is
// skipped, keys are unescaped ('+' is a space) and an unescapable key is
// skipped. "verbose", "verbose=" and "verbose=1" all have "verbose".
func queryHas(rawQuery, key string) bool {
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, _, _ := strings.Cut(pair, "=")
		if k, ok := unescapeQuery(k); ok && k == key {
			return true
		}
	}
	return false
}

// unescapeQuery decodes %XX escapes and '+' of a query component; ok is
// false for a malformed escape.
func unescapeQuery(s string) (string, bool) {
	if strings.IndexAny(s, "%+") < 0 {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b.WriteByte(' ')
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// reply is one answer of the server: it is built whole, then written at
// once, so that a handler cannot leave a half-written answer behind.
type reply struct {
	code        int
	contentType string
	allow       string // the Allow field of a 405; "" otherwise
	body        []byte
}

// textReply is a plain-text answer, one line.
func textReply(code int, msg string) reply {
	return reply{code: code, contentType: "text/plain; charset=utf-8", body: []byte(msg + "\n")}
}

// httpDate is the IMF-fixdate layout of the Date field (RFC 9110 §5.6.7);
// time.RFC1123 would write "UTC" where HTTP requires "GMT".
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// appendReply serializes rp as an HTTP/1.1 answer. Every answer closes the
// connection; a HEAD answer has the headers of the GET answer and no body.
// Probe and metric answers describe this instant, so no answer may be
// cached.
func appendReply(b []byte, rp reply, head bool, now time.Time) []byte {
	b = fmt.Appendf(b, "HTTP/1.1 %d %s\r\n", rp.code, reasonPhrase(rp.code))
	b = append(b, "Date: "...)
	b = now.UTC().AppendFormat(b, httpDate)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, rp.contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(rp.body)), 10)
	b = append(b, "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"...)
	if rp.allow != "" {
		b = append(b, "Allow: "...)
		b = append(b, rp.allow...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Connection: close\r\n\r\n"...)
	if !head {
		b = append(b, rp.body...)
	}
	return b
}

// The client half, for Check: one GET, then the status line and the first
// line of the body.

// Bounds on what Check reads from a server, which need not be ours.
const (
	maxResponseLine = 4 << 10  // status line or one header line
	maxResponseHead = 64 << 10 // status line and headers
	maxErrorBody    = 512      // body read for the first line of an error
)

// appendRequest serializes a GET of target ("/path?query") from host
// ("host:port").
func appendRequest(b []byte, host, target string) []byte {
	b = append(b, "GET "...)
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: gm2-init-healthcheck\r\nConnection: close\r\n\r\n"...)
	return b
}

// checkResult is what Check reads from an answer.
type checkResult struct {
	code int
	text string // "503 Service Unavailable": the code and the server's reason
	// firstLine is the first non-empty line of the body, trimmed; read
	// only for codes outside 2xx and 3xx.
	firstLine string
}

// readStatus reads an HTTP/1.x answer from br: the status line, the header
// fields (skipped but for the body framing), and, for a failure code, the
// first line of the body. Everything it reads is bounded.
func readStatus(br *bufio.Reader) (checkResult, error) {
	var st checkResult
	line, err := readLine(br)
	if err != nil {
		return st, fmt.Errorf("status line: %w", err)
	}
	version, rest, _ := strings.Cut(line, " ")
	codeText, reason, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(version, "HTTP/1.") || len(codeText) != 3 {
		return st, fmt.Errorf("malformed status line %q", truncate(line, 64))
	}
	code, err := strconv.Atoi(codeText)
	if err != nil || code < 100 {
		return st, fmt.Errorf("malformed status code in %q", truncate(line, 64))
	}
	st.code = code
	st.text = codeText
	if reason = printable(strings.TrimSpace(reason)); reason != "" {
		st.text += " " + reason
	}

	length, chunked := int64(-1), false
	total := len(line)
	for {
		line, err := readLine(br)
		if err != nil {
			return st, fmt.Errorf("header: %w", err)
		}
		if total += len(line); total > maxResponseHead {
			return st, fmt.Errorf("header larger than %d bytes", maxResponseHead)
		}
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Content-Length"):
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 {
				length = n
			}
		case strings.EqualFold(name, "Transfer-Encoding"):
			chunked = strings.EqualFold(value, "chunked")
		}
	}
	if code >= 200 && code < 400 {
		return st, nil
	}

	// The body: the first chunk when chunked, else Content-Length bytes,
	// else everything until the server closes; never more than
	// maxErrorBody.
	var body io.Reader = br
	switch {
	case chunked:
		size, err := readLine(br)
		if err != nil {
			return st, nil // the status is the answer; the reason is a bonus
		}
		size, _, _ = strings.Cut(size, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			return st, nil
		}
		body = io.LimitReader(br, n)
	case length >= 0:
		body = io.LimitReader(br, length)
	}
	st.firstLine = firstLine(io.LimitReader(body, maxErrorBody))
	return st, nil
}

// readLine reads one line of at most maxResponseLine bytes and returns it
// without its LF or CRLF.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(b)+len(chunk) > maxResponseLine {
			return "", fmt.Errorf("line longer than %d bytes", maxResponseLine)
		}
		b = append(b, chunk...)
		switch {
		case err == nil:
			return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			return "", io.ErrUnexpectedEOF
		default:
			return "", err
		}
	}
}

// firstLine returns the first non-empty line of r, trimmed, with control
// characters removed (it ends up on a terminal).
func firstLine(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if l := printable(strings.TrimSpace(sc.Text())); l != "" {
			return l
		}
	}
	return ""
}

// printable drops control characters from text a server sent.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
